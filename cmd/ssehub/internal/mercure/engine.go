package mercure

// This file holds every use of the sse core by the hub, so that changes
// to the core's API are adapted here and nowhere else.
//
// Mercure routes an update by its topics and privacy, which a
// subscriber's matchers and token judge one update at a time; the set of
// topics a subscriber follows is not known in advance (URL patterns,
// "*"). So the hub publishes every update to one internal broker topic,
// allTopic, with its Mercure topics and private flag in the event's
// sse.Meta, which the broker stores beside it and hands back to every
// node, live and replayed alike. Each stream follows allTopic through an
// sse.Server whose Filter judges that Meta. The engine then gives the
// guarantees the hub relies on: replay after a Last-Event-ID with no gap
// and no duplicate into live events, slow client handling, heartbeats
// and graceful shutdown.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
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

// ErrUnavailable is returned by Publish and Ready when the broker cannot
// be reached.
var ErrUnavailable = sse.ErrBrokerUnavailable

// ErrTooLarge is returned by Publish for an update larger than the
// broker holds.
var ErrTooLarge = sse.ErrEventTooLarge

// Update is what the hub publishes.
type Update struct {
	Topics  []string // the canonical topic, then the alternate ones
	Private bool
	ID      string
	Type    string
	Data    string
	Retry   int
}

// EngineConfig configures an [Engine]; its zero value is usable.
type EngineConfig struct {
	// Broker stores the updates; nil means an in-memory broker bounded
	// by History. The engine closes it.
	Broker sse.Broker
	// History bounds the retention of the in-memory broker; its zero
	// value gives the core's defaults (see sse.HistoryLimits).
	History sse.HistoryLimits
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
	srv       *sse.Server
	broker    sse.Broker
	published atomic.Uint64
	closed    atomic.Bool
	done      chan struct{} // closed by Shutdown
	closeOnce sync.Once

	mu       sync.Mutex
	ending   int           // streams whose ended func has not returned
	stopping bool          // Shutdown began: streams are no longer counted
	ended    chan struct{} // closed when ending drops to 0 while stopping
}

// streamKey carries a stream's *streamState in its request context.
type streamKey struct{}

// streamState is what the hub gives the engine for one stream: its
// filter and what to release once the stream ended.
type streamState struct {
	pass  func(topics []string, private bool) bool
	ended func()
}

// NewEngine starts an engine.
func NewEngine(cfg EngineConfig) *Engine {
	b := cfg.Broker
	if b == nil {
		b = sse.NewMemoryBroker(cfg.History)
	}
	e := &Engine{broker: b, done: make(chan struct{})}
	e.srv = &sse.Server{
		Broker: noGapBroker{b},
		Topics: func(*http.Request) ([]string, error) { return []string{allTopic}, nil },
		Filter: filterFor,
		Options: sse.Options{
			Heartbeat:    cfg.Heartbeat,
			WriteTimeout: cfg.WriteTimeout,
			Logger:       cfg.Logger,
			// A stream over HTTP/1.1 is kept by the core once open,
			// without the handler's goroutine and net/http's buffers:
			// about half of what an idle subscriber costs. What the
			// hub holds for it is released by streamEnded.
			Detach:      true,
			OnStreamEnd: streamEnded,
		},
	}
	return e
}

// filterFor is the sse.Server's Filter: it applies the predicate the hub
// put in the request's context to each update's topics and privacy. An
// event without Meta was not written by a hub and goes to nobody. The
// node topic a hub appends to its own events (see nodeTopicPrefix) is
// not a topic of the update: it is dropped before pass sees the topics,
// so that a hub's heartbeats, which have no other, go to nobody.
func filterFor(r *http.Request) func(*sse.Message) bool {
	var pass func(topics []string, private bool) bool
	if st, _ := r.Context().Value(streamKey{}).(*streamState); st != nil {
		pass = st.pass
	}
	return func(m *sse.Message) bool {
		if pass == nil || m.Meta == nil {
			return false
		}
		topics, _ := splitNode(m.Meta.Topics)
		return len(topics) > 0 && pass(topics, m.Meta.Private)
	}
}

// streamEnded is the sse.Server's OnStreamEnd: the core calls it once
// for every request Serve hands it, when its stream ended or when it was
// refused, and it calls the ended func the hub gave Serve.
func streamEnded(r *http.Request, _ error) {
	if st, _ := r.Context().Value(streamKey{}).(*streamState); st != nil && st.ended != nil {
		st.ended()
	}
}

