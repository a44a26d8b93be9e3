package sse

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Default history limits, used when the matching [HistoryLimits] field
// is zero.
const (
	DefaultHistoryEvents = 1000
	DefaultHistoryBytes  = 1 << 20
	DefaultHistoryAge    = time.Hour
)

// HistoryLimits bounds the events a [MemoryBroker] retains per topic.
// The zero value gives the defaults. The oldest events go first when any
// bound is exceeded.
type HistoryLimits struct {
	// MaxEvents is how many events a topic retains. Zero means
	// DefaultHistoryEvents (1000); a negative value removes the bound.
	MaxEvents int

	// MaxBytes bounds the total size of a topic's retained events,
	// counting the bytes of each event's Type, ID and Data and of its
	// [Meta]. Zero means DefaultHistoryBytes (1 MiB); a negative value
	// removes the bound. An event larger than MaxBytes is refused with
	// [ErrEventTooLarge].
	MaxBytes int64

	// MaxAge is how long an event is retained. Zero means
	// DefaultHistoryAge (1 hour); a negative value removes the bound.
	// Expired events are dropped when their topic is next used, and
	// those of every other topic by a sweep while the broker is in use,
	// at most every quarter of MaxAge (and at most once a second).
	MaxAge time.Duration
}

func (l HistoryLimits) resolved() HistoryLimits {
	if l.MaxEvents == 0 {
		l.MaxEvents = DefaultHistoryEvents
	}
	if l.MaxBytes == 0 {
		l.MaxBytes = DefaultHistoryBytes
	}
	if l.MaxAge == 0 {
		l.MaxAge = DefaultHistoryAge
	}
	return l
}

// MemoryBroker is a [Broker] that keeps topics in memory, for a single
// process. Its zero value is ready to use with the default limits.
//
// Seq numbers of a topic are 1, 2, 3, ...; IDs it assigns are decimal
// numbers drawn from one counter shared by all topics, so an ID from
// another topic is recognised as unknown. Subscribers are called from
// the publisher's goroutine, while the topic is locked. An ID that a
// publisher gives to two events of a topic names the first of them.
//
// A topic costs memory only while it has a subscriber or retains an
// event: one that has neither is forgotten at once. Until then the ID of
// the newest pruned event stays a valid position (the client that saw
// it missed nothing), so that a topic whose events all expired while it
// was followed resumes without a gap.
type MemoryBroker struct {
	// Limits bounds each topic's history. It must not change after the
	// broker is first used.
	Limits HistoryLimits

	// Lock order: mu, then a memTopic's mu. A topic is removed from
	// topics with both held, and marked dead then, so that whoever
	// found it before retries.
	once   sync.Once
	limits HistoryLimits
	mu     sync.Mutex
	topics map[string]*memTopic
	closed atomic.Bool
	nextID atomic.Uint64
	swept  atomic.Int64 // when the last sweep started, in Unix nanoseconds
}

// NewMemoryBroker returns a MemoryBroker with the given limits.
func NewMemoryBroker(limits HistoryLimits) *MemoryBroker {
	return &MemoryBroker{Limits: limits}
}

type memMsg struct {
	Message
	gid  uint64 // the assigned ID as a number; 0 for publisher IDs
	size int64
}

type memTopic struct {
	name   string
	mu     sync.Mutex
	msgs   []memMsg // retained events are msgs[start:]
	start  int
	bytes  int64
	head   Position
	pruned Position          // the newest event pruned; zero if none
	own    map[string]uint64 // publisher IDs of retained events → Seq
	subs   []*memSub
	dead   bool // removed from the broker; set with both locks held
}

type memSub struct {
	b     *MemoryBroker
	t     *memTopic
	after Position
	fn    func(Message)
	stop  func() bool
	done  chan struct{}
	err   error // set under t.mu before done is closed
}

func (b *MemoryBroker) init() {
	b.once.Do(func() { b.limits = b.Limits.resolved() })
}

