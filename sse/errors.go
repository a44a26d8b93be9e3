package sse

import "errors"

// Sentinel errors returned by this package. Match them with [errors.Is]:
// functions wrap them with context, so comparing with == is not reliable.
var (
	// ErrNoFlusher is returned by [Upgrade] when the http.ResponseWriter
	// (after following any Unwrap methods) cannot flush. Nothing has been
	// written to the response, so the caller may still reply with an error.
	ErrNoFlusher = errors.New("sse: response writer does not support flushing")

	// ErrConnectionClosed is returned when sending on a [Conn] that was
	// closed, whose client went away, or whose write failed or timed out.
	// The cause, when there is one, is wrapped alongside it.
	ErrConnectionClosed = errors.New("sse: connection closed")

	// ErrHubClosed is returned by [Hub.Register] and [Hub.Broadcast] after
	// the hub was closed.
	ErrHubClosed = errors.New("sse: hub closed")

	// ErrInvalidEvent is returned when an event cannot be written without
	// corrupting the stream: a CR, LF or NUL in its ID or Type (which would
	// let a value inject fields), or a negative Retry. Nothing is written
	// and the connection stays usable.
	ErrInvalidEvent = errors.New("sse: invalid event")
)

// Sentinel errors of the event stream reader and client.
var (
	// ErrEventTooLarge is returned by [Reader.Next] when an event outgrows
	// [Reader.MaxEventSize] (or [Client.MaxEventSize]). The stream cannot
	// be parsed further. [Broker.Publish] returns it for an event larger
	// than the broker holds; nothing is stored then.
	ErrEventTooLarge = errors.New("sse: event too large")

	// ErrIdleTimeout is reported to [Client.OnReconnect] when a connection
	// received nothing for [Client.IdleTimeout] and was dropped.
	ErrIdleTimeout = errors.New("sse: idle timeout")

	// ErrRedirect ends a subscription whose request was redirected more
	// than the HTTP client's CheckRedirect allows (by default, ten times
	// in a row, which stops a redirect loop). The policy's own error is
	// wrapped alongside it.
	ErrRedirect = errors.New("sse: redirect refused")

	// ErrInvalidLastEventID reports a last event ID that cannot be sent
	// in a Last-Event-ID header because it holds a control character
	// other than tab. Given as [Client.LastEventID] (or in a header), it
	// ends the subscription before any request; set by the server, the
	// client reconnects without the header and reports it once to
	// [Client.OnReconnect], wrapped with the cause of the reconnection.
	ErrInvalidLastEventID = errors.New("sse: last event ID cannot be sent in a header")
)

// Sentinel errors of brokers and servers.
var (
	// ErrBrokerClosed is returned by a [Broker]'s methods after its Close,
	// and ends its subscriptions.
	ErrBrokerClosed = errors.New("sse: broker closed")

	// ErrServerClosed is returned by [Server.Publish] once [Server.Close]
	// or [Server.Shutdown] started, and is the body of the 503 answer to
	// requests from then on.
	ErrServerClosed = errors.New("sse: server closed")

	// ErrGap is returned by [Broker.Subscribe] when events after the
	// asked position are no longer retained.
	ErrGap = errors.New("sse: events missing from history")

	// ErrBrokerUnavailable is returned by a [Broker] that cannot reach
	// the service holding its events, and ends its subscriptions then.
	// Nothing was stored. A [Server] answers new streams with 503 and a
	// Retry-After header meanwhile; the broker reconnects by itself.
	ErrBrokerUnavailable = errors.New("sse: broker unavailable")
)
