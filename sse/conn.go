package sse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coregx/stream/sse/internal/fanout"
)

// connectedComment opens every stream. Flushing it at once tells the
// client (and any proxy in between) that the stream is live.
const connectedComment = ": connected\n\n"

// heartbeatComment is written after a period without any other write.
var heartbeatComment = []byte(": keep-alive\n\n")

// UpgradeOptions configures a [Conn]. The zero value gives the defaults.
type UpgradeOptions struct {
	// WriteTimeout bounds each write to the client, so a client that
	// stops reading makes the write fail and the connection close instead
	// of blocking forever. It needs a ResponseWriter with write deadlines
	// (see [http.ResponseController]); without them writes are not
	// bounded. Zero means 10s; a negative value disables the deadline.
	WriteTimeout time.Duration

	// Heartbeat, when positive, is how long the stream may stay silent
	// before the Conn sends a comment (": keep-alive") to keep proxies
	// and load balancers from closing it. Zero or negative: the Conn
	// sends none itself, so that a handler may write keep-alives of its
	// own (see [Conn.SendComment]); a [Hub] or [Server] sends heartbeats
	// to the streams registered with it ([Options.Heartbeat], 15s by
	// default).
	Heartbeat time.Duration

	// Retry, when positive, is sent right after the opening comment as the
	// client's reconnection time (a "retry:" field, in milliseconds).
	Retry time.Duration

	// Header holds extra response headers, set before the SSE headers
	// (which take precedence). Headers already set on the ResponseWriter
	// are kept as well.
	Header http.Header
}

// Conn is one server-sent event stream to one client. Its methods are
// safe for concurrent use; events written concurrently never interleave.
//
// A Conn ends when its client goes away, when the context it was created
// with ends, when a write fails or times out, or when [Conn.Close] is
// called, whichever comes first; [Conn.Done] is closed then. Once a
// [Hub] or [Server] took the connection over (see
// [Options.KeepResponseWriter]), a client that goes away is noticed at
// once, from the connection itself. Otherwise it is noticed from the
// request's context: at once by the Conn's own methods (Err, Done and the
// Send methods check it first), and within 100 ms by a handler already
// waiting on Done: the request contexts of all the streams waited on are
// checked together, which saves each stream a callback on its request's
// context. The handler that created it must not return before
// [Conn.Close] (or [Hub.Unregister], for a registered Conn) has returned:
// both wait for a write in progress, so that nothing touches the
// ResponseWriter afterwards. Once the handler returns, the connection
// closes (on HTTP/2, the stream ends or is reset), unless it was reset
// already; see [Upgrade].
type Conn struct {
	w         http.ResponseWriter
	r         *http.Request
	rctx      context.Context // r's context, watched (see watchLocked) and checked before each write
	timeout   time.Duration   // write timeout; 0 means none
	last      atomic.Int64
	writing   atomic.Bool // a write is in progress
	closed    atomic.Bool
	asked     atomic.Bool // Done was called
	detached  atomic.Bool // its handler returned before it ended (see detach): rctx no longer tells
	deadlines bool        // the writer supports write deadlines
	beats     bool        // sends heartbeats itself (UpgradeOptions.Heartbeat)

	mu      sync.Mutex // guards the fields below
	cause   error
	watcher fanout.Watcher // told when the Conn ends (a hub); see watch
	ext     *connExt       // what few streams need; nil until one does

	// The write lock, which serialises writes. Waiting for it is a
	// channel receive, so that it is durably blocking in a
	// testing/synctest bubble; the channel is made only on contention.
	held     bool          // the write lock is taken
	ending   bool          // ended: the write lock's holder closes done
	reset    bool          // dropped, or ended during or after a failed write: reset the connection (see finish)
	ended    bool          // done is closed
	watching bool          // solo watches r's context (see watchLocked)
	wake     chan struct{} // closed when the write lock is released; nil when nobody waits

	own  atomic.Pointer[ownedConn] // the connection, once taken over from net/http (see owned.go)
	done chan struct{}
}

