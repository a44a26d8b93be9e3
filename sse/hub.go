package sse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
)

// Hub broadcasts values of type T to every registered [Conn].
//
// Each value is encoded once, whatever the number of clients: a string
// becomes the event data; an [Event] or *Event is sent with its own
// fields; a [fmt.Stringer] is sent as the text of its String method; any
// other value is encoded with [encoding/json]. An encoding error is
// returned by [Hub.Broadcast] and nothing is sent.
//
// A Hub keeps no history and sends events as they are, without IDs of
// its own; for replay from Last-Event-ID and topics, use a [Server].
//
// # Slow clients
//
// A slow client does not delay the others. Broadcast only appends the
// encoded event to each client's bounded queue and never waits for a
// client; a small pool of writers drains the queues, gathering everything
// a client has queued into one write and one flush. A write that blocks
// (the client stopped reading) is noticed at once on a connection the
// hub took over (on Linux), within milliseconds otherwise, and counted in
// [Stats.StalledWrites]: on such a connection the write is suspended
// until the socket takes data again, without a goroutine; otherwise the
// client is handed to a goroutine of its own. The pool goes on with the
// others. When a client's queue is full (see
// [Options.QueueSize]) the [Options.SlowClients] policy applies: by
// default that client is disconnected and counted in
// [Stats.SlowDisconnects]. The hub bounds what the kernel may hold for
// each client on the connections it takes over ([Options.SendBuffer]), so
// that thousands of stalled clients cannot exhaust the machine's TCP
// memory. A stalled client is also dropped when its
// write times out ([Options.WriteTimeout]). The memory the queues hold
// is bounded ([Options.MaxQueuedBytes]), each event counted once however
// many clients it is queued for; over it, the clients whose write is
// blocked go first, then those whose oldest unsent byte is oldest, never
// one that drains while another makes no progress. A client whose write
// is blocked costs a broadcast nothing: it is parked, and the events it
// misses meanwhile are kept once for all such clients, until its write
// returns or its queue is full. Thousands of clients that stop reading
// at once still delay the others while their socket buffers fill and
// when they are dropped (bench/RESULTS.md).
//
// All methods are safe for concurrent use. Every client sees broadcasts in
// the same order. The zero value is a hub with the default options, ready
// to use.
type Hub[T any] struct {
	once sync.Once
	opts *Options // nil: the defaults
	core *hubCore
}

// engine returns the hub's engine, making it on first use.
func (h *Hub[T]) engine() *hubCore {
	h.once.Do(func() {
		var opts Options
		if h.opts != nil {
			opts = *h.opts
		}
		h.core = newHubCore(opts, ErrHubClosed)
	})
	return h.core
}

// NewHub returns a hub with the default options.
func NewHub[T any]() *Hub[T] {
	return NewHubWithOptions[T](nil)
}

// NewHubWithOptions returns a hub configured by opts; nil gives the
// defaults. opts is copied: later changes do not affect the hub.
func NewHubWithOptions[T any](opts *Options) *Hub[T] {
	h := &Hub[T]{}
	if opts != nil {
		o := *opts
		h.opts = &o
	}
	h.engine()
	return h
}

// Run blocks until the hub is closed. The hub works without it; Run is
// kept so that code written for hubs with an event loop keeps working,
// and calling it more than once is harmless.
func (h *Hub[T]) Run() { h.engine().Run() }

// Register adds conn to the hub. Every broadcast that starts after
// Register returns reaches conn. A conn that ends is removed on its own.
// On HTTP/1.1 the hub takes conn's connection over (see
// [Options.KeepResponseWriter]): the handler must not write its
// ResponseWriter afterwards, and should wait on [Conn.Done], which is
// closed as soon as the client goes away; a conn left on its
// ResponseWriter whose client went away ends within 100 ms.
// Register returns [ErrHubClosed] after [Hub.Close] (or once
// [Hub.Shutdown] started), and [ErrConnectionClosed] when conn has
// already ended or is nil (an Upgrade that failed).
func (h *Hub[T]) Register(conn *Conn) error {
	if conn == nil {
		return errNilConn
	}
	core := h.engine()
	if err := core.RegisterAll(sinkOf(conn)); err != nil {
		return err
	}
	core.adopt(conn) // the hub writes the stream from now on (see owned.go)
	return nil
}

// Unregister removes conn from the hub and waits for a write to it in
// progress, so the handler may return right after. It does not close conn.
func (h *Hub[T]) Unregister(conn *Conn) {
	if conn != nil {
		h.engine().Unregister(sinkOf(conn))
	}
}

