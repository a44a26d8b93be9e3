package sse

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The reconnection delays of a [Client] whose fields leave them zero.
const (
	defaultMinRetry   = 3 * time.Second // what browsers use
	defaultMaxRetry   = 30 * time.Second
	defaultRetryFloor = 100 * time.Millisecond
)

// healthyPeriod is how long a connection must stay up for the backoff to
// start again from the base delay even if it delivered no event.
const healthyPeriod = 30 * time.Second

// Client subscribes to event streams over HTTP and keeps them going, as a
// browser's EventSource does. Its zero value is ready to use, and it is
// safe for concurrent use once its fields are set; it must not be copied
// after first use. One Client can run many streams at once, sharing the
// connections of its HTTPClient (over HTTP/2, many streams to one server
// share one connection).
//
// Each subscription sends GET (or the given request) with the headers
// "Accept: text/event-stream" and "Cache-Control: no-cache" unless the
// request already has them, and "Last-Event-ID" carrying the last event
// ID once there is a non-empty one (see LastEventID). A response other
// than 200 OK with a Content-Type of text/event-stream ends the
// subscription with a [*ResponseError]; 204 No Content ends it without
// an error.
//
// # Reconnection
//
// Network errors, the end of a response, and an idle timeout make the
// client reconnect after a delay, as browsers do: the base delay is the
// server's latest retry field (raised to RetryFloor), else MinRetry. A
// connection that delivered at least one event (or stayed up for 30
// seconds) is not a failure: the next delay is the base. Each
// consecutive failure (a connection that could not be made, or that
// ended before any event) doubles the delay, up to MaxRetry. A random
// jitter of up to a fifth of the delay comes on top, so the client never
// waits less than the server asked for. [Client.Restart] reconnects at
// once.
//
// # Limits
//
// What a hostile or broken server can make the client do is bounded:
//   - An event, a line without end or a comment line larger than
//     MaxEventSize (16 MiB by default) ends the subscription with an
//     error matching [ErrEventTooLarge]; memory stays within about twice
//     that.
//   - A stream of comments alone is read and dropped line by line, in
//     constant memory, for as long as the server sends it: comments are
//     heartbeats, so they keep a connection alive against IdleTimeout.
//   - A retry field of 0 with connections closed after each event makes
//     at most one reconnection per RetryFloor (10 a second by default).
//   - Redirects beyond the HTTP client's CheckRedirect policy (by default
//     ten in a row, so a loop ends) end it with [ErrRedirect].
//   - A wrong status or Content-Type ends it with a [*ResponseError],
//     without reconnecting; the error keeps the start of the body.
//   - A body that stalls is dropped after IdleTimeout, when set;
//     otherwise the client waits until ctx ends.
type Client struct {
	// HTTPClient sends the requests; nil means http.DefaultClient. It
	// follows redirects as its CheckRedirect allows. Its Timeout, if
	// any, bounds whole connections, so streams usually want none.
	HTTPClient *http.Client

	// Header holds headers added to every request that the request does
	// not set itself.
	Header http.Header

	// LastEventID, when not empty, is the Last-Event-ID the first
	// request of each stream sends, to resume where an earlier stream
	// left off; later requests send the stream's own last event ID. A
	// Last-Event-ID header on the request given to Stream takes
	// precedence, then this field, then a Last-Event-ID in Header. An
	// ID that cannot be sent ends the stream with an error matching
	// [ErrInvalidLastEventID].
	LastEventID string

	// MinRetry is the base reconnection delay until the server sends a
	// retry field; zero means 3 s, as browsers do.
	MinRetry time.Duration

	// MaxRetry caps the doubling of the delay (the jitter comes on top);
	// zero means 30 s. A server's retry field larger than the
	// cap is still honoured.
	MaxRetry time.Duration

	// RetryFloor is the shortest base delay a server's retry field can
	// set, so that a server sending "retry: 0" and closing each
	// connection cannot make the client reconnect in a busy loop. Zero
	// means 100 ms; a negative value removes the floor, so
	// that "retry: 0" means reconnecting at once after a connection that
	// delivered events. It does not apply to MinRetry.
	RetryFloor time.Duration

	// IdleTimeout, when positive, is how long a connection may go
	// without receiving a byte (waiting for the response included)
	// before the client drops it and reconnects, reporting
	// [ErrIdleTimeout]. It pairs with the server's heartbeat: a comment
	// the server sends after a period of silence (see
	// [UpgradeOptions.Heartbeat] and [Options.Heartbeat]), so set it
	// to a few heartbeat intervals. Without it, a connection that a
	// proxy or a dead peer leaves silent stays open until ctx ends. The
	// time the caller spends handling an event or a comment is not
	// counted. Zero means no timeout.
	IdleTimeout time.Duration

	// MaxEventSize limits the size of one event as [Reader.MaxEventSize]
	// does: zero means 16 MiB, a negative value
	// means no limit. A larger event ends the subscription with an error
	// matching [ErrEventTooLarge].
	MaxEventSize int

	// OnConnect, when set, is called with each request before it is
	// sent, the first and every reconnection, so that it can refresh a
	// token or otherwise change the request. An error ends the
	// subscription with that error.
	OnConnect func(req *http.Request) error

	// OnReconnect, when set, is called whenever a connection failed or
	// ended and the client is about to wait delay and reconnect. err is
	// the cause: the network error, io.EOF when the server ended the
	// response, or an error matching [ErrIdleTimeout]. When the stream's
	// last event ID cannot be sent, the first reconnection without it
	// also wraps [ErrInvalidLastEventID]. A [Client.Restart] does not
	// call it.
	OnReconnect func(err error, delay time.Duration)

	// OnComment, when set, is called with the text of each comment line
	// the server sends (what follows the colon, one leading space
	// removed), in stream order with the events: it runs in the
	// goroutine of the loop, between the events that surround the
	// comment.
	OnComment func(text string)

	// mu guards streams and the cancel field of each. It is the only
	// lock of a Client and its streams, held briefly and never while
	// calling the caller's code.
	mu      sync.Mutex
	streams map[*stream]struct{} // running streams, for Restart
}