// connExt holds the state of a Conn that most streams never need, so
// that a Conn stays small enough to keep its request's context at hand.
type connExt struct {
	more []fanout.Watcher // watchers after the first
	stop func() bool      // stops watching the Upgrade context (and a detached stream's deadline)
	beat *soloBeat        // the Conn's own heartbeat (see solo.go); nil once it ended
}

// extLocked returns c.ext, making it first; c.mu must be held.
func (c *Conn) extLocked() *connExt {
	if c.ext == nil {
		c.ext = new(connExt)
	}
	return c.ext
}

// Upgrade starts a server-sent event stream on w: it checks that w can
// flush, writes the SSE headers and status 200, and flushes the opening
// comment ": connected". The stream lives as long as r's context.
//
// The headers are Content-Type: text/event-stream, Cache-Control:
// no-cache, X-Accel-Buffering: no and, on HTTP/1.x, Connection: close: a
// stream is never followed by another request on its connection, so
// net/http closes it when the handler returns instead of keeping it idle.
// Once the stream ended, what net/http writes last gets a short write
// deadline, so that a client that stopped reading cannot hold the
// connection open.
//
// A stream that ends because its client stopped reading (a write to it
// failed or was cut short by the end, or a [Hub] or [Server] dropped it as
// too slow, over the queued bytes budget, or not drained by Close or
// Shutdown) is reset instead, on HTTP/1.x: its connection is taken from
// net/http ([http.ResponseController.Hijack]) and closed with a TCP reset,
// which frees it at once, with the data the client did not read, where a
// normal close would wait in the kernel behind that data. The
// ResponseWriter must not be used after that. The reset needs net/http's
// server behind a writer that offers Hijack and write deadlines (itself
// or through Unwrap); otherwise (a wrapper that hides them, another
// server) the connection closes normally, and may stay in the kernel
// until the client reads or the kernel gives up on it. On HTTP/2 only the
// stream is reset.
// Streams ended otherwise ([Conn.Close] between writes, or a Shutdown
// that drained them) close normally, after what was sent.
//
// A [Hub] or [Server] that writes the stream takes its HTTP/1.1
// connection over, unless told not to ([Options.KeepResponseWriter]):
// the ResponseWriter must not be used after [Hub.Register].
//
// When w cannot flush, Upgrade returns [ErrNoFlusher] and writes nothing,
// so the caller can still reply with an ordinary HTTP error.
func Upgrade(w http.ResponseWriter, r *http.Request) (*Conn, error) {
	return UpgradeWithOptions(r.Context(), w, r, nil)
}

// UpgradeWithContext is like [Upgrade], but the stream also ends when ctx
// ends. The request's context is still watched, so a client that goes
// away ends the stream whatever ctx does.
func UpgradeWithContext(ctx context.Context, w http.ResponseWriter, r *http.Request) (*Conn, error) {
	return UpgradeWithOptions(ctx, w, r, nil)
}

// UpgradeWithOptions is like [UpgradeWithContext] with options; a nil
// opts gives the defaults.
func UpgradeWithOptions(ctx context.Context, w http.ResponseWriter, r *http.Request, opts *UpgradeOptions) (*Conn, error) {
	return upgrade(ctx, w, r, opts, nil, nil)
}

