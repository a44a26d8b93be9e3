// Package natsbroker is an [sse.Broker] on NATS JetStream, so that
// several [sse.Server] processes share topics and a client resumes on
// any of them with its Last-Event-ID.
//
// The broker keeps one JetStream stream (Options.Stream) with a subject
// per topic: Options.Subject, a dot, and the topic name escaped into one
// subject token (see [Escape]). History limits are the stream's: events
// per subject and age natively; bytes per subject by the broker, which
// purges a subject's oldest events before a Publish that would exceed
// them. Positions (Seq)
// are the stream's sequence numbers, the same on every node; the IDs the
// broker assigns are the sequence number and an era drawn from the
// stream's creation time ("4711.5f1c2a9e"), so that an ID from another
// topic, or from before the stream was lost, is a gap.
//
// An ID a publisher gives more than one event of a topic (the
// [sse.Broker] contract asks publishers not to) names the earliest of
// them the broker still knows: the newest pruned event when it bears
// that ID, else the oldest retained one, as Mercure asks a hub to
// resolve a reused Last-Event-ID.
//
// Publishes to one topic are serialised by the stream itself: each one
// names the sequence it expects to follow, and is retried when another
// publisher came first. Live delivery uses one ordered consumer per
// Broker, over every subject of the stream, whatever the number of
// topics and subscribers; a subscription that starts in the past first
// reads what it missed with direct gets.
//
// When NATS cannot be reached, Publish, History and Subscribe return
// errors matching [sse.ErrBrokerUnavailable] and the subscriptions end
// with one; the connection reconnects by itself (as nats.Conn is
// configured to), and clients resume from their Last-Event-ID.
package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coregx/stream/sse"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options configures a [Broker]. The zero value gives the defaults.
type Options struct {
	// Stream is the name of the JetStream stream. Empty means "SSE".
	Stream string

	// Subject starts the subject of every topic. Empty means "sse".
	Subject string

	// Limits bounds each topic's history, as for [sse.MemoryBroker]:
	// zero fields mean 1000 events, 1 MiB and one hour; negative ones
	// remove the bound. An event larger than MaxBytes (counting an
	// assigned ID as 32 bytes) is refused with [sse.ErrEventTooLarge].
	Limits sse.HistoryLimits

	// Storage is where the stream keeps its messages; the zero value is
	// jetstream.FileStorage.
	Storage jetstream.StorageType

	// Logger, when set, receives a record when the connection is lost.
	Logger *slog.Logger
}

// Header names of the broker's messages.
const (
	hdrID     = "Sse-Id"      // the publisher's ID; absent when assigned
	hdrType   = "Sse-Type"    // the event type
	hdrRetry  = "Sse-Retry"   // the retry, in milliseconds
	hdrMeta   = "Sse-Meta"    // the metadata, as JSON
	hdrPrev   = "Sse-Prev"    // the sequence of the topic's previous event
	hdrPrevID = "Sse-Prev-Id" // the ID of the topic's previous event
	hdrTotal  = "Sse-Total"   // bytes of the topic's events up to this one
	hdrFloor  = "Sse-Floor"   // the Sse-Total before the oldest event retained, or less
)

// Broker is an [sse.Broker] on NATS JetStream. Make one with [New].
type Broker struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	cfg     jetstream.StreamConfig
	subject string
	limits  sse.HistoryLimits
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelFunc
	status  chan nats.Status
	done    chan struct{}

	// mu guards what follows. Lock order: a sub's mu, then mu.
	mu       sync.Mutex
	stream   jetstream.Stream
	era      string
	subs     map[string][]*sub // by subject
	consumer jetstream.ConsumeContext
	closed   bool
}

