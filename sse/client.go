package sse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"math/rand/v2"
	"mime"
	"net/http"
	"strings"
	"time"
)

// Default reconnection delays of a [Client].
const (
	// DefaultMinRetry is the delay before the first reconnection when
	// neither Client.MinRetry nor the server's retry field sets one; it
	// is what browsers use.
	DefaultMinRetry = 3 * time.Second
	// DefaultMaxRetry caps the exponential backoff when Client.MaxRetry
	// is zero.
	DefaultMaxRetry = 30 * time.Second
)

// healthyPeriod is how long a connection must stay up for the backoff to
// start again from the base delay.
const healthyPeriod = 30 * time.Second

// Client subscribes to event streams over HTTP and keeps them going, as a
// browser's EventSource does. Its zero value is ready to use, and it is
// safe for concurrent use once its fields are set.
//
// Each subscription sends GET (or the given request) with the headers
// "Accept: text/event-stream" and "Cache-Control: no-cache" unless the
// request already has them, and "Last-Event-ID" carrying the last event
// ID once the stream has set a non-empty one (except an ID holding
// control characters other than tab, which net/http refuses to send in a
// header: the request goes without it). A response other than
// 200 OK with a Content-Type of text/event-stream ends the subscription
// with a [*ResponseError]; 204 No Content ends it without an error.
// Network errors, the end of a response, and an idle timeout make the
// client reconnect: it waits for the base delay (the server's latest
// retry field, else MinRetry) doubled after each consecutive failure up
// to MaxRetry, plus a random jitter of up to a fifth of that, so never
// less than the reconnection time the server asked for. A connection
// that stays up for 30 seconds resets the doubling.
type Client struct {
	// HTTPClient sends the requests; nil means http.DefaultClient. It
	// follows redirects as its CheckRedirect allows. Its Timeout, if
	// any, bounds whole connections, so streams usually want none.
	HTTPClient *http.Client

	// Header holds headers added to every request that the request does
	// not set itself.
	Header http.Header

	// MinRetry is the base reconnection delay until the server sends a
	// retry field; zero means DefaultMinRetry.
	MinRetry time.Duration

	// MaxRetry caps the doubling of the delay (the jitter comes on top);
	// zero means DefaultMaxRetry. A server's retry field larger than the
	// cap is still honoured.
	MaxRetry time.Duration

	// IdleTimeout, when positive, is how long a connection may go
	// without receiving a byte (waiting for the response included)
	// before the client drops it and reconnects, reporting
	// [ErrIdleTimeout]. Servers send comments to keep quiet streams
	// alive. The time the caller spends handling an event is not
	// counted.
	IdleTimeout time.Duration

	// MaxEventSize, when positive, limits the size of one event as
	// [Reader.MaxEventSize] does. A larger event ends the subscription
	// with an error matching [ErrEventTooLarge].
	MaxEventSize int

	// OnConnect, when set, is called with each request before it is
	// sent, the first and every reconnection, so that it can refresh a
	// token or otherwise change the request. An error ends the
	// subscription with that error.
	OnConnect func(req *http.Request) error

	// OnReconnect, when set, is called whenever a connection failed or
	// ended and the client is about to wait delay and reconnect. err is
	// the cause: the network error, io.EOF when the server ended the
	// response, or an error matching [ErrIdleTimeout].
	OnReconnect func(err error, delay time.Duration)
}

// ResponseError reports a response that does not carry an event stream:
// its status is not 200 OK (nor 204 No Content, which ends a subscription
// quietly) or its Content-Type is not text/event-stream. The client does
// not reconnect after it.
type ResponseError struct {
	StatusCode  int    // HTTP status code
	ContentType string // the Content-Type header as received
}

