package mercure

// This file holds every use of the sse core by the hub, so that changes
// to the core's API are adapted here and nowhere else.
//
// Mercure routes an update by its topic and privacy, which a subscriber's
// matchers and token judge one update at a time; the set of topics a
// subscriber follows is not known in advance (URL patterns, "*"). So the
// hub publishes every update to one internal broker topic, allTopic, and
// each stream follows that topic with a Filter deciding, per update,
// whether it is routed to and readable by the subscriber. The engine
// then gives the guarantees the hub relies on: replay after a
// Last-Event-ID with no gap and no duplicate into live events, slow
// client handling, heartbeats and graceful shutdown.
//
// The broker stores events only (type, id, data, retry), not the
// update's topics and private flag, which every node needs to filter. Until
// brokers carry metadata, the hub stores each update with its metadata in
// an envelope in the event's data (see encodeEnvelope), and hubBroker,
// the view of the broker given to the sse.Server, takes the envelope off
// every message it hands over (live or replayed), restoring the data and
// recording the metadata by Seq in a metaCache that the Filter reads. The
// envelope travels with the event, so any node of a cluster sharing the
// broker can decode it.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coregx/stream/sse"
)

// allTopic is the broker topic holding every update of the hub.
const allTopic = "mercure"

// Earliest is the reserved last event ID asking for every retained update.
const Earliest = "earliest"

// ErrClosed is returned by Publish once the engine is shutting down.
var ErrClosed = errors.New("mercure: hub closed")

// Update is what the hub publishes.
type Update struct {
	Topics  []string // the topic, then alternates (compatibility mode)
	Private bool
	ID      string
	Type    string
	Data    string
	Retry   int
}

// updateMeta is what the Filter needs of a stored update.
type updateMeta struct {
	Topics  []string
	Private bool
	ID      string
}

// EngineConfig configures an [Engine]; its zero value is usable.
type EngineConfig struct {
	// Broker stores the updates; nil means an in-memory broker bounded
	// by History. The engine closes it.
	Broker sse.Broker
	// HistoryEvents, HistoryBytes and HistoryAge bound the retention of
	// the in-memory broker: zero means the core's defaults (1000
	// updates, 1 MiB, 1 hour), negative no bound.
	HistoryEvents int
	HistoryBytes  int64
	HistoryAge    time.Duration
	// Heartbeat is the idle time before a keep-alive comment; zero means
	// the core's default (15s), negative none.
	Heartbeat time.Duration
	// WriteTimeout bounds each write to a subscriber; zero means the
	// core's default (10s).
	WriteTimeout time.Duration
	// Logger receives the core's records; nil discards them.
	Logger *slog.Logger
}

// Engine delivers updates to streams through the sse core.
type Engine struct {
	srv    *sse.Server
	inner  sse.Broker
	metas  *metaCache
	own    sse.Subscription
	closed atomic.Bool
}

// filterKey carries a stream's filter in its request context.
type filterKey struct{}

// NewEngine starts an engine.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	inner := cfg.Broker
	if inner == nil {
		inner = sse.NewMemoryBroker(sse.HistoryLimits{MaxEvents: cfg.HistoryEvents, MaxBytes: cfg.HistoryBytes, MaxAge: cfg.HistoryAge})
	}
	// The cache must hold the metadata of every update a replay can
	// list, so it is sized above the history it serves: an update whose
	// metadata is gone is sent to nobody (never to the wrong stream).
	size := 1 << 20
	if n := cfg.HistoryEvents; n > 0 {
		size = n + 1<<16
	} else if n == 0 {
		size = sse.DefaultHistoryEvents + 1<<16
	}
	e := &Engine{inner: inner, metas: newMetaCache(size)}
	view := &hubBroker{Broker: inner, metas: e.metas}
	e.srv = &sse.Server{
		Broker: view,
		Topics: func(*http.Request) ([]string, error) { return []string{allTopic}, nil },
		Filter: e.filterFor,
		Options: sse.Options{
			Heartbeat:    cfg.Heartbeat,
			WriteTimeout: cfg.WriteTimeout,
			Logger:       cfg.Logger,
		},
	}
	// The engine's own subscription records the metadata of every update
	// from now on, whether or not a stream follows it, so that the
	// predecessor of a resume position can be judged (see Predecessor).
	ctx := context.Background()
	head, err := inner.Head(ctx, allTopic)
	if err != nil {
		return nil, fmt.Errorf("mercure: broker: %w", err)
	}
	e.own, err = view.Subscribe(ctx, allTopic, head.Seq, func(sse.Message) {})
	if err != nil {
		return nil, fmt.Errorf("mercure: broker: %w", err)
	}
	return e, nil
}