// upgrade implements UpgradeWithOptions. It calls ready, when not nil,
// before the opening comment is sent, so a hub can register the stream
// before the client knows it is live; an error from ready ends the stream.
// With own, the connection is then taken over as it says (see owned.go).
func upgrade(ctx context.Context, w http.ResponseWriter, r *http.Request, opts *UpgradeOptions, ready func(*Conn) error, own *ownPolicy) (*Conn, error) {
	if opts == nil {
		opts = &defaultUpgradeOptions
	}
	if !canFlush(w) {
		return nil, ErrNoFlusher
	}
	h := w.Header()
	for k, v := range opts.Header {
		h[k] = slices.Clone(v) // a handler may edit its response's values
	}
	h["Content-Type"] = []string{"text/event-stream"}
	h["Cache-Control"] = []string{"no-cache"}
	h["X-Accel-Buffering"] = []string{"no"}
	h.Del("Content-Length")
	if r.ProtoMajor == 1 {
		// A stream ends only when one side ends it, and a client
		// reconnects on a new connection: net/http closes this one
		// when the handler returns, rather than keeping it for a next
		// request that never comes.
		h["Connection"] = []string{"close"}
	} else {
		h.Del("Connection") // forbidden in HTTP/2 and later
	}

	c := &Conn{
		w:       w,
		r:       r,
		rctx:    r.Context(),
		timeout: durationOr(opts.WriteTimeout, defaultWriteTimeout),
		beats:   opts.Heartbeat > 0,
		done:    make(chan struct{}),
		// Hold the write lock until the opening is written, so that a
		// hub's writer cannot send an event to a just registered
		// stream before it.
		held: true,
	}
	// Probe deadline support once, so writers without it cost nothing.
	c.deadlines = c.timeout > 0 && c.rc().SetWriteDeadline(time.Time{}) == nil

	// Watch the contexts without a goroutine of our own: the Upgrade
	// context, when it is another, with a callback now; the request's
	// once someone waits on Done, by polling it (see watchLocked).
	if ctx != c.rctx {
		c.mu.Lock()
		c.extLocked().stop = context.AfterFunc(ctx, func() {
			c.shutdown(fmt.Errorf("%w: %w", ErrConnectionClosed, context.Cause(ctx)))
		})
		c.mu.Unlock()
	}
	// A panic or runtime.Goexit in w (or in ready) goes on as it would
	// without us; the stream ends first, so that nothing waits for its
	// write lock.
	opened := false
	defer func() {
		if !opened {
			c.unlockWrite()
			c.shutdown(errUpgradeAborted)
		}
	}()
	if ready != nil {
		if err := ready(c); err != nil {
			opened = true
			c.unlockWrite()
			c.shutdown(fmt.Errorf("%w: %w", ErrConnectionClosed, err))
			return nil, err
		}
	}

	opening := []byte(connectedComment)
	if opts.Retry > 0 {
		opening = fmt.Appendf(opening, "retry: %d\n\n", opts.Retry.Milliseconds())
	}
	w.WriteHeader(http.StatusOK)
	err := c.writeLocked(opening)
	if err == nil && own != nil {
		c.takeOverLocked(*own, true)
	}
	opened = true
	c.unlockWrite()
	if err != nil {
		return nil, err
	}
	if c.beats {
		c.mu.Lock()
		if c.cause == nil {
			c.extLocked().beat = solo.startBeat(c, opts.Heartbeat)
		}
		c.mu.Unlock()
	}
	return c, nil
}

// defaultUpgradeOptions stands for nil options; never written.
var defaultUpgradeOptions UpgradeOptions

// errUpgradeAborted ends a stream whose opening panicked or exited its
// goroutine.
var errUpgradeAborted = fmt.Errorf("%w: upgrade aborted", ErrConnectionClosed)

// canFlush reports whether w, or a writer it wraps through Unwrap, can
// flush, without writing anything (http.ResponseController can only tell
// by trying).
func canFlush(w http.ResponseWriter) bool {
	for {
		switch t := w.(type) {
		case http.Flusher, interface{ FlushError() error }:
			return true
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return false
		}
	}
}

// lastEventID reads the Last-Event-ID header, falling back to the
// lastEventId query parameter for clients that cannot set headers.
func lastEventID(r *http.Request) string {
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		return id
	}
	if r.URL.RawQuery == "" {
		return "" // parsing would allocate for nothing
	}
	return r.URL.Query().Get("lastEventId")
}