// New returns a Broker keeping its topics in the JetStream of nc,
// creating or updating its stream. The Broker does not close nc.
func New(ctx context.Context, nc *nats.Conn, opts *Options) (*Broker, error) {
	if opts == nil {
		opts = &Options{}
	}
	l := opts.Limits
	if l.MaxEvents == 0 {
		l.MaxEvents = sse.DefaultHistoryEvents
	}
	if l.MaxBytes == 0 {
		l.MaxBytes = sse.DefaultHistoryBytes
	}
	if l.MaxAge == 0 {
		l.MaxAge = sse.DefaultHistoryAge
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	b := &Broker{nc: nc, js: js, subject: opts.Subject, limits: l, log: opts.Logger, subs: make(map[string][]*sub), done: make(chan struct{})}
	if b.subject == "" {
		b.subject = "sse"
	}
	name := opts.Stream
	if name == "" {
		name = "SSE"
	}
	b.cfg = jetstream.StreamConfig{
		Name:              name,
		Subjects:          []string{b.subject + ".>"},
		MaxMsgsPerSubject: -1,
		Discard:           jetstream.DiscardOld,
		AllowDirect:       true,
		Storage:           opts.Storage,
	}
	if l.MaxEvents > 0 {
		b.cfg.MaxMsgsPerSubject = int64(l.MaxEvents)
	}
	if l.MaxAge > 0 {
		b.cfg.MaxAge = l.MaxAge
	}
	if err := b.ensureStream(ctx); err != nil {
		return nil, err
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.status = nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	go b.watch()
	return b, nil
}

// ensureStream creates or updates the stream and learns its era.
func (b *Broker) ensureStream(ctx context.Context) error {
	s, err := b.js.CreateOrUpdateStream(ctx, b.cfg)
	if err != nil {
		return unavailable(ctx, err)
	}
	h := fnv.New32a()
	fmt.Fprint(h, s.CachedInfo().Created.UnixNano())
	b.mu.Lock()
	b.stream, b.era = s, fmt.Sprintf("%08x", h.Sum32())
	b.mu.Unlock()
	return nil
}

// watch ends every subscription when the connection is lost.
func (b *Broker) watch() {
	defer close(b.done)
	for {
		select {
		case <-b.ctx.Done():
			return
		case st := <-b.status:
			b.logf(slog.LevelError, "natsbroker: connection lost, ending subscriptions", "status", st.String())
			b.endAll(fmt.Errorf("%w: nats: connection %s", sse.ErrBrokerUnavailable, strings.ToLower(st.String())))
			// With nobody subscribed, the consumer starts afresh with
			// the next subscription: the server may come back without
			// the stream.
			b.mu.Lock()
			cc := b.consumer
			b.consumer = nil
			b.mu.Unlock()
			if cc != nil {
				cc.Stop()
			}
		}
	}
}

func (b *Broker) logf(level slog.Level, msg string, args ...any) {
	if b.log != nil {
		b.log.Log(context.Background(), level, msg, args...)
	}
}

// Escape returns topic as one token of a NATS subject: ASCII letters,
// digits, "-" and "_" as they are, every other byte as "~XX", and the
// empty topic as "~". [Unescape] reverses it.
func Escape(topic string) string {
	if topic == "" {
		return "~"
	}
	var sb strings.Builder
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "~%02X", c)
		}
	}
	return sb.String()
}

// Unescape returns the topic of a token made by [Escape].
func Unescape(token string) (string, error) {
	if token == "~" {
		return "", nil
	}
	var sb strings.Builder
	for i := 0; i < len(token); i++ {
		c := token[i]
		if c != '~' {
			sb.WriteByte(c)
			continue
		}
		if i+2 >= len(token) {
			return "", fmt.Errorf("natsbroker: truncated escape in %q", token)
		}
		n, err := strconv.ParseUint(token[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("natsbroker: bad escape in %q", token)
		}
		sb.WriteByte(byte(n))
		i += 2
	}
	return sb.String(), nil
}

func (b *Broker) subjectOf(topic string) string { return b.subject + "." + Escape(topic) }

// unavailable turns a failure to reach NATS into an error matching
// [sse.ErrBrokerUnavailable].
func unavailable(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var api *jetstream.APIError
	if errors.As(err, &api) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("natsbroker: %w", err)
	}
	if errors.Is(err, nats.ErrMaxPayload) {
		return fmt.Errorf("%w: %w", sse.ErrEventTooLarge, err)
	}
	return fmt.Errorf("%w: nats: %w", sse.ErrBrokerUnavailable, err)
}