// lockTopic returns the topic named name with its lock held, creating it
// when create is set, or nil and no lock when it does not exist, or an
// error (the broker closed, say) and no lock.
func (b *MemoryBroker) lockTopic(ctx context.Context, name string, create bool) (*memTopic, error) {
	b.init()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.closed.Load() {
		return nil, ErrBrokerClosed
	}
	b.maybeSweep(time.Now())
	for {
		b.mu.Lock()
		t := b.topics[name]
		if t == nil && create && !b.closed.Load() {
			if b.topics == nil {
				b.topics = make(map[string]*memTopic)
			}
			t = &memTopic{name: name}
			b.topics[name] = t
		}
		b.mu.Unlock()
		if t == nil {
			if b.closed.Load() {
				return nil, ErrBrokerClosed
			}
			return nil, nil
		}
		t.mu.Lock()
		if b.closed.Load() {
			t.mu.Unlock()
			return nil, ErrBrokerClosed
		}
		if !t.dead {
			return t, nil
		}
		t.mu.Unlock() // forgotten meanwhile: look again
	}
}

// idleLocked reports whether t may be forgotten; t.mu must be held.
func (t *memTopic) idleLocked() bool { return len(t.subs) == 0 && t.start == len(t.msgs) }

// forget removes t from the broker if it has no subscriber and retains
// no event. It takes b.mu and t.mu.
func (b *MemoryBroker) forget(t *memTopic) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dead || !t.idleLocked() {
		return
	}
	t.dead = true
	if b.topics[t.name] == t {
		delete(b.topics, t.name)
	}
	t.msgs, t.start, t.own = nil, 0, nil
}

// maybeSweep drops the expired events of every topic when the last sweep
// is more than a quarter of MaxAge (and a second) ago, so that topics
// nobody uses any more do not keep their history.
func (b *MemoryBroker) maybeSweep(now time.Time) {
	if b.limits.MaxAge < 0 {
		return
	}
	last := b.swept.Load()
	every := max(b.limits.MaxAge/4, time.Second)
	if now.UnixNano()-last < int64(every) || !b.swept.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	b.mu.Lock()
	topics := make([]*memTopic, 0, len(b.topics))
	for _, t := range b.topics {
		topics = append(topics, t)
	}
	b.mu.Unlock()
	for _, t := range topics {
		t.mu.Lock()
		t.prune(b.limits, now)
		idle := t.idleLocked()
		if len(t.retained()) == 0 {
			t.msgs, t.start, t.own = nil, 0, nil // give the memory back
		}
		t.mu.Unlock()
		if idle {
			b.forget(t)
		}
	}
}

// Publish stores ev; see [Broker.Publish].
func (b *MemoryBroker) Publish(ctx context.Context, topic string, ev *Event, meta *Meta) (Message, error) {
	if ev == nil {
		return Message{}, fmt.Errorf("%w: nil *Event", ErrInvalidEvent)
	}
	if err := ev.Validate(); err != nil {
		return Message{}, err
	}
	t, err := b.lockTopic(ctx, topic, true)
	if err != nil {
		return Message{}, err
	}
	defer t.mu.Unlock()
	m := memMsg{Message: Message{Topic: t.name, Seq: t.head.Seq + 1, Event: *ev, Time: time.Now()}}
	if m.Event.ID == "" {
		m.gid = b.nextID.Add(1) // under t.mu: grows with Seq in the topic
		m.Event.ID = strconv.FormatUint(m.gid, 10)
	}
	m.size = int64(len(ev.Type)+len(m.Event.ID)+len(ev.Data)) + int64(meta.size())
	if b.limits.MaxBytes >= 0 && m.size > b.limits.MaxBytes {
		return Message{}, fmt.Errorf("%w: %d bytes, a topic holds %d", ErrEventTooLarge, m.size, b.limits.MaxBytes)
	}
	if m.gid == 0 {
		if t.own == nil {
			t.own = make(map[string]uint64)
		}
		// An ID published again keeps naming its first event, so a
		// client that saw it misses nothing after it (Mercure asks
		// hubs to resolve a reused ID to the earliest update).
		if _, seen := t.own[m.Event.ID]; !seen {
			t.own[m.Event.ID] = m.Seq
		}
	}
	m.Meta = meta.clone()
	t.head = m.Position()
	t.msgs = append(t.msgs, m)
	t.bytes += m.size
	t.prune(b.limits, m.Time)
	for _, s := range t.subs {
		s.fn(m.Message)
	}
	return m.Message, nil
}