// Restart makes every stream of c that is running reconnect now, as when
// a token changed: a stream that is connected or waiting for a response
// drops its connection, and one waiting to reconnect stops waiting. Each
// then sends a new request at once, built like any reconnection
// (OnConnect is called and Last-Event-ID carries the last event ID). A
// restart is not a failure: it yields no error, does not call
// OnReconnect and does not lengthen the backoff.
//
// Events already received on the dropped connection are still yielded;
// an event cut off is discarded, and a server that resumes from
// Last-Event-ID sends it again. Streams that start after Restart returns
// are not affected.
//
// Restart may be called from any goroutine, including the loop body and
// the hooks; it does not wait for the reconnections. To restart one
// stream alone, run it on a Client of its own: Clients that share an
// HTTPClient share its connections.
func (c *Client) Restart() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for s := range c.streams {
		if s.cancel != nil {
			s.cancel(errRestart)
		}
		// The kick also covers a connection that ended on its own just
		// before: its stream is about to wait. The next connection
		// forgets it.
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// errRestart is the cause of a connection dropped by Restart.
var errRestart = errors.New("sse: restart")

// track adds s to the running streams.
func (c *Client) track(s *stream) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.streams == nil {
		c.streams = make(map[*stream]struct{})
	}
	c.streams[s] = struct{}{}
}

// untrack removes s from the running streams.
func (c *Client) untrack(s *stream) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.streams, s)
}

// Events subscribes to the event stream at url with GET requests and
// returns an iterator over its events; see [Client.Stream].
func (c *Client) Events(ctx context.Context, url string) iter.Seq2[Event, error] {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return func(yield func(Event, error) bool) {
			yield(Event{}, err)
		}
	}
	return c.Stream(ctx, req)
}