func (b *Broker) state() (jetstream.Stream, string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, "", sse.ErrBrokerClosed
	}
	if !b.nc.IsConnected() {
		return nil, "", fmt.Errorf("%w: nats: not connected", sse.ErrBrokerUnavailable)
	}
	return b.stream, b.era, nil
}

// assignedMax is what an assigned ID counts for in the size of an event
// checked before it is stored.
const assignedMax = 32

// maxTries bounds the attempts of a Publish racing other publishers.
const maxTries = 1000

// Publish stores ev in topic; see [sse.Broker.Publish].
func (b *Broker) Publish(ctx context.Context, topic string, ev *sse.Event, meta *sse.Meta) (sse.Message, error) {
	if ev == nil {
		return sse.Message{}, fmt.Errorf("%w: nil *Event", sse.ErrInvalidEvent)
	}
	if err := ev.Validate(); err != nil {
		return sse.Message{}, err
	}
	if err := ctx.Err(); err != nil {
		return sse.Message{}, err
	}
	subj := b.subjectOf(topic)
	hdr := nats.Header{}
	size := len(ev.Type) + len(ev.ID) + len(ev.Data)
	if ev.ID != "" {
		hdr.Set(hdrID, ev.ID)
	}
	if ev.Type != "" {
		hdr.Set(hdrType, ev.Type)
	}
	if ev.Retry != 0 {
		hdr.Set(hdrRetry, strconv.Itoa(ev.Retry))
	}
	var stored *sse.Meta
	if meta != nil {
		m, _ := json.Marshal(meta)
		hdr.Set(hdrMeta, string(m))
		size += len(m)
		stored = &sse.Meta{Topics: append([]string(nil), meta.Topics...), Private: meta.Private}
	}
	check := size
	if ev.ID == "" {
		check += assignedMax
	}
	if b.limits.MaxBytes >= 0 && int64(check) > b.limits.MaxBytes {
		return sse.Message{}, fmt.Errorf("%w: %d bytes, a topic holds %d", sse.ErrEventTooLarge, check, b.limits.MaxBytes)
	}
	for try := 0; ; try++ {
		s, era, err := b.state()
		if err != nil {
			return sse.Message{}, err
		}
		prev, prevTotal, floor, prevID := uint64(0), int64(0), int64(0), ""
		last, err := s.GetLastMsgForSubject(ctx, subj)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case (errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, nats.ErrNoResponders)) && try < 3:
			// The stream is gone (the server lost its store): make it again.
			if err := b.ensureStream(ctx); err != nil {
				return sse.Message{}, err
			}
			continue
		case err != nil:
			return sse.Message{}, unavailable(ctx, err)
		default:
			prev = last.Sequence
			prevTotal, _ = strconv.ParseInt(last.Header.Get(hdrTotal), 10, 64)
			floor, _ = strconv.ParseInt(last.Header.Get(hdrFloor), 10, 64)
			prevID = b.eventID(last, era)
		}
		// The floor only lags behind events the stream dropped by count
		// or age: when it says the bytes fit, they do. Else make room
		// before adding the event.
		if b.limits.MaxBytes >= 0 && prevTotal+int64(check)-floor > b.limits.MaxBytes {
			if floor, err = b.trimBytes(ctx, s, subj, prevTotal+int64(check), prev, prevTotal); err != nil {
				return sse.Message{}, err
			}
		}
		msg := &nats.Msg{Subject: subj, Data: []byte(ev.Data), Header: nats.Header{}}
		for k, v := range hdr {
			msg.Header[k] = v
		}
		msg.Header.Set(hdrPrev, strconv.FormatUint(prev, 10))
		if prevID != "" {
			msg.Header.Set(hdrPrevID, prevID)
		}
		// The total counts the assigned ID as its most: it is not known
		// before the stream gives the sequence.
		msg.Header.Set(hdrTotal, strconv.FormatInt(prevTotal+int64(check), 10))
		msg.Header.Set(hdrFloor, strconv.FormatInt(floor, 10))
		ack, err := b.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(prev), jetstream.WithExpectStream(b.cfg.Name))
		var api *jetstream.APIError
		if errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) && try < maxTries {
			continue // another publisher came first
		}
		if err != nil {
			return sse.Message{}, unavailable(ctx, err)
		}
		m := sse.Message{Topic: topic, Seq: ack.Sequence, Event: *ev, Time: time.Now(), Meta: stored}
		if m.Event.ID == "" {
			m.Event.ID = assignedID(ack.Sequence, era)
		}
		return m, nil
	}
}

