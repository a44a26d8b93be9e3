package sse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// DefaultQueueSize is the number of events a [Hub] queues for one client
// when [HubOptions.QueueSize] is zero.
const DefaultQueueSize = 1024

// Defaults of the budget and shutdown settings of a [Hub] or [Server].
const (
	// DefaultMaxQueuedBytes bounds the bytes queued for all clients of a
	// hub or server together.
	DefaultMaxQueuedBytes = 256 << 20
	// DefaultShutdownRetry is the least reconnection time sent to
	// clients by Shutdown.
	DefaultShutdownRetry = time.Second
	// DefaultShutdownJitter is the spread of random time added to it.
	DefaultShutdownJitter = 5 * time.Second
)

// maxWrite is the most a writer gathers into one write.
const maxWrite = 64 << 10

// SlowPolicy says what a [Hub] or [Server] does with a client whose queue
// is full when a new event comes for it.
type SlowPolicy int

const (
	// SlowDisconnect ends the client's stream; the default. A client that
	// reconnects with Last-Event-ID to a [Server] gets what it missed
	// from the history, so nothing is lost.
	SlowDisconnect SlowPolicy = iota

	// SlowDropOldest discards the oldest queued event to make room. The
	// events a [Server] replays to a resuming client are never discarded.
	SlowDropOldest

	// SlowKeepLatest discards every queued event and keeps only the new
	// one, for streams where only the latest state matters. The events a
	// [Server] replays to a resuming client are never discarded.
	SlowKeepLatest
)

// String returns the policy's name.
func (p SlowPolicy) String() string {
	switch p {
	case SlowDisconnect:
		return "disconnect"
	case SlowDropOldest:
		return "drop-oldest"
	case SlowKeepLatest:
		return "keep-latest"
	}
	return fmt.Sprintf("SlowPolicy(%d)", int(p))
}

// HubOptions configures a [Hub]. The zero value gives the defaults.
type HubOptions struct {
	// QueueSize is how many events may wait for one client; what
	// happens to a client whose queue is full is set by SlowClients.
	// Zero means DefaultQueueSize (1024).
	QueueSize int

	// SlowClients is the policy for clients whose queue is full. The
	// zero value is SlowDisconnect.
	SlowClients SlowPolicy

	// MaxQueuedBytes bounds the bytes queued for all clients together
	// (an event queued for n clients counts n times). Beyond it, the
	// clients that made no progress for longest (by the age of their
	// oldest unsent byte) are disconnected first until the total is back
	// under the bound. Zero means DefaultMaxQueuedBytes
	// (256 MiB); a negative value removes the bound.
	MaxQueuedBytes int64

	// MaxWriters caps the goroutines that write to clients. Zero means 256.
	// A few per core are used while clients keep up; more are added only
	// while writes block on clients that do not read.
	MaxWriters int

	// Heartbeat is how long a client may go without a write before the
	// hub sends it a comment (": keep-alive") to keep proxies and load
	// balancers from closing the stream. It applies to every client,
	// registered by [Hub.Register] or [Hub.ServeHTTP], whose Conn does not
	// send heartbeats itself ([UpgradeOptions.Heartbeat]). Zero means
	// Upgrade.Heartbeat when that is set, else DefaultHeartbeat (15s);
	// negative disables heartbeats.
	Heartbeat time.Duration

	// ShutdownRetry is the least reconnection time [Hub.Shutdown] asks
	// clients to wait; zero means DefaultShutdownRetry (1s).
	ShutdownRetry time.Duration

	// ShutdownJitter is the spread of the random time added to
	// ShutdownRetry for each client, so that clients do not all come
	// back at once. Zero means DefaultShutdownJitter (5s); negative
	// means none.
	ShutdownJitter time.Duration

	// Logger, when set, receives a record for each client disconnected
	// by the hub (slow, over budget) and for shutdowns.
	Logger *slog.Logger

	// Upgrade holds the options of the streams that [Hub.ServeHTTP] opens.
	Upgrade *UpgradeOptions
}

// HubStats is a snapshot of the counters of a [Hub] or [Server].
type HubStats struct {
	Clients         int    // registered clients now
	Topics          int    // topics followed by a client now (Server only)
	Broadcasts      uint64 // events broadcast (Hub) or published through Server.Publish
	Delivered       uint64 // live events written to clients
	Replayed        uint64 // events from history queued for resuming clients
	Dropped         uint64 // events discarded by SlowDropOldest or SlowKeepLatest
	QueuedBytes     int64  // bytes queued or being written now
	SlowDisconnects uint64 // clients disconnected because their queue was full

	// BudgetDisconnects counts clients disconnected because the bytes
	// queued for all clients passed MaxQueuedBytes.
	BudgetDisconnects uint64
	// ShutdownDisconnects counts streams ended by Close or Shutdown.
	ShutdownDisconnects uint64
	// ClientDisconnects counts registered streams that ended on their
	// own: the client went away, a write failed, or the Conn was closed.
	ClientDisconnects uint64
	// StalledWrites counts writes that blocked long enough for their
	// client to be handed from the shared writers to a goroutine of its
	// own, so that the other clients do not wait for it.
	StalledWrites uint64
	// AbandonedWrites counts writes that could not be cut short (the
	// ResponseWriter offers no write deadline) and that Close or Shutdown
	// stopped waiting for.
	AbandonedWrites uint64
}

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
// (the client stopped reading) is noticed within milliseconds: the client
// is handed to a goroutine of its own, counted in
// [HubStats.StalledWrites], and the pool goes on with the others, however
// many clients stall. When a client's queue is full (see
// [HubOptions.QueueSize]) the [HubOptions.SlowClients] policy applies: by
// default that client is disconnected and counted in
// [HubStats.SlowDisconnects]. A stalled client is also dropped when its
// write times out (UpgradeOptions.WriteTimeout), and the queued bytes
// budget ([HubOptions.MaxQueuedBytes]) evicts the clients whose oldest
// unsent byte is oldest first, never one that keeps up.
//
// All methods are safe for concurrent use. Every client sees broadcasts in
// the same order.
type Hub[T any] struct {
	core *hubCore
}