// Stream subscribes to the event stream that req asks for and returns an
// iterator over its events, reconnecting as the [Client] describes until
// ctx is done, the loop ends, or the server stops the stream. req is not
// modified: each connection sends a clone bound to ctx, and a request
// body is sent again through req.GetBody.
//
// Only a final error is yielded, once, with a zero Event, and ends the
// iteration: ctx's error, a [*ResponseError], an error from OnConnect,
// or one matching [ErrEventTooLarge], [ErrRedirect] or
// [ErrInvalidLastEventID]. Connection failures are not yielded; watch
// them with OnReconnect. Breaking out of the loop or cancelling ctx
// closes the connection and releases everything at once.
func (c *Client) Stream(ctx context.Context, req *http.Request) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		s := &stream{c: c, req: req, kick: make(chan struct{}, 1)}
		s.lastID = req.Header.Get("Last-Event-ID")
		if s.lastID == "" {
			s.lastID = c.LastEventID
		}
		if s.lastID == "" {
			s.lastID = c.Header.Get("Last-Event-ID")
		}
		if !validHeaderValue(s.lastID) {
			yield(Event{}, fmt.Errorf("%w: %q", ErrInvalidLastEventID, s.lastID))
			return
		}
		s.hc = c.httpClient()
		c.track(s)
		defer c.untrack(s)
		s.run(ctx, yield)
	}
}

// stream is the state of one subscription. cancel is guarded by c.mu.
type stream struct {
	c        *Client
	hc       *http.Client
	req      *http.Request
	lastID   string
	reported string        // unsendable last event ID already reported
	retry    time.Duration // base delay set by the server
	hasRet   bool
	kick     chan struct{}           // Restart while waiting to reconnect
	cancel   context.CancelCauseFunc // ends the current connection, or nil
}

// outcome is how one connection ended.
type outcome int

const (
	reconnect outcome = iota // transient failure or end of response
	restart                  // Restart: reconnect at once
	stop                     // the iteration is over
)

// result describes how one connection went.
type result struct {
	out     outcome
	events  int   // events yielded
	healthy bool  // stayed open for healthyPeriod
	cause   error // cause of a reconnection
}

func (s *stream) run(ctx context.Context, yield func(Event, error) bool) {
	failures := 0
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			yield(Event{}, err)
			return
		}
		res := s.connect(ctx, attempt, yield)
		if res.events > 0 || res.healthy {
			failures = 0
		}
		switch res.out {
		case stop:
			return
		case restart:
			continue
		}
		delay := s.delay(failures)
		failures++
		cause := res.cause
		if s.lastID != s.reported && !validHeaderValue(s.lastID) {
			s.reported = s.lastID
			cause = fmt.Errorf("%w; %w: %q, reconnecting without it", cause, ErrInvalidLastEventID, s.lastID)
		}
		if s.c.OnReconnect != nil {
			s.c.OnReconnect(cause, delay)
		}
		if !s.wait(ctx, delay) {
			yield(Event{}, ctx.Err())
			return
		}
	}
}

// wait waits for delay, or less if Restart is called. It reports false
// when ctx ends first.
func (s *stream) wait(ctx context.Context, delay time.Duration) bool {
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-s.kick:
	}
	return true
}

// delay returns the wait before a reconnection after n consecutive
// failures.
func (s *stream) delay(n int) time.Duration {
	base := s.c.MinRetry
	if base <= 0 {
		base = defaultMinRetry
	}
	if s.hasRet {
		floor := s.c.RetryFloor
		if floor == 0 {
			floor = defaultRetryFloor
		}
		base = max(s.retry, floor)
	}
	ceiling := s.c.MaxRetry
	if ceiling <= 0 {
		ceiling = defaultMaxRetry
	}
	ceiling = max(ceiling, base)
	d := base
	if n > 0 {
		// Doubling needs a start, even after "retry: 0".
		d = max(d, time.Millisecond)
		for range n {
			if d >= ceiling || d > math.MaxInt64/2 {
				break
			}
			d *= 2
		}
		d = min(d, ceiling)
	}
	jitter := rand.N(d/5 + 1)
	if d > math.MaxInt64-jitter {
		return math.MaxInt64 // a server's retry field can ask for centuries
	}
	return d + jitter
}

// watch makes cancel the way Restart ends the current connection, and
// forgets a Restart that came while no connection was under way: the
// connection about to be made already follows it.
func (s *stream) watch(cancel context.CancelCauseFunc) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.cancel = cancel
	select {
	case <-s.kick:
	default:
	}
}

