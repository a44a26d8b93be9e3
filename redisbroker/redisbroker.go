// Package redisbroker is an [sse.Broker] on Redis streams, so that
// several [sse.Server] processes share topics and a client resumes on
// any of them with its Last-Event-ID.
//
// Each topic is one Redis stream (key Prefix + "s:" + the escaped topic
// name) with a small companion hash. Publish adds an entry with XADD and
// trims the stream to the history limits in the same script, so that
// every node sees the same history. Event IDs the broker assigns are the
// entry's stream ID followed by a tag of the broker's prefix and topic
// ("1732960000000-0.5f1c2a9e"): any node recognises them, and an ID of
// another topic or broker is a gap. Positions (Seq) are the stream IDs
// as numbers, the same on every node.
//
// An ID a publisher gives more than one event of a topic (the
// [sse.Broker] contract asks publishers not to) names the earliest of
// them the broker still knows: the newest pruned event when it bears
// that ID, else the oldest retained one, as Mercure asks a hub to
// resolve a reused Last-Event-ID.
//
// Live delivery uses one connection per Broker, whatever the number of
// topics and subscribers: a single blocking XREAD follows every topic
// that has a subscriber; other commands share the client's pool.
//
// When Redis cannot be reached, Publish, History and Subscribe return
// errors matching [sse.ErrBrokerUnavailable] and the subscriptions end
// with one (a [sse.Server] then refuses new streams with 503 and a
// Retry-After header, and its clients resume from their Last-Event-ID
// once Redis is back). The client's pool reconnects by itself; the
// reader waits with backoff between attempts. A Redis restarted empty
// knows none of the old IDs: resuming clients get a gap event.
//
// A stream expires as a whole once its newest event is older than
// MaxAge, so topics that are no longer used leave nothing in Redis.
package redisbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coregx/stream/sse"
	"github.com/redis/go-redis/v9"
)

// Options configures a [Broker]. The zero value gives the defaults.
type Options struct {
	// Prefix starts every key the broker uses. Brokers with different
	// prefixes on one Redis are independent. Empty means "sse:".
	Prefix string

	// Limits bounds each topic's history, as for [sse.MemoryBroker]:
	// zero fields mean 1000 events, 1 MiB and one hour; negative ones
	// remove the bound. An event larger than MaxBytes (counting an
	// assigned ID as 32 bytes) is refused with [sse.ErrEventTooLarge].
	Limits sse.HistoryLimits

	// Logger, when set, receives a record when the reader loses Redis
	// and when it reads again.
	Logger *slog.Logger
}

// Broker is an [sse.Broker] on Redis streams. Make one with [New].
type Broker struct {
	rdb    *redis.Client
	prefix string
	limits sse.HistoryLimits
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the reader has returned

	// mu guards what follows. Lock order: a sub's mu, then mu.
	mu       sync.Mutex
	cond     *sync.Cond // signalled when topics change or the broker closes
	topics   map[string]*topic
	gen      uint64 // bumped when topics change
	seen     uint64 // the gen of the reader's current XREAD
	readerID int64  // the client ID of the reader's connection; 0 if none
	closed   bool
}

type topic struct {
	name string
	key  string // the stream
	hkey string // its companion hash
	subs []*sub // under Broker.mu; copy-on-write, see dispatch
}

// New returns a Broker that keeps its topics in the Redis server rdb
// points at. The Broker does not close rdb. Live delivery keeps one of
// rdb's connections blocked while any topic is followed: size rdb's pool
// for it.
func New(rdb *redis.Client, opts *Options) *Broker {
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
	b := &Broker{rdb: rdb, prefix: opts.Prefix, limits: l, log: opts.Logger, topics: make(map[string]*topic), done: make(chan struct{})}
	if b.prefix == "" {
		b.prefix = "sse:"
	}
	b.cond = sync.NewCond(&b.mu)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	go b.read()
	return b
}

// tagLen is the length of the tag of an assigned ID.
const tagLen = 8

// assignedMax is what an assigned ID counts for in the size of an event
// checked before it is stored.
const assignedMax = 32

func (b *Broker) newTopic(name string) *topic {
	e := Escape(name)
	return &topic{name: name, key: b.prefix + "s:" + e, hkey: b.prefix + "h:" + e}
}

// newEra returns a random era tag.
func newEra() string { return fmt.Sprintf("%08x", rand.Uint32()) }

func (b *Broker) limitArgs() []any {
	return []any{b.limits.MaxEvents, b.limits.MaxBytes, ms(b.limits.MaxAge), tagLen}
}

// ms returns d in milliseconds, -1 for a negative d.
func ms(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return max(d.Milliseconds(), 1)
}

// Escape returns topic as it appears in Redis keys: bytes other than
// ASCII letters, digits and "-_.~/:@" as %XX. It is reversible by
// url.PathUnescape, and keeps glob characters and hash tags out of keys.
func Escape(topic string) string {
	var sb strings.Builder
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("-_.~/:@", c) >= 0:
			sb.WriteByte(c)
		default:
			fmt.Fprintf(&sb, "%%%02X", c)
		}
	}
	return sb.String()
}