// filterFor is the sse.Server's Filter: it applies the predicate the hub
// put in the request's context to each update's metadata.
func (e *Engine) filterFor(r *http.Request) func(*sse.Message) bool {
	pass, _ := r.Context().Value(filterKey{}).(func(*updateMeta) bool)
	if pass == nil {
		return func(*sse.Message) bool { return false }
	}
	return func(m *sse.Message) bool {
		u := e.metas.get(m.Seq)
		return u != nil && pass(u)
	}
}

// Publish stores u (whose ID is set) and sends it to the streams.
func (e *Engine) Publish(ctx context.Context, u *Update) error {
	if e.closed.Load() {
		return ErrClosed
	}
	ev := &sse.Event{ID: u.ID, Type: u.Type, Retry: u.Retry, Data: encodeEnvelope(u)}
	_, err := e.srv.Publish(ctx, allTopic, ev)
	if errors.Is(err, sse.ErrServerClosed) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// Serve streams to w the updates pass accepts, replaying those after
// lastID first when it is not empty ("earliest" replays every retained
// one). The stream ends when r's context does.
func (e *Engine) Serve(w http.ResponseWriter, r *http.Request, lastID string, pass func(*updateMeta) bool) {
	ctx := context.WithValue(r.Context(), filterKey{}, pass)
	r2 := r.Clone(ctx)
	// The core reads the resume position from Last-Event-ID (or a
	// lastEventId query parameter, which Mercure does not define): hand
	// it the one the hub chose, and nothing else.
	r2.URL.RawQuery = ""
	r2.Header.Del("Last-Event-ID")
	if lastID != "" {
		r2.Header.Set("Last-Event-ID", lastID)
	}
	e.srv.ServeHTTP(w, r2)
}

// Predecessor returns the ID to report in the Last-Event-ID response
// header of a stream resuming after lastID: lastID itself when the
// history holds it and visible accepts it, else the newest update before
// it that visible accepts, within scanLimit updates; Earliest otherwise.
func (e *Engine) Predecessor(ctx context.Context, lastID string, scanLimit int, visible func(*updateMeta) bool) string {
	if lastID == Earliest {
		return Earliest
	}
	h, err := e.inner.History(ctx, allTopic, lastID)
	if err != nil || h.Gap || h.After == 0 {
		return Earliest
	}
	for seq, n := h.After, 0; seq > 0 && n < scanLimit; seq, n = seq-1, n+1 {
		if u := e.metas.get(seq); u != nil && visible(u) {
			return u.ID
		}
	}
	return Earliest
}

// LastEventID returns the ID of the newest update, or Earliest.
func (e *Engine) LastEventID(ctx context.Context) string {
	h, err := e.inner.Head(ctx, allTopic)
	if err != nil || h.ID == "" {
		return Earliest
	}
	return h.ID
}

// Ready reports whether the broker answers.
func (e *Engine) Ready(ctx context.Context) error {
	_, err := e.inner.Head(ctx, allTopic)
	return err
}

// Streams returns the number of open streams.
func (e *Engine) Streams() int { return e.srv.Clients() }

// Stats returns the core's counters.
func (e *Engine) Stats() sse.Stats { return e.srv.Stats() }

// Shutdown ends the streams gracefully (see sse.Server.Shutdown) and
// releases the broker.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.closed.Store(true)
	err := e.srv.Shutdown(ctx)
	e.own.Close()
	e.inner.Close()
	return err
}

