// Package sse implements Server-Sent Events: the server side (a [Conn]
// per client and a [Hub] that broadcasts to many), and the client side (a
// spec-exact parser, [Read], and a reconnecting [Client]).
//
// The package imports only the standard library.
//
// # Which one do I need?
//
// Use [Upgrade] for a stream of its own per request (per-user data, a
// loop of the handler's own); a [Hub] to send the same live events to
// every connected client; a [Server] for topics, event IDs and clients
// that resume after a reconnect without losing events. A Hub and a
// Server share one delivery engine, configured by [Options]; a Hub keeps
// no history, a Server keeps each topic's recent history in its
// [Broker]. When in doubt, start with a Server.
//
// # Streams
//
// [Upgrade] turns an HTTP response into an event stream. It sets the
// headers (Content-Type: text/event-stream, Cache-Control: no-cache,
// X-Accel-Buffering: no, and Connection: close on HTTP/1.x, so that
// the connection closes with the stream), answers
// 200 and flushes the opening comment ": connected". The returned [Conn]
// sends events:
//
//	conn, err := sse.Upgrade(w, r)
//	if err != nil {
//		http.Error(w, err.Error(), http.StatusInternalServerError)
//		return
//	}
//	defer conn.Close()
//	conn.Send(sse.NewEvent("Order #123 shipped").WithType("notification").WithID("notif-456"))
//	<-conn.Done()
//
// Writes have a deadline (10 seconds by default), so a client that stops
// reading ends its stream instead of blocking the sender, as long as the
// ResponseWriter supports deadlines through [http.ResponseController]
// (net/http's do; a middleware's wrapper must offer Unwrap). Without
// them a write to such a client blocks until the client goes away; a
// hub then logs it once and, when closing, gives up on such writes after
// the write timeout. A Conn
// writes nothing on its own unless asked to: [UpgradeWithOptions] sets
// the deadline and a heartbeat, a comment sent after a period of silence
// so proxies keep the connection open. [Conn.SendComment] sends one by
// hand.
//
// # Events on the wire
//
// An [Event] is written as its fields event, id, retry and data, in that
// order, one "name: value" line each, then a blank line. Type and ID are
// written only when set and Retry only when positive; Data is split into
// one "data:" line per line, whatever the line ends (CR, LF or CRLF).
//
// A Type or ID holding a CR, LF or NUL would let its value inject fields
// into the stream. [Conn.Send] refuses such an event with an error
// matching [ErrInvalidEvent], writes nothing, and the stream stays usable;
// so does a negative Retry. (Libraries that copy such values through
// produce a stream an attacker controls.)
//
// # Broadcasting
//
// A [Hub] sends every broadcast value to every registered Conn. The value
// is encoded once, whatever the number of clients; each client has a
// bounded queue, drained by a small pool of writers that gather all that
// is queued into one write. A slow client therefore does not delay the
// others: a write that blocks hands its client to a goroutine of its own,
// a client whose queue is full is disconnected and counted in [Stats],
// and [Hub.Broadcast] never waits for a client. The limit: when thousands
// of clients stop reading at once, the budget of queued bytes
// ([Options.MaxQueuedBytes]) can fill before the writers have tried every
// client, and healthy clients not yet reached may be disconnected with
// the stalled ones. On HTTP/1.1 a hub takes the connections of its
// streams over from net/http ([Options.KeepResponseWriter]), which bounds
// what the kernel holds for each client and notices a client that leaves
// at once. When the server ends a stream, its connection closes (on
// HTTP/2, its stream is reset). (A hub that
// writes to each client in turn, as a naive loop does, stalls every
// client behind the slowest.) A hub also sends each of its clients a
// heartbeat comment after 15 seconds of silence ([Options.Heartbeat]),
// and [Hub.Close] writes what was broadcast before it, then ends every
// stream.
//
// # Topics and replay
//
// A [Server] streams topics kept by a [Broker] ([MemoryBroker] by
// default, with history bounded by count, bytes and age). A client that
// reconnects with Last-Event-ID gets every retained event it missed and
// then the live ones, with no gap and no duplicate in between; when its
// ID is unknown or older than the history it first gets an event of type
// [GapEventType]. Slow clients are handled by a [SlowPolicy] within a
// budget of queued bytes, and [Server.Shutdown] drains the streams and
// spreads the clients' reconnections. Other brokers implement the same
// interface, so that several servers share topics and a client resumes
// on any of them (modules github.com/coregx/stream/redisbroker and
// github.com/coregx/stream/natsbroker); package ssetest checks them
// against its contract.
//
// # Reading streams
//
// [Read] and [Reader] parse an event stream exactly as the WHATWG HTML
// standard prescribes, and [Client] subscribes to a stream over HTTP,
// reconnecting with backoff, honouring the server's retry field and
// resending Last-Event-ID, as a browser's EventSource does. An event is
// capped at 16 MiB by default ([Client.MaxEventSize]); comments reach
// [Client.OnComment]; [Client.Restart] reconnects running streams at once,
// to rotate a token.
//
// # Errors
//
// Errors match the sentinels [ErrNoFlusher], [ErrConnectionClosed],
// [ErrHubClosed], [ErrServerClosed], [ErrInvalidEvent], [ErrEventTooLarge],
// [ErrIdleTimeout], [ErrRedirect], [ErrInvalidLastEventID],
// [ErrBrokerClosed], [ErrBrokerUnavailable] and [ErrGap] through
// [errors.Is]; they are wrapped with context.
package sse