// trimBytes purges the oldest events of subj so that, with an event
// bringing the running total to total, they hold at most MaxBytes; last
// is the newest event, whose total is lastTotal. It returns the running
// total before the oldest event kept.
func (b *Broker) trimBytes(ctx context.Context, s jetstream.Stream, subj string, total int64, last uint64, lastTotal int64) (int64, error) {
	keep, floor := last+1, lastTotal // none, unless one fits
	for seq := uint64(1); seq <= last; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return 0, unavailable(ctx, err)
		}
		t, _ := strconv.ParseInt(m.Header.Get(hdrTotal), 10, 64)
		if before := t - int64(size(m)); total-before <= b.limits.MaxBytes {
			keep, floor = m.Sequence, before
			break
		}
		seq = m.Sequence + 1
	}
	err := s.Purge(ctx, jetstream.WithPurgeSubject(subj), jetstream.WithPurgeSequence(keep))
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, unavailable(ctx, err)
	}
	return floor, nil
}

// size returns the bytes m counts for, as Publish counted them.
func size(m *jetstream.RawStreamMsg) int {
	n := len(m.Header.Get(hdrType)) + len(m.Data) + len(m.Header.Get(hdrMeta))
	if id := m.Header.Get(hdrID); id != "" {
		return n + len(id)
	}
	return n + assignedMax
}

func assignedID(seq uint64, era string) string { return strconv.FormatUint(seq, 10) + "." + era }

// parseAssigned returns the sequence in an ID of the form the broker
// assigns, if it is of era.
func parseAssigned(id, era string) (uint64, bool) {
	n, e, ok := strings.Cut(id, ".")
	if !ok || e != era {
		return 0, false
	}
	seq, err := strconv.ParseUint(n, 10, 64)
	if err != nil || seq == 0 || strconv.FormatUint(seq, 10) != n {
		return 0, false
	}
	return seq, true
}

func (b *Broker) eventID(m *jetstream.RawStreamMsg, era string) string {
	if id := m.Header.Get(hdrID); id != "" {
		return id
	}
	return assignedID(m.Sequence, era)
}

// message decodes a stored message of topic.
func (b *Broker) message(topic string, seq uint64, hdr nats.Header, data []byte, t time.Time, era string) sse.Message {
	m := sse.Message{Topic: topic, Seq: seq, Time: t, Event: sse.Event{Type: hdr.Get(hdrType), ID: hdr.Get(hdrID), Data: string(data)}}
	if m.Event.ID == "" {
		m.Event.ID = assignedID(seq, era)
	}
	if r := hdr.Get(hdrRetry); r != "" {
		m.Event.Retry, _ = strconv.Atoi(r)
	}
	if raw := hdr.Get(hdrMeta); raw != "" {
		var meta sse.Meta
		if json.Unmarshal([]byte(raw), &meta) == nil {
			m.Meta = &meta
		}
	}
	return m
}

func (b *Broker) raw(topic string, m *jetstream.RawStreamMsg, era string) sse.Message {
	return b.message(topic, m.Sequence, m.Header, m.Data, m.Time, era)
}

// position returns the position of a stored message.
func (b *Broker) position(m *jetstream.RawStreamMsg, era string) sse.Position {
	return sse.Position{Seq: m.Sequence, ID: b.eventID(m, era)}
}