// NewHub returns a hub with the default options.
func NewHub[T any]() *Hub[T] {
	return NewHubWithOptions[T](nil)
}

// NewHubWithOptions returns a hub configured by opts; nil gives the
// defaults.
func NewHubWithOptions[T any](opts *HubOptions) *Hub[T] {
	if opts == nil {
		opts = &HubOptions{}
	}
	var up UpgradeOptions
	if opts.Upgrade != nil {
		up = *opts.Upgrade
	}
	heartbeat := opts.Heartbeat
	if heartbeat == 0 {
		heartbeat = up.Heartbeat
	}
	up.Heartbeat = 0 // the hub sends the heartbeats of its streams
	core := newHubCore(engineConfig{
		queueSize:   opts.QueueSize,
		maxWriters:  opts.MaxWriters,
		policy:      opts.SlowClients,
		maxBytes:    opts.MaxQueuedBytes,
		logger:      opts.Logger,
		retry:       opts.ShutdownRetry,
		retryJitter: opts.ShutdownJitter,
		heartbeat:   durationOr(heartbeat, DefaultHeartbeat),
	})
	core.upgrade = &up
	return &Hub[T]{core: core}
}

// Run blocks until the hub is closed. The hub works without it; Run is
// kept so that code written for hubs with an event loop keeps working,
// and calling it more than once is harmless.
func (h *Hub[T]) Run() { h.core.run() }

// Register adds conn to the hub. Every broadcast that starts after
// Register returns reaches conn. A conn that ends is removed on its own;
// one whose client went away ends within 100 ms.
// Register returns [ErrHubClosed] after [Hub.Close] (or once
// [Hub.Shutdown] started), and [ErrConnectionClosed] when conn has
// already ended.
func (h *Hub[T]) Register(conn *Conn) error {
	_, err := h.core.register(conn, h.core.def, nil, nil, false)
	return err
}

// Unregister removes conn from the hub and waits for a write to it in
// progress, so the handler may return right after. It does not close conn.
func (h *Hub[T]) Unregister(conn *Conn) { h.core.unregister(conn) }

// Clients returns the number of registered clients.
func (h *Hub[T]) Clients() int { return h.core.clients() }

// Stats returns a snapshot of the hub's counters.
func (h *Hub[T]) Stats() HubStats { return h.core.stats() }

// Broadcast sends v to every registered client (see [Hub] for how it is
// encoded). It does not wait for the writes. It returns [ErrHubClosed]
// after [Hub.Close] or once [Hub.Shutdown] started, and [ErrInvalidEvent]
// or the JSON error when v cannot be encoded; nothing is sent then.
func (h *Hub[T]) Broadcast(v T) error {
	msg, err := encodeValue(v)
	if err != nil {
		return err
	}
	return h.core.broadcast(msg)
}

// BroadcastJSON sends v encoded with [encoding/json] as the event data,
// whatever T is.
func (h *Hub[T]) BroadcastJSON(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("sse: encoding event data: %w", err)
	}
	return h.core.broadcast(encodeData(string(data)))
}

// Close disconnects every client gracefully: Register and Broadcast fail
// with [ErrHubClosed] from the moment it is called, what was broadcast
// before it is still written, and each stream ends once its queue is. A
// client that stopped reading does not hold Close up: once no write has
// finished for 100 ms, the streams left are ended at once. Close then
// waits for the writers, at most the write timeout (a write that cannot
// be cut short, see [UpgradeOptions.WriteTimeout], is abandoned and
// counted in [HubStats.AbandonedWrites]), and for [Hub.Run] to return,
// and returns nil. It is idempotent. [Hub.Shutdown] also asks clients to wait before they
// reconnect, and waits as long as its context allows.
func (h *Hub[T]) Close() error { return h.core.close() }

// Shutdown closes the hub gracefully: Register, Broadcast and new
// requests to [Hub.ServeHTTP] are refused at once (the latter with 503),
// each client is sent a "retry:" field asking it to wait
// [HubOptions.ShutdownRetry] plus a random part of
// [HubOptions.ShutdownJitter] before reconnecting, and each stream ends
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
func (h *Hub[T]) Shutdown(ctx context.Context) error { return h.core.shutdown(ctx) }

// ServeHTTP makes the hub an [http.Handler]: it upgrades the request with
// the hub's [HubOptions.Upgrade] options, registers the stream before the
// opening comment is sent (so a client that has seen it receives every
// later broadcast) and holds it open until the client goes away or the
// hub closes. It answers 503 Service Unavailable when the hub is closed
// or shutting down.
func (h *Hub[T]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.core.isClosed() {
		http.Error(w, ErrHubClosed.Error(), http.StatusServiceUnavailable)
		return
	}
	conn, err := upgrade(r.Context(), w, r, h.core.upgrade, func(c *Conn) error {
		_, err := h.core.register(c, h.core.def, nil, nil, false)
		return err
	})
	if !upgradeOK(w, err) {
		return
	}
	defer conn.Close()
	defer h.core.unregister(conn)
	waitEnd(conn)
}

// upgradeOK answers the request when upgrade failed and reports whether
// it succeeded.
func upgradeOK(w http.ResponseWriter, err error) bool {
	switch {
	case err == nil:
		return true
	case errors.Is(err, ErrHubClosed):
		http.Error(w, ErrHubClosed.Error(), http.StatusServiceUnavailable)
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
