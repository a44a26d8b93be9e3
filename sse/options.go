package sse

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Defaults of the settings whose zero value stands for them.
const (
	defaultQueueSize      = 1024
	defaultMaxQueuedBytes = 256 << 20
	defaultHeartbeat      = 15 * time.Second
	defaultWriteTimeout   = 10 * time.Second
	defaultShutdownRetry  = time.Second
	defaultShutdownJitter = 5 * time.Second
)

// Options configures a [Hub] (see [NewHubWithOptions]) or a [Server]
// (which embeds it): how streams are written, how slow clients are
// treated and how they are shut down. The zero value gives the defaults.
type Options struct {
	// QueueSize is how many events may wait for one client; what
	// happens to a client whose queue is full is set by SlowClients.
	// Zero means 1024. A Server's replay to a resuming client is queued
	// whole, whatever its length.
	QueueSize int

	// SlowClients is the policy for clients whose queue is full. The
	// zero value is SlowDisconnect.
	SlowClients SlowPolicy

	// MaxQueuedBytes bounds the memory the client queues hold together:
	// the bytes of every event queued or being written, counted once
	// however many clients it is queued for, plus the queue entries
	// themselves (a slice header per event per queue). Beyond it, clients are disconnected until what the others
	// hold fits: first those whose write is blocked, the longest blocked
	// first, then those with the oldest unsent byte. Zero means 256 MiB;
	// a negative value removes the bound.
	MaxQueuedBytes int64

	// Heartbeat is how long a stream may go without a write before it is
	// sent a comment (": keep-alive") to keep proxies and load balancers
	// from closing it. It applies to every stream the Hub or Server
	// writes, except a Conn that sends its own ([UpgradeOptions.Heartbeat]).
	// Zero means 15s; negative disables heartbeats.
	Heartbeat time.Duration

	// WriteTimeout bounds each write to a stream that [Hub.ServeHTTP] or
	// the Server opened (see [UpgradeOptions.WriteTimeout]; a Conn given
	// to [Hub.Register] keeps its own), and how long Close waits for a
	// write that cannot be cut short. Zero means 10s; negative removes
	// the bound on writes.
	WriteTimeout time.Duration

	// Retry, when positive, is sent to each stream the Hub or Server
	// opens right after the opening comment, as the client's
	// reconnection time (a "retry:" field).
	Retry time.Duration

	// Header holds extra headers for the responses of the streams the
	// Hub or Server opens (CORS, say); the SSE headers take precedence.
	Header http.Header

	// ShutdownRetry is the least reconnection time Shutdown asks clients
	// to wait. Zero means 1s.
	ShutdownRetry time.Duration

	// ShutdownJitter is the spread of the random time added to
	// ShutdownRetry for each client, so that clients do not all come
	// back at once. Zero means 5s; negative means none.
	ShutdownJitter time.Duration

	// KeepResponseWriter, when set, leaves every stream on its
	// ResponseWriter. By default, once the Hub or Server writes a stream
	// served over HTTP/1.1 (it opened it, or it was given it by
	// [Hub.Register]), it takes the stream's connection over from
	// net/http ([http.ResponseController.Hijack]) and writes the rest of
	// the chunked response itself. Owning the socket bounds what the
	// kernel holds for a client that stopped reading (see SendBuffer),
	// notices a client that goes away at once, and lets every write be
	// cut short. After the takeover the handler must not use the
	// ResponseWriter, the request's context ends only when the handler
	// returns (use [Conn.Done] to learn that the client left),
	// [http.Server.Close] and [http.Server.Shutdown] no longer end the
	// stream (close the Hub or Server), and middleware wrapping the
	// ResponseWriter sees none of the events. HTTP/2 streams, responses
	// to HEAD and HTTP/1.0 requests, and writers that hide Hijack or
	// write deadlines are never taken over.
	KeepResponseWriter bool

	// SendBuffer is the kernel send buffer, in bytes, asked for each
	// connection the Hub or Server took over (SO_SNDBUF; Linux doubles
	// it). It bounds the memory a client that stopped reading holds in
	// the kernel: left to itself, Linux lets it grow to megabytes per
	// connection, and a few thousand such clients then exhaust the
	// machine's TCP memory, stalling every connection. It also bounds
	// how fast a distant client can be sent to (about SendBuffer per
	// round trip). Zero means 16 KiB; negative leaves the kernel's
	// default.
	SendBuffer int

	// Detach, when set, has [Hub.ServeHTTP] and [Server.ServeHTTP] return
	// as soon as a stream whose connection they took over (see
	// KeepResponseWriter) is open, rather than when it ends: the Hub or
	// Server then keeps the stream with one small goroutine, and
	// net/http frees the handler's goroutine and the buffers it kept for
	// the connection, about half of what an idle stream costs. Middleware
	// around the handler sees the request end at once. The stream keeps
	// its request's context values and deadline (the deadline still ends
	// it), but no longer the context's cancellation, which comes when
	// the handler returns; OnStreamEnd says when it ends. A stream that
	// is not taken over (HTTP/2, say) is served as without Detach.
	Detach bool

	// OnStreamEnd, when set, is called once for each request that
	// [Hub.ServeHTTP] or [Server.ServeHTTP] handles: when its stream has
	// ended, with why (an error matching [ErrConnectionClosed]), or, when
	// it answered with an error instead of opening a stream, with that
	// error before ServeHTTP returns. With Detach, it is where to release
	// what was held for the stream.
	OnStreamEnd func(r *http.Request, err error)

	// Logger, when set, receives a record for each client disconnected
	// by the hub or server (slow, over budget), for broker subscription
	// failures, for writes that cannot be given a deadline, and for
	// shutdowns.
	Logger *slog.Logger
}

// SlowPolicy says what a [Hub] or [Server] does with a client whose queue
// is full when a new event comes for it.
type SlowPolicy int

const (
	// SlowDisconnect ends the client's stream; the default. It applies
	// once the client's own write has been blocked for half a second: a
	// client whose queue is full only because the writers are busy with
	// others, or that reads slowly but reads, is not slow, and its queue
	// grows on, within MaxQueuedBytes. A client that
	// reconnects with Last-Event-ID to a [Server] gets what it missed
	// from the history, so nothing is lost.
	SlowDisconnect SlowPolicy = iota

	// SlowDropOldest discards the oldest queued event to make room. A
	// client whose write is blocked (it stopped reading) has an eighth of
	// its queue's worth discarded at a time, so that thousands of them
	// cost the others little. The events a [Server] replays to a
	// resuming client are never discarded.
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

// Stats is a snapshot of the counters of a [Hub] or [Server].
type Stats struct {
	Clients         int    // registered clients now
	Topics          int    // topics followed by a client now (Server only)
	Broadcasts      uint64 // events broadcast (Hub) or published through Server.Publish
	Delivered       uint64 // live events written to clients
	Replayed        uint64 // events from history queued for resuming clients
	Dropped         uint64 // events discarded by SlowDropOldest or SlowKeepLatest
	QueuedBytes     int64  // memory the queues hold now, as MaxQueuedBytes counts it
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
	// own, or that found the socket full and were suspended until it
	// takes data again (connections the hub took over, on Linux), so
	// that the other clients do not wait for it.
	StalledWrites uint64
	// AbandonedWrites counts writes that could not be cut short (the
	// ResponseWriter offers no write deadline) and that Close or Shutdown
	// stopped waiting for.
	AbandonedWrites uint64
}