// prevOf returns the position before m in its topic, from its headers.
func prevOf(m *jetstream.RawStreamMsg) sse.Position {
	seq, _ := strconv.ParseUint(m.Header.Get(hdrPrev), 10, 64)
	if seq == 0 {
		return sse.Position{}
	}
	return sse.Position{Seq: seq, ID: m.Header.Get(hdrPrevID)}
}

// list returns the retained messages of subj from seq on, up to last.
func (b *Broker) list(ctx context.Context, s jetstream.Stream, subj string, from, last uint64) ([]*jetstream.RawStreamMsg, error) {
	var out []*jetstream.RawStreamMsg
	for seq := max(from, 1); seq <= last; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, unavailable(ctx, err)
		}
		if m.Sequence > last {
			break
		}
		out = append(out, m)
		seq = m.Sequence + 1
	}
	return out, nil
}

// edges returns the newest and oldest retained messages of subj; nil
// when it has none.
func (b *Broker) edges(ctx context.Context, s jetstream.Stream, subj string) (last, first *jetstream.RawStreamMsg, err error) {
	last, err = s.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil, nil
	}
	if errors.Is(err, nats.ErrNoResponders) {
		// No stream answers: the server lost it. It holds nothing; the
		// next Publish makes it again.
		if _, err := b.js.Stream(ctx, b.cfg.Name); errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, nil, nil
		}
	}
	if err != nil {
		return nil, nil, unavailable(ctx, err)
	}
	first, err = s.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subj))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil, nil // expired meanwhile
	}
	if err != nil {
		return nil, nil, unavailable(ctx, err)
	}
	return last, first, nil
}

// History returns the events of topic after afterID; see
// [sse.Broker.History].
func (b *Broker) History(ctx context.Context, topic, afterID string) (sse.History, error) {
	s, era, err := b.state()
	if err != nil {
		return sse.History{}, err
	}
	subj := b.subjectOf(topic)
	last, first, err := b.edges(ctx, s, subj)
	if err != nil || last == nil {
		return sse.History{Gap: afterID != ""}, err
	}
	h := sse.History{Head: b.position(last, era), Oldest: b.position(first, era)}
	pruned := prevOf(first)
	from, known := uint64(0), false
	seq, assigned := parseAssigned(afterID, era)
	switch {
	case afterID == "":
		known = true
	case afterID == pruned.ID && pruned.Seq != 0:
		h.After, known = pruned, true
	case assigned && seq >= first.Sequence && seq <= last.Sequence:
		m, err := s.GetMsg(ctx, seq)
		if err == nil && m.Subject == subj {
			h.After, known, from = b.position(m, era), true, seq+1
		}
	}
	if !known && !assigned {
		// A publisher's ID: look for it among the retained events,
		// oldest first, so that an ID published more than once names
		// its earliest event (checked above when that one was the
		// newest purged).
		all, err := b.list(ctx, s, subj, first.Sequence, last.Sequence)
		if err != nil {
			return sse.History{}, err
		}
		for _, m := range all {
			if m.Header.Get(hdrID) == afterID {
				h.After, known, from = b.position(m, era), true, m.Sequence+1
				break
			}
		}
	}
	h.Gap = !known || afterID == "" && pruned.Seq != 0
	if h.Gap {
		h.After, from = sse.Position{}, 0
	}
	if from == 0 {
		from = first.Sequence
	}
	msgs, err := b.list(ctx, s, subj, from, last.Sequence)
	if err != nil {
		return sse.History{}, err
	}
	for _, m := range msgs {
		h.Messages = append(h.Messages, b.raw(topic, m, era))
	}
	return h, nil
}

// Close stops the consumer and ends the subscriptions with
// [sse.ErrBrokerClosed]; it leaves the connection open. Later calls
// return [sse.ErrBrokerClosed].
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	cc := b.consumer
	b.mu.Unlock()
	if cc != nil {
		cc.Stop()
		<-cc.Closed()
	}
	b.cancel()
	<-b.done
	b.endAll(sse.ErrBrokerClosed)
	return nil
}
