package sse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"

	"github.com/coregx/stream/sse/internal/fanout"
)

// StatusError is an error that makes a [Server] answer a request with an
// HTTP status. Return one from [Server.Topics] to refuse a request:
//
//	return nil, &sse.StatusError{Code: http.StatusForbidden, Err: errors.New("not yours")}
type StatusError struct {
	Code int   // HTTP status code to answer with
	Err  error // the reason, sent as the response body
}

// Error returns the reason, or the status text when there is none.
func (e *StatusError) Error() string {
	if e.Err == nil {
		return http.StatusText(e.Code)
	}
	return e.Err.Error()
}

// Unwrap returns e.Err.
func (e *StatusError) Unwrap() error { return e.Err }

// Server streams the events of topics to HTTP clients, replaying what a
// reconnecting client missed. It is an [http.Handler]; its zero value is
// ready to use and its fields, which must not change once it is in use,
// configure it.
//
// Events are published with [Server.Publish] (or by anything else
// writing to the same [Broker]) and kept in the broker's history. Each
// request follows the topics that [Server.Topics] picks for it; events
// are encoded once per set of topics followed, whatever the number of
// clients.
//
// # Event IDs and resuming
//
// On a stream of one topic, events carry their own IDs: the publisher's,
// or the broker's (decimal numbers for [MemoryBroker]). On a stream of
// several topics, the ID of every event is a cursor holding the position
// in each topic, written as a URL query with the topics sorted, such as
// "news=17&sport=21" (topics and IDs are query-escaped); it is opaque to
// clients, who only send it back.
//
// A client that connects with a Last-Event-ID header (or a lastEventId
// query parameter) gets every retained event after that position, topic
// by topic, and then the live events, with nothing lost or repeated in
// between, even while events are being published. When the position is
// unknown, malformed, from other topics, or older than the history, the
// client first gets an event of type [GapEventType] for each topic
// concerned, and then every retained event of it. A client without
// Last-Event-ID gets only the events published after it connected.
//
// # Shutting down
//
// [Server.Close] ends every stream once what was published before it is
// written, without waiting on clients that stopped reading;
// [Server.Shutdown] also spreads the clients' reconnections and waits as
// long as its context allows.
// [http.Server.Shutdown] waits for connections to go idle, which a stream
// never does by itself, so register the server's Shutdown with it:
//
//	srv.RegisterOnShutdown(func() { events.Shutdown(ctx) })
type Server struct {
	// Broker holds the events. Nil means a [MemoryBroker] with the
	// default history limits, made on first use and closed with the
	// server; pass one made by [NewMemoryBroker] for other limits.
	Broker Broker

	// Topics picks the topics a request follows (in any order; repeats
	// are ignored). An error refuses the request: a [*StatusError] with
	// its status, any other error with 400 Bad Request; its text is the
	// response body. So is an empty list. Nil means every request
	// follows the topic "".
	Topics func(r *http.Request) ([]string, error)

	// MaxTopicLen bounds the length in bytes of each topic name a
	// request follows; a request naming a longer one gets 400 Bad
	// Request, saying so. Zero means 1 KiB; negative removes the bound.
	MaxTopicLen int

	// MaxTopics caps the topics followed at once, by all requests
	// together, so that clients choosing topic names cannot make the
	// server hold any number of them. A request that would add a topic
	// beyond the cap gets 503 Service Unavailable with a Retry-After
	// header, as when the broker is unavailable: the server is full, not
	// the request wrong. Zero means no cap.
	MaxTopics int

	// Filter, when set, is called once per request; the predicate it
	// returns (nil passes everything) decides which events of the
	// request's topics are sent to it, replayed ones included. It runs
	// for every event and client, so it must be cheap, must not call
	// the Server, and must not modify the message, which other clients'
	// predicates are given too. It must also answer the same for the
	// same message whenever asked: it may be asked more than once, and
	// later, for a client that catches up after its writes were blocked.
	Filter func(r *http.Request) func(m *Message) bool

	// Options configures the streams, slow clients and shutdown. The
	// SlowDisconnect policy loses nothing on a Server: the client
	// resumes from its Last-Event-ID.
	Options

	once      sync.Once
	core      *hubCore
	broker    Broker
	ownBroker bool
	ctx       context.Context
	cancel    context.CancelFunc

	smu      sync.Mutex
	subs     map[string]*topicSub
	watchers sync.WaitGroup
}

// topicSub is the server's subscription to one topic. It lives while
// requests follow the topic: the last one to leave ends it, so topics
// that come and go (one per user, say) leave nothing behind.
type topicSub struct {
	ready   chan struct{} // closed once err or sub is set
	err     error
	sub     Subscription
	refs    int  // requests following the topic; guarded by Server.smu
	dropped bool // ended because no request follows it; guarded by Server.smu
}