// Error returns a description starting with "sse: ".
func (e *ResponseError) Error() string {
	if e.StatusCode != http.StatusOK {
		return fmt.Sprintf("sse: unexpected response status %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	return fmt.Sprintf("sse: unexpected content type %q, want text/event-stream", e.ContentType)
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
// or one matching [ErrEventTooLarge]. Connection failures are not
// yielded; watch them with OnReconnect. Breaking out of the loop or
// cancelling ctx closes the connection and releases everything at once.
func (c *Client) Stream(ctx context.Context, req *http.Request) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		s := &stream{c: c, req: req, lastID: req.Header.Get("Last-Event-ID")}
		if s.lastID == "" {
			s.lastID = c.Header.Get("Last-Event-ID")
		}
		s.run(ctx, yield)
	}
}

// stream is the state of one subscription.
type stream struct {
	c      *Client
	req    *http.Request
	lastID string
	retry  time.Duration // base delay set by the server
	hasRet bool
}

// outcome is how one connection ended.
type outcome int

const (
	reconnect outcome = iota // transient failure or end of response
	stop                     // the iteration is over
)

func (s *stream) run(ctx context.Context, yield func(Event, error) bool) {
	failures := 0
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			yield(Event{}, err)
			return
		}
		out, opened, cause := s.connect(ctx, attempt, yield)
		if out == stop {
			return
		}
		if !opened.IsZero() && time.Since(opened) >= healthyPeriod {
			failures = 0
		}
		delay := s.delay(failures)
		failures++
		if s.c.OnReconnect != nil {
			s.c.OnReconnect(cause, delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			yield(Event{}, ctx.Err())
			return
		case <-t.C:
		}
	}
}

// delay returns the wait before a reconnection after n consecutive
// failures.
func (s *stream) delay(n int) time.Duration {
	base := s.c.MinRetry
	if base <= 0 {
		base = DefaultMinRetry
	}
	if s.hasRet {
		base = s.retry
	}
	ceiling := s.c.MaxRetry
	if ceiling <= 0 {
		ceiling = DefaultMaxRetry
	}
	ceiling = max(ceiling, base)
	d := base
	if n > 0 {
		// A server asking for no delay still gets backoff on failures.
		d = max(d, 100*time.Millisecond)
		for range n {
			if d >= ceiling || d > math.MaxInt64/2 {
				break
			}
			d *= 2
		}
	}
	d = min(d, ceiling)
	jitter := rand.N(d/5 + 1)
	if d > math.MaxInt64-jitter {
		return math.MaxInt64 // a server's retry field can ask for centuries
	}
	return d + jitter
}

// connect makes one connection and reads events from it until it ends.
// It returns how it ended, when the stream opened (zero if it never
// did), and the cause of a reconnection. Final errors are yielded here.
func (s *stream) connect(ctx context.Context, attempt int, yield func(Event, error) bool) (out outcome, opened time.Time, cause error) {
	fail := func(err error) (outcome, time.Time, error) {
		yield(Event{}, err)
		return stop, opened, nil
	}
	// transient sorts out a connection error: the end of ctx is final,
	// anything else leads to a reconnection.
	transient := func(cctx context.Context, err error) (outcome, time.Time, error) {
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		if cause := context.Cause(cctx); errors.Is(cause, ErrIdleTimeout) {
			err = cause
		}
		return reconnect, opened, err
	}
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := newIdleTimer(s.c.IdleTimeout, cancel)
	defer idle.stop()

	req, err := s.request(cctx, attempt)
	if err != nil {
		return fail(err)
	}
	hc := s.c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(req)
	if err != nil {
		return transient(cctx, err)
	}
	defer res.Body.Close()
	switch {
	case res.StatusCode == http.StatusNoContent:
		return stop, opened, nil
	case res.StatusCode != http.StatusOK:
		return fail(&ResponseError{StatusCode: res.StatusCode, ContentType: res.Header.Get("Content-Type")})
	case !isEventStream(res.Header.Get("Content-Type")):
		return fail(&ResponseError{StatusCode: res.StatusCode, ContentType: res.Header.Get("Content-Type")})
	}
	opened = time.Now()
	idle.reset()

	rd := NewReader(&idleReader{r: res.Body, t: idle})
	rd.MaxEventSize = s.c.MaxEventSize
	rd.setLastEventID(s.lastID)
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
		if !yield(ev, nil) {
			return stop, opened, nil
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

// idleTimer cancels a connection that receives nothing for too long. Its
// zero value (no timeout) does nothing.
type idleTimer struct {
	d time.Duration
	t *time.Timer
}

func newIdleTimer(d time.Duration, cancel context.CancelCauseFunc) *idleTimer {
	it := &idleTimer{d: d}
	if d > 0 {
		it.t = time.AfterFunc(d, func() {
			cancel(fmt.Errorf("%w: nothing received for %v", ErrIdleTimeout, d))
		})
	}
	return it
}

func (it *idleTimer) reset() {
	if it.t != nil {
		it.t.Reset(it.d)
	}
}

func (it *idleTimer) pause() {
	if it.t != nil {
		it.t.Stop()
	}
}

func (it *idleTimer) stop() { it.pause() }

// idleReader restarts the idle timer whenever bytes arrive.
type idleReader struct {
	r io.Reader
	t *idleTimer
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.t.reset()
	}
	return n, err
}