// Stream IDs "ms-n" are Seq ms<<seqBits | n.
const seqBits = 22

func seqOf(id string) (uint64, bool) {
	a, b, ok := strings.Cut(id, "-")
	if !ok {
		return 0, false
	}
	msPart, err1 := strconv.ParseUint(a, 10, 64)
	n, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil || n >= 1<<seqBits || msPart >= 1<<(64-seqBits) || !canonical(a) || !canonical(b) {
		return 0, false
	}
	return msPart<<seqBits | n, true
}

// canonical reports whether s, which ParseUint took in base 10 (so
// digits only), is the form FormatUint gives: no leading zero.
func canonical(s string) bool { return s == "0" || s[0] != '0' }

func idOf(seq uint64) string {
	return strconv.FormatUint(seq>>seqBits, 10) + "-" + strconv.FormatUint(seq&(1<<seqBits-1), 10)
}

// assigned returns the ID the broker gives the entry sid of era.
func assigned(sid, era string) string { return sid + "." + era }

// parseAssigned returns the stream ID and era of an ID of the form the
// broker assigns.
func parseAssigned(id string) (sid, era string, ok bool) {
	sid, era, ok = strings.Cut(id, ".")
	if !ok || len(era) != tagLen {
		return "", "", false
	}
	if _, ok := seqOf(sid); !ok {
		return "", "", false
	}
	return sid, era, true
}

// unavailable wraps an error of the client: one that is not a reply of
// Redis nor the context's is an outage, and so are the replies of a
// Redis that cannot serve yet (loading its data, busy with a script,
// without its master).
func unavailable(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var re redis.Error
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("redisbroker: %w", err)
	}
	if errors.As(err, &re) && !errors.Is(err, redis.ErrClosed) {
		for _, p := range []string{"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY"} {
			if redis.HasErrorPrefix(err, p) {
				return fmt.Errorf("%w: redis: %w", sse.ErrBrokerUnavailable, err)
			}
		}
		return fmt.Errorf("redisbroker: %w", err)
	}
	return fmt.Errorf("%w: redis: %w", sse.ErrBrokerUnavailable, err)
}