// nodeTopicPrefix starts the last topic of the events a hub of a
// cluster writes for itself (subscription events and heartbeats), naming
// the hub that wrote them. It lies in the hub's reserved namespace, which
// publishers cannot use, and never reaches a subscriber's matchers.
const nodeTopicPrefix = hubPath + "/nodes/"

// splitNode returns topics without a trailing node topic, and the node
// it names ("" for none).
func splitNode(topics []string) ([]string, string) {
	if n := len(topics); n > 0 && strings.HasPrefix(topics[n-1], nodeTopicPrefix) {
		return topics[:n-1], topics[n-1][len(nodeTopicPrefix):]
	}
	return topics, ""
}

// Publish stores u (whose ID is set); it returns once the broker stored
// it, the streams receiving it from the broker's feed.
func (e *Engine) Publish(ctx context.Context, u *Update) error {
	if e.closed.Load() {
		return ErrClosed
	}
	return e.store(ctx, u)
}

// store is Publish without the check for a shutdown: the hub's own
// updates (a subscription's end) are still stored while Shutdown ends
// the streams, until it closes the broker.
func (e *Engine) store(ctx context.Context, u *Update) error {
	ev := &sse.Event{ID: u.ID, Type: u.Type, Retry: u.Retry, Data: u.Data}
	_, err := e.broker.Publish(ctx, allTopic, ev, &sse.Meta{Topics: u.Topics, Private: u.Private})
	if errors.Is(err, sse.ErrBrokerClosed) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	if err == nil {
		e.published.Add(1)
	}
	return err
}

// Serve streams to w the updates pass accepts, replaying those after
// lastID first when it is not empty (an ID the history does not hold,
// "earliest" included, replays every retained one). It calls ended
// (unless nil) exactly once: when the stream ended, or when no stream
// could be opened. Serve may return before the stream ends (the core
// keeps a stream whose connection it took over: sse.Options.Detach), so
// what the stream holds must be released by ended, not after Serve
// returns. The stream ends when the client leaves, the engine shuts
// down, or r's context's deadline passes; r's context's cancellation
// ends it only while Serve has not returned.
func (e *Engine) Serve(w http.ResponseWriter, r *http.Request, lastID string, pass func(topics []string, private bool) bool, ended func()) {
	// The core reads the resume position from Last-Event-ID (or a
	// lastEventId query parameter, which Mercure does not define): hand
	// it the one the hub chose, and nothing else. A shallow copy with
	// its own small URL and header, kept as long as the stream, costs
	// less than a deep clone.
	done := ended
	if e.track() {
		done = func() {
			defer e.untrack()
			if ended != nil {
				ended()
			}
		}
	}
	r2 := r.WithContext(context.WithValue(r.Context(), streamKey{}, &streamState{pass: pass, ended: done}))
	r2.URL = &url.URL{Path: r.URL.Path}
	r2.Header = http.Header{}
	if lastID != "" {
		r2.Header["Last-Event-Id"] = []string{lastID}
	}
	e.srv.ServeHTTP(w, r2)
}

// Anchor returns the value of the Mercure-Last-Event-ID response field
// of a stream resuming after lastID: lastID itself when the history
// holds that update (the replay then starts right after it), Earliest
// otherwise.
func (e *Engine) Anchor(ctx context.Context, lastID string) string {
	if lastID == "" || lastID == Earliest {
		return Earliest
	}
	h, err := e.broker.History(ctx, allTopic, lastID)
	if err != nil || h.Gap || h.After.Seq == 0 {
		return Earliest
	}
	return lastID
}

// LastEventID returns the ID of the newest update, or Earliest.
func (e *Engine) LastEventID(ctx context.Context) string {
	head, err := e.head(ctx)
	if err != nil || head.ID == "" {
		return Earliest
	}
	return head.ID
}

// head returns the position of the newest update.
func (e *Engine) head(ctx context.Context) (sse.Position, error) {
	sub, err := e.broker.Subscribe(ctx, allTopic, sse.Newest, func(sse.Message) {})
	if err != nil {
		return sse.Position{}, err
	}
	defer sub.Close()
	return sub.After(), nil
}

// Followed is an update as a follower of the engine's broker reads it.
type Followed struct {
	Seq    uint64 // its place in the broker, increasing
	ID     string
	Type   string
	Data   string
	Topics []string // as published, a node topic included
}