func (s *Server) init() {
	s.once.Do(func() {
		s.broker = s.Broker
		if s.broker == nil {
			s.broker, s.ownBroker = NewMemoryBroker(HistoryLimits{}), true
		}
		s.core = newHubCore(s.Options, ErrServerClosed)
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.subs = make(map[string]*topicSub)
	})
}

// Publish stores ev in topic and sends it to the clients following the
// topic. It returns the event's ID: ev.ID when set, else one the broker
// assigned. ev is not modified. It returns an error matching
// [ErrServerClosed] once Close or Shutdown started, [ErrInvalidEvent] for
// an event that fails [Event.Validate], or the broker's error; nothing
// is stored or sent then.
func (s *Server) Publish(ctx context.Context, topic string, ev *Event) (string, error) {
	s.init()
	if s.core.IsClosed() {
		return "", ErrServerClosed
	}
	m, err := s.broker.Publish(ctx, topic, ev, nil)
	if err != nil {
		if errors.Is(err, ErrBrokerClosed) {
			return "", fmt.Errorf("%w: %w", ErrServerClosed, err)
		}
		return "", err
	}
	s.core.CountBroadcast()
	return m.Event.ID, nil
}

// Clients returns the number of connected clients.
func (s *Server) Clients() int {
	s.init()
	return s.core.Clients()
}

// Stats returns a snapshot of the server's counters; Broadcasts counts
// the events published through [Server.Publish].
func (s *Server) Stats() Stats {
	s.init()
	return Stats(s.core.Stats())
}

// Close ends every stream as [Hub.Close] does (what was published before
// it is still written, without waiting on clients that stopped reading),
// stops the broker subscriptions and closes the broker if the server made
// it. Publish and new requests are refused from the moment it is called.
// Close is idempotent and returns nil.
func (s *Server) Close() error {
	s.init()
	s.core.Close()
	s.release()
	return nil
}

// Shutdown stops the server gracefully, as [Hub.Shutdown] describes:
// new requests get 503 and Publish fails, each client gets a "retry:"
// hint of ShutdownRetry plus a random part of ShutdownJitter, and each
// stream ends once its queue is written. It returns nil once all streams
// ended, or ctx's error after ending the streams left at once if ctx ends
// first.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	err := s.core.Shutdown(ctx)
	s.release()
	return err
}

// release ends the subscriptions and the server's own broker.
func (s *Server) release() {
	s.cancel()
	s.watchers.Wait()
	if s.ownBroker {
		s.broker.Close()
	}
}

// ServeHTTP streams the topics [Server.Topics] picks for r; see [Server].
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.init()
	var (
		topics   []string
		followed []*topicSub
	)
	sv := &served{core: s.core, r: r, release: func() {
		for i, ts := range followed {
			s.unfollow(topics[i], ts)
		}
	}}
	defer sv.done()
	if s.core.IsClosed() {
		sv.refused = ErrServerClosed
		http.Error(w, ErrServerClosed.Error(), http.StatusServiceUnavailable)
		return
	}
	topics, sv.refused = s.topicsFor(r)
	if sv.refused != nil {
		code := http.StatusBadRequest
		var se *StatusError
		if errors.As(sv.refused, &se) {
			code = se.Code
		}
		http.Error(w, sv.refused.Error(), code)
		return
	}
	followed = make([]*topicSub, 0, len(topics))
	for _, t := range topics {
		ts, err := s.follow(r.Context(), t)
		if err != nil {
			sv.refused = err
			if r.Context().Err() == nil {
				refuseFollow(w, err)
			}
			return
		}
		followed = append(followed, ts)
	}
	var filter func(*Message) bool
	if s.Filter != nil {
		filter = s.Filter(r)
	}
	lastID := lastEventID(r)
	sv.conn, sv.refused = s.core.open(w, r, func(conn *Conn) error {
		return s.core.Register(sinkOf(conn), topics, liveFilter(filter), lastID != "")
	})
	if !upgradeOK(w, sv.refused, ErrServerClosed) {
		return
	}
	if lastID != "" {
		if err := s.resume(r.Context(), sv.conn, topics, lastID, filter); err != nil {
			s.core.Logf(slog.LevelError, "sse: reading history", "err", err)
			return
		}
	}
	sv.hold()
}

// retryAfter is the Retry-After header, in seconds, of a request
// refused because the broker is unavailable or the topics are at their
// cap.
const retryAfter = "5"

// errTooManyTopics refuses a request that would follow a topic beyond
// Server.MaxTopics.
var errTooManyTopics = errors.New("sse: too many topics followed, retry later")