// hubBroker is the broker as the sse.Server sees it: every message comes
// out of its envelope, its metadata recorded in metas; and the history
// never reports a gap, because Mercure tells a resuming subscriber about
// possible loss through the Last-Event-ID response header rather than an
// in-band event. An unknown position thus replays every retained update,
// which is also what "earliest" asks for.
type hubBroker struct {
	sse.Broker
	metas *metaCache
}

func (b *hubBroker) open(m *sse.Message) {
	u, data, ok := decodeEnvelope(m.Event.Data)
	if !ok {
		// Not written by a hub: deliver it to nobody.
		u = nil
	} else {
		u.ID = m.Event.ID
	}
	m.Event.Data = data
	b.metas.put(m.Seq, u)
}

func (b *hubBroker) History(ctx context.Context, topic, afterID string) (sse.History, error) {
	h, err := b.Broker.History(ctx, topic, afterID)
	if err != nil {
		return h, err
	}
	for i := range h.Messages {
		b.open(&h.Messages[i])
	}
	if h.Gap {
		h.Gap, h.After = false, 0
	}
	return h, nil
}

func (b *hubBroker) Subscribe(ctx context.Context, topic string, after uint64, fn func(sse.Message)) (sse.Subscription, error) {
	return b.Broker.Subscribe(ctx, topic, after, func(m sse.Message) {
		b.open(&m)
		fn(m)
	})
}

// encodeEnvelope wraps the data of u with its metadata:
// "p\n<topics>\n<data>" for a private update and
// "-\n<topics>\n<data>" for a public one, the topics separated by
// U+001F. Topics hold no control characters, so neither the separator
// nor the second line break can occur in one.
func encodeEnvelope(u *Update) string {
	flag := "-"
	if u.Private {
		flag = "p"
	}
	return flag + "\n" + strings.Join(u.Topics, topicSeparator) + "\n" + u.Data
}

// topicSeparator separates the topics of an envelope.
const topicSeparator = "\x1f"

// decodeEnvelope undoes encodeEnvelope; ok is false for data that is not
// an envelope.

func decodeEnvelope(s string) (*updateMeta, string, bool) {
	flag, rest, ok := strings.Cut(s, "\n")
	if !ok || flag != "p" && flag != "-" {
		return nil, "", false
	}
	topics, data, ok := strings.Cut(rest, "\n")
	if !ok {
		return nil, "", false
	}
	return &updateMeta{Topics: strings.Split(topics, topicSeparator), Private: flag == "p"}, data, true
}

// metaCache records the metadata of the newest updates by Seq.
type metaCache struct {
	last atomic.Pointer[metaEntry] // the latest put, read without the lock

	mu    sync.Mutex
	bySeq map[uint64]*updateMeta
	ring  []uint64 // Seqs in insertion order, oldest at next once full
	next  int
	size  int
}

type metaEntry struct {
	seq uint64
	u   *updateMeta
}

func newMetaCache(size int) *metaCache {
	return &metaCache{bySeq: make(map[uint64]*updateMeta), size: size}
}

func (c *metaCache) put(seq uint64, u *updateMeta) {
	c.last.Store(&metaEntry{seq: seq, u: u})
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.bySeq[seq]; ok {
		c.bySeq[seq] = u
		return
	}
	if len(c.ring) < c.size {
		c.ring = append(c.ring, seq)
	} else {
		delete(c.bySeq, c.ring[c.next])
		c.ring[c.next] = seq
		c.next = (c.next + 1) % len(c.ring)
	}
	c.bySeq[seq] = u
}

func (c *metaCache) get(seq uint64) *updateMeta {
	if e := c.last.Load(); e != nil && e.seq == seq {
		return e.u
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bySeq[seq]
}