func durationOr(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// LastEventID returns the ID of the last event the client saw before it
// reconnected: the Last-Event-ID request header, or else the lastEventId
// query parameter; "" on a first connection.
func (c *Conn) LastEventID() string {
	if c == nil {
		return ""
	}
	return lastEventID(c.r)
}

// A nil *Conn, what Upgrade returns with an error, behaves as a stream
// that has ended, so that code ignoring that error fails cleanly instead
// of panicking: Done is closed, Err and the Send methods return
// errNilConn, and Close returns nil.
var (
	errNilConn = fmt.Errorf("%w: nil Conn (the Upgrade failed)", ErrConnectionClosed)
	closedDone = func() chan struct{} {
		ch := make(chan struct{})
		close(ch)
		return ch
	}()
)

// Done returns a channel that is closed when the stream ends. A client
// that went away is noticed within 100 ms at most (see [Conn]).
func (c *Conn) Done() <-chan struct{} {
	if c == nil {
		return closedDone
	}
	if c.clientGone() {
		return c.done
	}
	if !c.asked.Load() {
		c.mu.Lock()
		c.asked.Store(true)
		c.watchLocked()
		c.mu.Unlock()
	}
	return c.done
}

// Err returns nil while the stream is open, and afterwards an error
// matching [ErrConnectionClosed] that says why it ended.
func (c *Conn) Err() error {
	if c == nil {
		return errNilConn
	}
	c.clientGone()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cause
}

// errClientGone ends a stream whose request's context ended.
var errClientGone = fmt.Errorf("%w: client went away", ErrConnectionClosed)

// waitEnd waits until c ends, or until its request's context does, which
// ends c at once: a hub's own handlers wait this way rather than for its
// poll. When c's connection was taken over with its reading left to the
// handler, it reads it until it closes: the client went away, or the
// stream ended (see owned.go).
func waitEnd(c *Conn) {
	if o := c.own.Load(); o != nil && o.inline {
		if o.token == 0 {
			c.readOwned(o)
		}
		<-c.Done()
		return
	}
	select {
	case <-c.Done():
	case <-c.rctx.Done():
		c.shutdown(errClientGone)
	}
}

// clientGone ends the stream if its request's context has ended, and
// reports whether it did.
func (c *Conn) clientGone() bool {
	if !c.requestEnded() {
		return false
	}
	c.shutdown(errClientGone)
	return true
}

// requestEnded reports whether the request's context ended: the client
// went away (or the handler returned).
func (c *Conn) requestEnded() bool { return !c.detached.Load() && c.rctx.Err() != nil }

// watchLocked has the request's context watched, so that c ends at most
// fanout.PollEvery after its client leaves (see internal/fanout/gone.go),
// once someone waits on Done or the connection was taken over (nothing else would end the
// stream when its handler returns), unless a hub watches it: the hubs a
// Conn is registered with check the contexts of their clients. c.mu must
// be held.
func (c *Conn) watchLocked() {
	if c.cause != nil || c.watching || c.watcher != nil || c.detached.Load() || (!c.asked.Load() && c.own.Load() == nil) {
		return
	}
	c.watching = true
	solo.watch(c)
}

// Send writes ev and flushes it. An event that fails [Event.Validate] is
// refused with [ErrInvalidEvent] and nothing is written; the stream stays
// usable. After the stream ended, Send returns [ErrConnectionClosed].
func (c *Conn) Send(ev *Event) error {
	if err := ev.Validate(); err != nil {
		return err
	}
	b := getBuf()
	b.b = ev.appendWire(b.b[:0])
	err := c.write(b.b)
	putBuf(b)
	return err
}

// SendData sends an event carrying data only.
func (c *Conn) SendData(data string) error {
	return c.Send(&Event{Data: data})
}

// SendJSON sends an event whose data is v encoded by [encoding/json].
func (c *Conn) SendJSON(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("sse: encoding event data: %w", err)
	}
	return c.Send(&Event{Data: string(data)})
}