// prune drops the events beyond the limits; t.mu must be held.
func (t *memTopic) prune(l HistoryLimits, now time.Time) {
	for t.start < len(t.msgs) {
		m := &t.msgs[t.start]
		n := len(t.msgs) - t.start
		if !(l.MaxEvents >= 0 && n > l.MaxEvents ||
			l.MaxBytes >= 0 && t.bytes > l.MaxBytes ||
			l.MaxAge >= 0 && now.Sub(m.Time) > l.MaxAge) {
			break
		}
		t.bytes -= m.size
		if m.gid == 0 && t.own[m.Event.ID] == m.Seq {
			delete(t.own, m.Event.ID)
		}
		t.pruned = m.Position()
		*m = memMsg{}
		t.start++
	}
	if t.start == len(t.msgs) {
		t.msgs, t.start = t.msgs[:0], 0
	} else if t.start > 64 && t.start > len(t.msgs)/2 {
		n := copy(t.msgs, t.msgs[t.start:])
		clear(t.msgs[n:])
		t.msgs, t.start = t.msgs[:n], 0
	}
}

// retained returns the retained events; t.mu must be held.
func (t *memTopic) retained() []memMsg { return t.msgs[t.start:] }

// oldestSeq returns the Seq of the oldest retained event, or the next
// Seq when none is retained; t.mu must be held.
func (t *memTopic) oldestSeq() uint64 {
	if r := t.retained(); len(r) > 0 {
		return r[0].Seq
	}
	return t.head.Seq + 1
}

// find returns the position of the event whose ID is id, if it is
// retained or the newest pruned one; t.mu must be held.
func (t *memTopic) find(id string) (Position, bool) {
	// A publisher may reuse an ID: it names the earliest event that
	// bears it, so look from the oldest (the newest pruned, then the
	// retained ones by their first use) to the newest.
	switch {
	case id == "":
		return Position{}, false
	case id == t.pruned.ID:
		return t.pruned, true
	}
	r := t.retained()
	if seq, ok := t.own[id]; ok {
		return r[seq-r[0].Seq].Position(), true
	}
	if id == t.head.ID {
		return t.head, true
	}
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil || n == 0 || strconv.FormatUint(n, 10) != id {
		return Position{}, false
	}
	// Resumes are usually recent: scan from the newest event. Assigned
	// IDs grow with Seq within a topic.
	for j := len(r) - 1; j >= 0; j-- {
		if g := r[j].gid; g == n {
			return r[j].Position(), true
		} else if g != 0 && g < n {
			break
		}
	}
	return Position{}, false
}

// at returns the position of the event whose Seq is seq, which must be 0,
// the head, the newest pruned or a retained one; t.mu must be held.
func (t *memTopic) at(seq uint64) Position {
	switch seq {
	case 0:
		return Position{}
	case t.head.Seq:
		return t.head
	case t.pruned.Seq:
		return t.pruned
	}
	r := t.retained()
	return r[seq-r[0].Seq].Position()
}