// refuseFollow answers a request whose topic could not be followed.
func refuseFollow(w http.ResponseWriter, err error) {
	msg := "sse: topic unavailable"
	switch {
	case errors.Is(err, errTooManyTopics):
		msg = errTooManyTopics.Error()
	case errors.Is(err, ErrBrokerUnavailable):
		msg = ErrBrokerUnavailable.Error() + ", retry later"
	default:
		http.Error(w, msg, http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Retry-After", retryAfter)
	http.Error(w, msg, http.StatusServiceUnavailable)
}

// topicsFor returns the sorted, distinct topics r follows.
func (s *Server) topicsFor(r *http.Request) ([]string, error) {
	if s.Topics == nil {
		return []string{""}, nil
	}
	topics, err := s.Topics(r)
	if err != nil {
		return nil, err
	}
	if len(topics) == 0 {
		return nil, errors.New("sse: no topics")
	}
	limit := s.MaxTopicLen
	if limit == 0 {
		limit = 1 << 10
	}
	for _, t := range topics {
		if limit > 0 && len(t) > limit {
			return nil, fmt.Errorf("sse: topic name of %d bytes is longer than the %d allowed", len(t), limit)
		}
	}
	topics = slices.Clone(topics)
	slices.Sort(topics)
	return slices.Compact(topics), nil
}

// follow makes sure the server is subscribed to topic, for one request,
// which must pass the returned subscription to unfollow once it no longer
// follows the topic (and only when follow returned no error).
func (s *Server) follow(ctx context.Context, topic string) (*topicSub, error) {
	s.smu.Lock()
	ts := s.subs[topic]
	if ts == nil && s.MaxTopics > 0 && len(s.subs) >= s.MaxTopics {
		s.smu.Unlock()
		return nil, errTooManyTopics
	}
	if ts == nil {
		ts = &topicSub{ready: make(chan struct{}), refs: 1}
		s.subs[topic] = ts
		s.smu.Unlock()
		ts.sub, ts.err = s.subscribe(topic, ts)
		if ts.err != nil {
			s.smu.Lock()
			delete(s.subs, topic)
			s.smu.Unlock()
		}
		close(ts.ready)
	} else {
		ts.refs++
		s.smu.Unlock()
	}
	select {
	case <-ts.ready:
		if ts.err != nil {
			return nil, ts.err
		}
		return ts, nil
	case <-ctx.Done():
		s.unfollow(topic, ts)
		return nil, ctx.Err()
	}
}

// unfollow undoes one follow of topic that gave ts. The last request to
// leave ends the subscription; one that comes later subscribes again. A
// subscription that ended on its own (the broker failed) is no longer in
// s.subs and needs nothing more.
func (s *Server) unfollow(topic string, ts *topicSub) {
	s.smu.Lock()
	ts.refs--
	if ts.refs > 0 || s.subs[topic] != ts {
		s.smu.Unlock()
		return
	}
	// Nobody follows the topic: its clients are all unregistered. Forget
	// it before the next follow can subscribe again.
	delete(s.subs, topic)
	ts.dropped = true
	s.core.ForgetTopic(topic)
	s.smu.Unlock()
	<-ts.ready
	if ts.sub != nil {
		ts.sub.Close()
	}
}

// subscribe opens the subscription ts feeding topic to the clients, from
// its newest event on, and watches it.
func (s *Server) subscribe(topic string, ts *topicSub) (Subscription, error) {
	s.core.ForgetTopic(topic) // what an earlier subscription left
	sub, err := s.broker.Subscribe(s.ctx, topic, Newest, s.deliver)
	if err != nil {
		s.dropTopic(topic, err)
		return nil, err
	}
	after := sub.After()
	s.core.SetLive(topic, fanout.Head{Seq: after.Seq, ID: after.ID})
	s.watchers.Add(1)
	go func() {
		defer s.watchers.Done()
		<-sub.Done()
		if s.ctx.Err() != nil {
			return
		}
		s.smu.Lock()
		dropped := ts.dropped
		if !dropped && s.subs[topic] == ts {
			delete(s.subs, topic)
		}
		s.smu.Unlock()
		if dropped {
			return // ended by unfollow
		}
		err := sub.Err()
		s.core.Logf(slog.LevelError, "sse: broker subscription ended", "topic", topic, "err", err)
		s.dropTopic(topic, err)
	}()
	return sub, nil
}

// dropTopic disconnects the clients of topic, whose subscription ended
// with err. When the broker lost its service, each stream first gets
// what was queued for it and a retry hint, so that the clients come back
// spread over time, and resume without a gap.
func (s *Server) dropTopic(topic string, err error) {
	s.core.DropTopic(topic, err, errors.Is(err, ErrBrokerUnavailable))
}