// Head returns the place and ID of the newest update (0 and "" for
// none).
func (e *Engine) Head(ctx context.Context) (uint64, string, error) {
	p, err := e.head(ctx)
	return p.Seq, p.ID, err
}

// followRetry is the pause before Follow asks the broker again after a
// failure.
const followRetry = 200 * time.Millisecond

// Follow calls fn with every update of the broker in order: first those
// it retains, then each one published, until ctx ends or the engine shuts
// down. It calls reset before it starts over from the retained updates:
// first, and again when it lost its place (the updates after it were
// pruned during a broker outage). fn must return quickly without calling
// the engine; it is never called concurrently.
func (e *Engine) Follow(ctx context.Context, reset func(), fn func(Followed)) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-e.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var after atomic.Uint64
	deliver := func(m sse.Message) {
		after.Store(m.Seq)
		var topics []string
		if m.Meta != nil {
			topics = m.Meta.Topics
		}
		fn(Followed{Seq: m.Seq, ID: m.Event.ID, Type: m.Event.Type, Data: m.Event.Data, Topics: topics})
	}
	placed, fresh := false, false
	pause := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(followRetry):
			return true
		}
	}
	for ctx.Err() == nil {
		if !placed {
			h, err := e.broker.History(ctx, allTopic, "")
			if err != nil {
				if !pause() {
					return
				}
				continue
			}
			reset()
			after.Store(h.Head.Seq)
			for _, m := range h.Messages {
				deliver(m)
			}
			placed, fresh = true, len(h.Messages) == 0
		}
		sub, err := e.broker.Subscribe(ctx, allTopic, after.Load(), deliver)
		if errors.Is(err, sse.ErrGap) && fresh {
			// Nothing retained, and the start of the topic pruned:
			// follow from the newest update on.
			sub, err = e.broker.Subscribe(ctx, allTopic, sse.Newest, deliver)
		}
		fresh = false
		if err == nil {
			select {
			case <-sub.Done():
			case <-ctx.Done():
			}
			sub.Close()
			err = sub.Err()
		}
		if errors.Is(err, sse.ErrGap) {
			placed = false
		}
		if errors.Is(err, sse.ErrBrokerClosed) || !pause() {
			return
		}
	}
}

// Ready reports whether the broker answers; the error matches
// ErrUnavailable while it cannot be reached.
func (e *Engine) Ready(ctx context.Context) error {
	_, err := e.head(ctx)
	return err
}

// Streams returns the number of open streams.
func (e *Engine) Streams() int { return e.srv.Clients() }

// Stats returns the core's counters, Broadcasts counting the updates
// the engine published.
func (e *Engine) Stats() sse.Stats {
	s := e.srv.Stats()
	s.Broadcasts = e.published.Load()
	return s
}

// Shutdown ends the streams gracefully (see sse.Server.Shutdown) and
// releases the broker.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.closed.Store(true)
	e.closeOnce.Do(func() { close(e.done) })
	err := e.srv.Shutdown(ctx)
	// A stream's ended func runs once the stream ended, perhaps after
	// the core's Shutdown returned: wait for those (they publish the end
	// of their subscriptions) before the broker closes, as long as ctx
	// allows.
	e.mu.Lock()
	e.stopping = true
	if e.ending > 0 && e.ended == nil {
		e.ended = make(chan struct{})
	}
	wait := e.ended
	e.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
		}
	}
	e.broker.Close()
	return err
}

// track counts a stream whose ended func Shutdown waits for, and reports
// whether it did: not once Shutdown began.
func (e *Engine) track() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopping {
		return false
	}
	e.ending++
	return true
}

// untrack undoes track once the stream's ended func returned.
func (e *Engine) untrack() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ending--; e.ending == 0 && e.ended != nil {
		close(e.ended)
		e.ended = nil
	}
}

// noGapBroker is the broker as the sse.Server sees it: its history never
// reports a gap, because Mercure tells a resuming subscriber about
// possible loss through the Mercure-Last-Event-ID response field rather
// than an in-band event. An unknown position thus replays every retained
// update, which is also what "earliest" asks for.
type noGapBroker struct{ sse.Broker }

func (b noGapBroker) History(ctx context.Context, topic, afterID string) (sse.History, error) {
	h, err := b.Broker.History(ctx, topic, afterID)
	if err == nil && h.Gap {
		h.Gap, h.After = false, sse.Position{}
	}
	return h, err
}