// SendComment sends a comment (see [Comment]); clients ignore it.
func (c *Conn) SendComment(text string) error {
	b := getBuf()
	b.b = AppendComment(b.b[:0], text)
	err := c.write(b.b)
	putBuf(b)
	return err
}

// Close ends the stream and returns nil. It waits for a write in progress
// (aborting it when it blocks), so the handler may return right after.
// Close is idempotent.
func (c *Conn) Close() error {
	if c == nil {
		return nil
	}
	c.shutdown(fmt.Errorf("%w: closed by server", ErrConnectionClosed))
	c.waitWrites()
	return nil
}

// write writes p, flushes it and records the time. A failed write ends
// the stream.
func (c *Conn) write(p []byte) error {
	if c == nil {
		return errNilConn
	}
	c.lockWrite()
	defer c.unlockWrite()
	return c.writeLocked(p)
}

func (c *Conn) writeLocked(p []byte) error {
	return c.writeOut(fanout.Batch{P: p}, c.deadlines, 0, nil)
}

// writeOut writes b and flushes it, under a write deadline set before and
// cleared after when deadline is set (a hub's writers set one only for
// writes that take long; see internal/fanout/pool.go), and records start,
// when the write began in Unix nanoseconds (0: now), as the stream's last
// write. A failed write ends the stream.
func (c *Conn) writeOut(b fanout.Batch, deadline bool, start int64, stall func()) error {
	if c.closed.Load() || c.clientGone() {
		return c.Err()
	}
	if start == 0 {
		start = time.Now().UnixNano()
	}
	c.writing.Store(true)
	if deadline {
		_ = c.setWriteDeadline(time.Unix(0, start).Add(c.timeout))
	}
	// shutdown sets closed before it reads writing: either it sees this
	// write and cuts it short, or this check sees the close.
	if c.closed.Load() {
		c.writing.Store(false)
		return c.Err()
	}
	err := c.put(b, stall)
	if err == errKept {
		if c.suspend(b.R, start) {
			return fanout.ErrSuspended // still writing: see continueOut
		}
		if c.closed.Load() {
			return c.endKept(c.own.Load())
		}
		err = c.writeKept(stall)
	}
	if err == nil && deadline {
		err = c.clearDeadline()
	}
	c.writing.Store(false)
	if err != nil {
		return c.fail(err)
	}
	c.last.Store(start)
	return nil
}

// clearDeadline removes the write deadline after a write: HTTP/2 resets a
// stream whose deadline passes even when it is idle.
func (c *Conn) clearDeadline() error {
	return c.setWriteDeadline(time.Time{})
}

// setWriteDeadline sets the deadline of the stream's writes: on its
// connection once taken over, through its ResponseWriter before.
func (c *Conn) setWriteDeadline(t time.Time) error {
	if o := c.own.Load(); o != nil {
		return o.nc.SetWriteDeadline(t)
	}
	return c.rc().SetWriteDeadline(t)
}

// fail ends the stream after a failed write and returns why it ended. The
// connection is then reset (see finish), unless the stream never opened:
// the handler that sees Upgrade fail may still answer on it.
func (c *Conn) fail(err error) error {
	if errors.Is(err, ErrConnectionClosed) {
		return err
	}
	if c.last.Load() != 0 {
		c.mu.Lock()
		c.reset = true
		c.mu.Unlock()
	}
	c.shutdown(fmt.Errorf("%w: write: %w", ErrConnectionClosed, err))
	return c.Err()
}

// buf is a pooled encoding buffer.
type buf struct{ b []byte }

var bufPool = sync.Pool{New: func() any { return &buf{b: make([]byte, 0, 512)} }}

func getBuf() *buf { return bufPool.Get().(*buf) }

func putBuf(b *buf) {
	if cap(b.b) <= 64<<10 {
		bufPool.Put(b)
	}
}

// rc returns a ResponseController for the stream's writer. Making one per
// call does not allocate, and saves a pointer in every Conn.
func (c *Conn) rc() *http.ResponseController { return http.NewResponseController(c.w) }