func (b *Broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Publish stores ev in topic; see [sse.Broker.Publish].
func (b *Broker) Publish(ctx context.Context, topicName string, ev *sse.Event, meta *sse.Meta) (sse.Message, error) {
	if ev == nil {
		return sse.Message{}, fmt.Errorf("%w: nil *Event", sse.ErrInvalidEvent)
	}
	if err := ev.Validate(); err != nil {
		return sse.Message{}, err
	}
	if b.isClosed() {
		return sse.Message{}, sse.ErrBrokerClosed
	}
	if err := ctx.Err(); err != nil {
		return sse.Message{}, err
	}
	t := b.newTopic(topicName)
	fields := []any{"d", ev.Data}
	size := len(ev.Data) + len(ev.Type)
	if ev.Type != "" {
		fields = append(fields, "t", ev.Type)
	}
	if ev.ID != "" {
		fields = append(fields, "i", ev.ID)
		size += len(ev.ID)
	}
	if ev.Retry != 0 {
		fields = append(fields, "r", strconv.Itoa(ev.Retry))
	}
	var stored *sse.Meta
	if meta != nil {
		m, _ := json.Marshal(meta)
		fields = append(fields, "m", string(m))
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
	ttl := int64(-1)
	if b.limits.MaxAge >= 0 {
		ttl = ms(b.limits.MaxAge) + 1000
	}
	args := append(b.limitArgs(), newEra(), ttl, "n", size)
	args = append(args, fields...)
	res, err := publishScript.Run(ctx, b.rdb, []string{t.key, t.hkey}, args...).StringSlice()
	if err != nil {
		return sse.Message{}, unavailable(ctx, err)
	}
	if len(res) != 2 {
		return sse.Message{}, fmt.Errorf("redisbroker: unexpected reply %q", res)
	}
	sid, era := res[0], res[1]
	seq, ok := seqOf(sid)
	if !ok {
		return sse.Message{}, fmt.Errorf("redisbroker: stream ID %q out of range", sid)
	}
	m := sse.Message{Topic: topicName, Seq: seq, Event: *ev, Time: time.UnixMilli(int64(seq >> seqBits)), Meta: stored}
	if m.Event.ID == "" {
		m.Event.ID = assigned(sid, era)
	}
	return m, nil
}

// look is the answer of lookScript.
type look struct {
	exists      bool
	last        string // last generated stream ID
	maxDel, pid string // newest deleted stream ID, its publisher ID
	found       string
	era         string
	list        []redis.XMessage
	head, first []redis.XMessage
}

func (b *Broker) look(ctx context.Context, t *topic, sid, era, own string, list bool) (look, error) {
	args := append(b.limitArgs(), sid, era, own, map[bool]string{true: "1", false: "0"}[list])
	v, err := lookScript.Run(ctx, b.rdb, []string{t.key, t.hkey}, args...).Slice()
	if err != nil {
		return look{}, unavailable(ctx, err)
	}
	if len(v) == 0 {
		return look{last: "0-0", maxDel: "0-0"}, nil
	}
	if len(v) != 8 {
		return look{}, fmt.Errorf("redisbroker: unexpected reply of %d items", len(v))
	}
	str := func(x any) string { s, _ := x.(string); return s }
	l := look{exists: true, last: str(v[0]), maxDel: str(v[1]), pid: str(v[2]), found: str(v[3]), era: str(v[7])}
	for i, dst := range []*[]redis.XMessage{&l.list, &l.head, &l.first} {
		ms, err := entries(v[4+i])
		if err != nil {
			return look{}, err
		}
		*dst = ms
	}
	return l, nil
}

// entries decodes entries as a script returns them.
func entries(x any) ([]redis.XMessage, error) {
	items, _ := x.([]any)
	out := make([]redis.XMessage, 0, len(items))
	for _, it := range items {
		pair, _ := it.([]any)
		if len(pair) != 2 {
			return nil, errors.New("redisbroker: malformed entry")
		}
		id, _ := pair[0].(string)
		kv, _ := pair[1].([]any)
		vals := make(map[string]any, len(kv)/2)
		for j := 0; j+1 < len(kv); j += 2 {
			k, _ := kv[j].(string)
			vals[k] = kv[j+1]
		}
		out = append(out, redis.XMessage{ID: id, Values: vals})
	}
	return out, nil
}

// message decodes an entry of t.
func (t *topic) message(e redis.XMessage) (sse.Message, bool) {
	seq, ok := seqOf(e.ID)
	if !ok {
		return sse.Message{}, false
	}
	s := func(k string) string { v, _ := e.Values[k].(string); return v }
	m := sse.Message{Topic: t.name, Seq: seq, Time: time.UnixMilli(int64(seq >> seqBits)),
		Event: sse.Event{Type: s("t"), ID: eventID(e), Data: s("d")}}
	if r := s("r"); r != "" {
		m.Event.Retry, _ = strconv.Atoi(r)
	}
	if raw := s("m"); raw != "" {
		var meta sse.Meta
		if json.Unmarshal([]byte(raw), &meta) == nil {
			m.Meta = &meta
		}
	}
	return m, true
}

// eventID returns the ID of the event in entry e: the publisher's, or
// the one the broker assigned.
func eventID(e redis.XMessage) string {
	if id, _ := e.Values["i"].(string); id != "" {
		return id
	}
	era, _ := e.Values["e"].(string)
	return assigned(e.ID, era)
}

// position returns the position of stream ID sid in l: that of a
// retained entry, or of the newest deleted one.
func (t *topic) position(l look, sid string) sse.Position {
	seq, _ := seqOf(sid)
	if seq == 0 {
		return sse.Position{}
	}
	for _, list := range [][]redis.XMessage{l.head, l.first} {
		if len(list) == 1 && list[0].ID == sid {
			return sse.Position{Seq: seq, ID: eventID(list[0])}
		}
	}
	if sid == l.maxDel && l.pid != "" {
		return sse.Position{Seq: seq, ID: l.pid}
	}
	return sse.Position{Seq: seq, ID: assigned(sid, l.era)}
}

// History returns the events of topic after afterID; see
// [sse.Broker.History].
func (b *Broker) History(ctx context.Context, topicName, afterID string) (sse.History, error) {
	if b.isClosed() {
		return sse.History{}, sse.ErrBrokerClosed
	}
	t := b.newTopic(topicName)
	sid, era, own := "", "", ""
	if afterID != "" {
		var ok bool
		if sid, era, ok = parseAssigned(afterID); !ok {
			own = afterID
		}
	}
	l, err := b.look(ctx, t, sid, era, own, true)
	if err != nil {
		return sse.History{}, err
	}
	var h sse.History
	known := afterID == "" || l.found != ""
	h.Gap = !known || afterID == "" && l.maxDel != "0-0"
	if known && !h.Gap {
		h.After = t.position(l, l.found)
		if own != "" {
			// Found by its publisher ID, which position cannot tell
			// for an entry neither the oldest nor the newest.
			h.After.ID = own
		}
	}
	for _, e := range l.list {
		if m, ok := t.message(e); ok {
			h.Messages = append(h.Messages, m)
		}
	}
	if len(l.first) == 1 {
		h.Oldest = t.position(l, l.first[0].ID)
	}
	if len(l.head) == 1 {
		h.Head = t.position(l, l.head[0].ID)
	} else if l.exists {
		h.Head = t.position(l, l.last)
	}
	return h, nil
}

func (b *Broker) logf(level slog.Level, msg string, args ...any) {
	if b.log != nil {
		b.log.Log(context.Background(), level, msg, args...)
	}
}

// Close stops the reader and ends the subscriptions with
// [sse.ErrBrokerClosed]; it leaves the Redis client open. Later calls
// return [sse.ErrBrokerClosed].
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	id := b.readerID
	b.cond.Broadcast()
	b.mu.Unlock()
	b.cancel()
	if id != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		b.rdb.ClientUnblock(ctx, id)
		cancel()
	}
	<-b.done
	b.endAll(sse.ErrBrokerClosed)
	return nil
}