// History returns the events after afterID; see [Broker.History].
func (b *MemoryBroker) History(ctx context.Context, topic, afterID string) (History, error) {
	t, err := b.lockTopic(ctx, topic, false)
	if err != nil || t == nil {
		return History{Gap: afterID != ""}, err
	}
	t.prune(b.limits, time.Now())
	h := History{Head: t.head}
	r := t.retained()
	if len(r) > 0 {
		h.Oldest = r[0].Position()
	}
	after, known := Position{}, afterID == ""
	if !known {
		after, known = t.find(afterID)
	}
	if !known || after.Seq+1 < t.oldestSeq() {
		h.Gap, after = true, Position{}
	} else {
		h.After = after
	}
	for i := range r {
		if r[i].Seq > after.Seq {
			h.Messages = make([]Message, 0, len(r)-i)
			for _, m := range r[i:] {
				h.Messages = append(h.Messages, m.Message)
			}
			break
		}
	}
	idle := t.idleLocked()
	t.mu.Unlock()
	if idle {
		b.forget(t)
	}
	return h, nil
}

// Subscribe feeds fn the events after the position; see
// [Broker.Subscribe].
func (b *MemoryBroker) Subscribe(ctx context.Context, topic string, after uint64, fn func(Message)) (Subscription, error) {
	t, err := b.lockTopic(ctx, topic, true)
	if err != nil {
		return nil, err
	}
	t.prune(b.limits, time.Now())
	if after == Newest {
		after = t.head.Seq
	}
	if after > t.head.Seq || after < t.head.Seq && after+1 < t.oldestSeq() {
		err := fmt.Errorf("%w: topic %q retains seq %d to %d, asked after %d", ErrGap, topic, t.oldestSeq(), t.head.Seq, after)
		idle := t.idleLocked()
		t.mu.Unlock()
		if idle {
			b.forget(t) // leave nothing behind
		}
		return nil, err
	}
	defer t.mu.Unlock()
	for _, m := range t.retained() {
		if m.Seq > after {
			fn(m.Message)
		}
	}
	s := &memSub{b: b, t: t, after: t.at(after), fn: fn, done: make(chan struct{})}
	t.subs = append(t.subs, s)
	s.stop = context.AfterFunc(ctx, func() { s.end(context.Cause(ctx)) })
	return s, nil
}

// end removes s with err and forgets its topic if it became idle; it
// takes s.t.mu, then the broker's lock.
func (s *memSub) end(err error) {
	s.t.mu.Lock()
	s.endLocked(err)
	idle := s.t.idleLocked()
	s.t.mu.Unlock()
	if idle {
		s.b.forget(s.t)
	}
}

func (s *memSub) endLocked(err error) {
	if s.err != nil {
		return
	}
	s.err = err
	for i, x := range s.t.subs {
		if x == s {
			s.t.subs = append(s.t.subs[:i], s.t.subs[i+1:]...)
			break
		}
	}
	if len(s.t.subs) == 0 {
		s.t.subs = nil
	}
	close(s.done)
}

// After returns the position the feed started after.
func (s *memSub) After() Position { return s.after }

// Close ends the subscription.
func (s *memSub) Close() error {
	s.stop()
	s.end(context.Canceled)
	return nil
}

// Done is closed when the subscription ends.
func (s *memSub) Done() <-chan struct{} { return s.done }

// Err says why the subscription ended, or nil.
func (s *memSub) Err() error {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	return s.err
}

// Close drops every topic and ends the subscriptions with
// [ErrBrokerClosed]. Later calls return [ErrBrokerClosed].
func (b *MemoryBroker) Close() error {
	b.init()
	if b.closed.Swap(true) {
		return nil
	}
	b.mu.Lock()
	topics := b.topics
	b.topics = nil
	b.mu.Unlock()
	for _, t := range topics {
		t.mu.Lock()
		subs := append([]*memSub(nil), t.subs...)
		for _, s := range subs {
			s.stop()
			s.endLocked(ErrBrokerClosed)
		}
		t.msgs, t.start, t.own, t.dead = nil, 0, nil, true
		t.mu.Unlock()
	}
	return nil
}