func (s *stream) unwatch() {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.cancel = nil
}

// connect makes one connection and reads events from it until it ends.
// Final errors are yielded here.
func (s *stream) connect(ctx context.Context, attempt int, yield func(Event, error) bool) (res result) {
	var opened time.Time
	fail := func(err error) result {
		yield(Event{}, err)
		res.out = stop
		return res
	}
	// transient sorts out a connection error: the end of ctx is final,
	// a Restart reconnects at once, anything else after a delay.
	transient := func(cctx context.Context, err error) result {
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		switch cause := context.Cause(cctx); {
		case errors.Is(cause, errRestart):
			res.out = restart
			return res
		case errors.Is(cause, ErrIdleTimeout):
			err = cause
		}
		res.healthy = !opened.IsZero() && time.Since(opened) >= healthyPeriod
		res.out, res.cause = reconnect, err
		return res
	}
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s.watch(cancel)
	defer s.unwatch()
	idle := newIdleTimer(s.c.IdleTimeout, cancel)
	defer idle.stop()

	req, err := s.request(cctx, attempt)
	if err != nil {
		return fail(err)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		if re := (*redirectError)(nil); errors.As(err, &re) {
			return fail(fmt.Errorf("%w: %w", ErrRedirect, re.err))
		}
		return transient(cctx, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNoContent:
		res.out = stop
		return res
	case resp.StatusCode != http.StatusOK, !isEventStream(resp.Header.Get("Content-Type")):
		t := time.AfterFunc(errorBodyWait, func() { cancel(errors.New("sse: reading error body took too long")) })
		body := readErrorBody(resp.Body)
		t.Stop()
		return fail(&ResponseError{StatusCode: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Body: body})
	}
	opened = time.Now()
	idle.reset()

	rd := NewReader(&idleReader{r: resp.Body, t: idle})
	rd.MaxEventSize = s.c.MaxEventSize
	rd.setLastEventID(s.lastID)
	if onComment := s.c.OnComment; onComment != nil {
		rd.OnComment = func(text string) {
			idle.pause()
			onComment(text)
			idle.reset()
		}
	}
	for {
		ev, err := rd.Next()
		s.lastID = rd.LastEventID()
		if d, ok := rd.Retry(); ok {
			s.retry, s.hasRet = d, true
		}
		if errors.Is(err, ErrEventTooLarge) {
			return fail(err)
		}
		if err != nil {
			return transient(cctx, err)
		}
		idle.pause()
		res.events++
		if !yield(ev, nil) {
			res.out = stop
			return res
		}
		idle.reset()
	}
}

// request builds the request for one connection.
func (s *stream) request(ctx context.Context, attempt int) (*http.Request, error) {
	req := s.req.Clone(ctx)
	if s.req.Body != nil && s.req.Body != http.NoBody && attempt > 0 {
		if s.req.GetBody == nil {
			return nil, errors.New("sse: cannot reconnect: request body cannot be sent again (GetBody is nil)")
		}
		body, err := s.req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("sse: cannot reconnect: %w", err)
		}
		req.Body = body
	}
	for k, vv := range s.c.Header {
		if len(req.Header.Values(k)) == 0 {
			for _, v := range vv {
				req.Header.Add(k, v)
			}
		}
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "text/event-stream")
	}
	if req.Header.Get("Cache-Control") == "" {
		req.Header.Set("Cache-Control", "no-cache")
	}
	if s.lastID != "" && validHeaderValue(s.lastID) {
		req.Header.Set("Last-Event-ID", s.lastID)
	} else {
		req.Header.Del("Last-Event-ID")
	}
	if s.c.OnConnect != nil {
		if err := s.c.OnConnect(req); err != nil {
			return nil, err
		}
	}
	return req, nil
}

// validHeaderValue reports whether v can be sent as a header value: an
// ID holding other control characters would make every request fail.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7F {
			return false
		}
	}
	return true
}

// isEventStream reports whether a Content-Type names text/event-stream,
// ignoring parameters and case.
func isEventStream(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt, _, _ = strings.Cut(ct, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
	}
	return mt == "text/event-stream"
}