// Clients returns the number of registered clients.
func (h *Hub[T]) Clients() int { return h.engine().Clients() }

// Stats returns a snapshot of the hub's counters.
func (h *Hub[T]) Stats() Stats { return Stats(h.engine().Stats()) }

// Broadcast sends v to every registered client (see [Hub] for how it is
// encoded). It does not wait for the writes. It returns [ErrHubClosed]
// after [Hub.Close] or once [Hub.Shutdown] started, and [ErrInvalidEvent]
// or the JSON error when v cannot be encoded; nothing is sent then.
func (h *Hub[T]) Broadcast(v T) error {
	msg, err := encodeValue(v)
	if err != nil {
		return err
	}
	return h.engine().Broadcast(msg)
}

// BroadcastJSON sends v encoded with [encoding/json] as the event data,
// whatever T is.
func (h *Hub[T]) BroadcastJSON(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("sse: encoding event data: %w", err)
	}
	return h.engine().Broadcast(encodeData(string(data)))
}

// Close disconnects every client gracefully: Register and Broadcast fail
// with [ErrHubClosed] from the moment it is called, what was broadcast
// before it is still written, and each stream ends once its queue is. A
// client that stopped reading does not hold Close up: once no write has
// finished for 100 ms, the streams left are ended at once. Close then
// waits for the writers, at most the write timeout (a write that cannot
// be cut short, see [UpgradeOptions.WriteTimeout], is abandoned and
// counted in [Stats.AbandonedWrites]), and for [Hub.Run] to return,
// and returns nil. It is idempotent. [Hub.Shutdown] also asks clients to wait before they
// reconnect, and waits as long as its context allows.
func (h *Hub[T]) Close() error { return h.engine().Close() }

// Shutdown closes the hub gracefully: Register, Broadcast and new
// requests to [Hub.ServeHTTP] are refused at once (the latter with 503),
// each client is sent a "retry:" field asking it to wait
// [Options.ShutdownRetry] plus a random part of
// [Options.ShutdownJitter] before reconnecting, and each stream ends
// once its queue is written. Shutdown returns nil when every stream has
// ended and the writers are done. If ctx ends first, it ends the streams
// left at once and returns ctx's error.
//
// To shut down with an [http.Server], register it there, so that the
// streams (which http.Server.Shutdown does not end) drain while the
// server waits:
//
//	srv.RegisterOnShutdown(func() { hub.Shutdown(ctx) })
//	srv.Shutdown(ctx)
func (h *Hub[T]) Shutdown(ctx context.Context) error { return h.engine().Shutdown(ctx) }

// ServeHTTP makes the hub an [http.Handler]: it upgrades the request with
// the hub's options (WriteTimeout, Retry, Header), registers the stream before the
// opening comment is sent (so a client that has seen it receives every
// later broadcast) and holds it open until the client goes away or the
// hub closes ([Options.Detach] has it return once the stream is open). It
// answers 503 Service Unavailable when the hub is closed or shutting
// down.
func (h *Hub[T]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	core := h.engine()
	sv := &served{core: core, r: r}
	defer sv.done()
	if core.IsClosed() {
		sv.refused = ErrHubClosed
		http.Error(w, ErrHubClosed.Error(), http.StatusServiceUnavailable)
		return
	}
	sv.conn, sv.refused = core.open(w, r, func(c *Conn) error { return core.RegisterAll(sinkOf(c)) })
	if !upgradeOK(w, sv.refused, ErrHubClosed) {
		return
	}
	sv.hold()
}

// upgradeOK answers the request when upgrade failed and reports whether
// it succeeded; closed is the error of a closed hub or server.
func upgradeOK(w http.ResponseWriter, err, closed error) bool {
	switch {
	case err == nil:
		return true
	case errors.Is(err, closed):
		http.Error(w, closed.Error(), http.StatusServiceUnavailable)
	case errors.Is(err, ErrNoFlusher):
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
	return false
}

// encodeData encodes an event carrying data only, in one allocation.
func encodeData(data string) []byte {
	ev := Event{Data: data}
	return ev.appendWire(make([]byte, 0, ev.wireSize()))
}

// encodeValue encodes one broadcast value as a complete event.
func encodeValue(v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		return encodeData(x), nil
	case *Event:
		if x == nil {
			return nil, fmt.Errorf("%w: nil *Event", ErrInvalidEvent)
		}
		return x.AppendText(nil)
	case Event:
		return x.AppendText(nil)
	case fmt.Stringer:
		return encodeData(x.String()), nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("sse: encoding event data: %w", err)
	}
	return encodeData(string(data)), nil
}
