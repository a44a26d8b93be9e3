package sse_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coregx/stream/sse"
)

// TestClientComments checks that comments reach OnComment in stream order
// with the events, decoded as the standard says.
func TestClientComments(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newPipeTransport()
		var order []string
		c := &sse.Client{
			HTTPClient: &http.Client{Transport: tr},
			OnComment:  func(text string) { order = append(order, "comment "+text) },
		}
		go func() {
			w := (<-tr.conns).open()
			io.WriteString(w, ": first\r\n"+
				"data: a\r\n"+
				":  two spaces\r\n"+ // one space removed
				"\r\n"+
				":\n"+ // empty comment
				":bad \xff utf-8\n"+
				"data: b\n\n"+
				": trailing\n")
			w.Close()
			(<-tr.conns).status(http.StatusNoContent)
		}()
		for ev, err := range c.Events(t.Context(), "http://stream.test/") {
			if err != nil {
				t.Fatal(err)
			}
			order = append(order, "event "+ev.Data)
		}
		want := []string{
			"comment first",
			"comment  two spaces",
			"event a",
			"comment ",
			"comment bad \uFFFD utf-8",
			"event b",
			"comment trailing",
		}
		if got := strings.Join(order, "|"); got != strings.Join(want, "|") {
			t.Errorf("got  %q\nwant %q", order, want)
		}
	})
}

// TestClientCommentsKeepAlive checks that comments count as traffic for
// IdleTimeout (they are heartbeats) while the time OnComment takes does
// not count as silence.
func TestClientCommentsKeepAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newPipeTransport()
		var log reconnectLog
		comments := 0
		c := &sse.Client{
			HTTPClient:  &http.Client{Transport: tr},
			IdleTimeout: 10 * time.Second,
			OnReconnect: log.add,
			OnComment: func(string) {
				comments++
				if comments == 3 {
					time.Sleep(time.Minute) // a slow comment handler
				}
			},
		}
		go func() {
			w := (<-tr.conns).open()
			for range 20 { // 180 s of comments alone, every 9 s
				time.Sleep(9 * time.Second)
				io.WriteString(w, ": ping\n")
			}
			io.WriteString(w, "data: x\n\n")
			w.Close()
			(<-tr.conns).status(http.StatusNoContent)
		}()
		evs, errs := collect(c.Events(t.Context(), "http://stream.test/"))
		if len(evs) != 1 || len(errs) != 0 {
			t.Errorf("got %v, %v; want one event, no error", evs, errs)
		}
		if comments != 20 {
			t.Errorf("got %d comments, want 20", comments)
		}
		if e := log.get(); len(e) != 1 || e[0].err != io.EOF {
			t.Errorf("reconnections %+v, want one, after EOF", e)
		}
	})
}

// TestReaderCommentOrder checks the Reader's order of comments and events
// and that a stream of comments alone allocates nothing without
// OnComment.
func TestReaderCommentOrder(t *testing.T) {
	stream := ": a\ndata: 1\n: b\n\n: c\ndata: 2\n\n"
	var order []string
	rd := sse.NewReader(strings.NewReader(stream))
	rd.OnComment = func(text string) { order = append(order, text) }
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, "event "+ev.Data)
	}
	if got, want := strings.Join(order, ","), "a,b,event 1,c,event 2"; got != want {
		t.Errorf("order = %q, want %q", got, want)
	}
}

// TestReaderEndlessComments reads 64 MiB of comment lines: with a limit of
// 1 KiB per line, the memory used stays that of one buffer.
func TestReaderEndlessComments(t *testing.T) {
	line := ": " + strings.Repeat("k", 97) + "\n"
	const total = 100 * (64 << 20 / 100) // whole lines of 100 bytes
	src := io.MultiReader(io.LimitReader(&repeatReader{s: line}, total), strings.NewReader("data: end\n\n"))
	before := totalAlloc()
	rd := sse.NewReader(src)
	rd.MaxEventSize = 1 << 10
	ev, err := rd.Next()
	if err != nil || ev.Data != "end" {
		t.Fatalf("got %+v, %v; want the event after the comments", ev, err)
	}
	if got := totalAlloc() - before; got > 1<<20 {
		t.Errorf("allocated %d bytes reading %d bytes of comments, want at most 1 MiB", got, total)
	}
}

// repeatReader repeats a string forever.
type repeatReader struct {
	s   string
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.s[r.off:])
		n += c
		r.off = (r.off + c) % len(r.s)
	}
	return n, nil
}

func totalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// TestClientEndlessLine streams a 1 GiB line with no end: the default
// MaxEventSize ends the subscription with ErrEventTooLarge, without a
// reconnection, having allocated about the limit rather than the line.
func TestClientEndlessLine(t *testing.T) {
	const size = 1 << 30
	var calls atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: ")
		buf := []byte(strings.Repeat("x", 32<<10))
		for sent := 0; sent < size; sent += len(buf) {
			if _, err := w.Write(buf); err != nil {
				return // the client hung up
			}
		}
	})
	c := &sse.Client{HTTPClient: srv.Client(), MinRetry: time.Millisecond}
	before := totalAlloc()
	evs, errs := collect(c.Events(t.Context(), srv.URL))
	allocated := totalAlloc() - before
	if len(evs) != 0 || len(errs) != 1 || !errors.Is(errs[0], sse.ErrEventTooLarge) {
		t.Fatalf("got %d events, errors %v; want ErrEventTooLarge alone", len(evs), errs)
	}
	// The count depends on how the body arrived, but not by more than a
	// read.
	var n, limit int
	if _, err := fmt.Sscanf(errs[0].Error(), "sse: event too large: %d bytes or more exceed the limit of %d", &n, &limit); err != nil ||
		limit != defaultMaxEventSize || n <= limit || n > limit+64<<10 {
		t.Errorf("error = %q, want one reporting just over %d bytes", errs[0], defaultMaxEventSize)
	}
	// The reader's buffer doubles up to half the limit, then grows to one
	// byte past it: about twice the limit allocated in all, plus what
	// HTTP and the server use.
	if limit := uint64(2*defaultMaxEventSize + 4<<20); allocated > limit {
		t.Errorf("allocated %d MiB, want at most %d MiB", allocated>>20, limit>>20)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("server saw %d requests, want 1", n)
	}
}

func TestClientMaxEventSizeNegative(t *testing.T) {
	big := strings.Repeat("y", defaultMaxEventSize+10)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Last-Event-ID") != "" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeStream(w, "id: 1\ndata: "+big+"\n\n")
	})
	c := &sse.Client{HTTPClient: srv.Client(), MinRetry: time.Millisecond, MaxEventSize: -1}
	evs, errs := collect(c.Events(t.Context(), srv.URL))
	if len(errs) != 0 || len(evs) != 1 || evs[0].Data != big {
		t.Errorf("got %d events, errors %v; want the one large event", len(evs), errs)
	}
}

// onlyEvents reads results to the end, failing on anything but events.
func onlyEvents(t *testing.T, results <-chan any) {
	t.Helper()
	for r := range results {
		if _, ok := r.(sse.Event); !ok {
			t.Errorf("unexpected result %v", r)
		}
	}
}

// want returns the reconnections, failing unless there are n.
func (l *reconnectLog) want(t *testing.T, n int) []reconnectEntry {
	t.Helper()
	e := l.get()
	if len(e) != n {
		t.Fatalf("%d reconnections, want %d", len(e), n)
	}
	return e
}

// TestClientLastEventIDField checks where the first Last-Event-ID comes
// from, and that reconnections then send the stream's own.
func TestClientLastEventIDField(t *testing.T) {
	tests := []struct {
		name   string
		field  string
		header string // in Client.Header
		req    string // on the request
		want   string
	}{
		{"field", "10", "", "", "10"},
		{"request wins", "10", "", "11", "11"},
		{"field wins over header", "10", "12", "", "10"},
		{"header as before", "", "12", "", "12"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen syncList
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				seen.add(fmt.Sprintf("%q", r.Header.Values("Last-Event-ID")))
				if seen.len() > 1 {
					w.WriteHeader(http.StatusNoContent)
					return
				}
				writeStream(w, "data: x\n\n") // keeps the ID it resumed from
			})
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			if tt.req != "" {
				req.Header.Set("Last-Event-ID", tt.req)
			}
			c := &sse.Client{HTTPClient: srv.Client(), MinRetry: time.Millisecond, LastEventID: tt.field}
			if tt.header != "" {
				c.Header = http.Header{"Last-Event-Id": {tt.header}}
			}
			evs, errs := collect(c.Stream(t.Context(), req))
			if len(errs) != 0 || len(evs) != 1 || evs[0].ID != tt.want {
				t.Errorf("got %+v, %v; want one event with ID %q", evs, errs, tt.want)
			}
			if got, want := seen.String(), fmt.Sprintf(`["%s"],["%s"]`, tt.want, tt.want); got != want {
				t.Errorf("Last-Event-ID sent = %s, want %s", got, want)
			}
		})
	}
}

func TestClientInvalidInitialLastEventID(t *testing.T) {
	var calls atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { calls.Add(1) })
	c := &sse.Client{HTTPClient: srv.Client(), LastEventID: "a\nb"}
	evs, errs := collect(c.Events(t.Context(), srv.URL))
	if len(evs) != 0 || len(errs) != 1 || !errors.Is(errs[0], sse.ErrInvalidLastEventID) {
		t.Fatalf("got %v, %v; want ErrInvalidLastEventID", evs, errs)
	}
	if got, want := errs[0].Error(), `sse: last event ID cannot be sent in a header: "a\nb"`; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
	if calls.Load() != 0 {
		t.Errorf("server saw %d requests, want none", calls.Load())
	}
}

// TestClientUnsendableIDReported checks that a server-set ID that cannot
// be sent is reported once through OnReconnect, wrapped with the cause.
func TestClientUnsendableIDReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newPipeTransport()
		var log reconnectLog
		c := &sse.Client{HTTPClient: &http.Client{Transport: tr}, MinRetry: time.Second, OnReconnect: log.add}
		results := subscribe(t.Context(), c)
		w := (<-tr.conns).open()
		io.WriteString(w, "id: a\x01b\ndata: x\n\n")
		w.Close()
		(<-tr.conns).fail(errNetwork) // still the same ID: not reported again
		w = (<-tr.conns).open()
		io.WriteString(w, "id: ok\ndata: y\n\n")
		w.Close()
		(<-tr.conns).status(http.StatusNoContent)
		onlyEvents(t, results)
		e := log.want(t, 3)
		if !errors.Is(e[0].err, sse.ErrInvalidLastEventID) || !errors.Is(e[0].err, io.EOF) {
			t.Errorf("first cause %v, want EOF and ErrInvalidLastEventID", e[0].err)
		}
		if got, want := e[0].err.Error(), `EOF; sse: last event ID cannot be sent in a header: "a\x01b", reconnecting without it`; got != want {
			t.Errorf("first cause text %q, want %q", got, want)
		}
		if !errors.Is(e[1].err, errNetwork) || errors.Is(e[1].err, sse.ErrInvalidLastEventID) || e[2].err != io.EOF {
			t.Errorf("later causes %v, %v; want %v, EOF", e[1].err, e[2].err, errNetwork)
		}
	})
}

// TestClientRedirectLoop checks that redirects beyond the policy end the
// subscription with ErrRedirect instead of reconnecting.
func TestClientRedirectLoop(t *testing.T) {
	errPolicy := errors.New("test: no redirects to /b")
	tests := []struct {
		name     string
		check    func(*http.Request, []*http.Request) error
		requests int32
		wantErr  error
		wantRE   int // status of a ResponseError instead
	}{
		{"default policy", nil, 10, sse.ErrRedirect, 0},
		{"own policy", func(req *http.Request, via []*http.Request) error {
			if req.URL.Path == "/b" {
				return errPolicy
			}
			return nil
		}, 1, errPolicy, 0},
		{"use last response", func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, 1, nil, http.StatusFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				if r.URL.Path == "/a" {
					http.Redirect(w, r, "/b", http.StatusFound)
				} else {
					http.Redirect(w, r, "/a", http.StatusFound)
				}
			})
			hc := srv.Client()
			hc.CheckRedirect = tt.check
			c := &sse.Client{HTTPClient: hc, MinRetry: time.Millisecond}
			evs, errs := collect(c.Events(t.Context(), srv.URL+"/a"))
			if len(evs) != 0 || len(errs) != 1 {
				t.Fatalf("got %v, %v; want a single error", evs, errs)
			}
			if tt.wantErr != nil {
				if !errors.Is(errs[0], sse.ErrRedirect) || !errors.Is(errs[0], tt.wantErr) {
					t.Errorf("error %v, want ErrRedirect wrapping %v", errs[0], tt.wantErr)
				}
			} else if re := (*sse.ResponseError)(nil); !errors.As(errs[0], &re) || re.StatusCode != tt.wantRE {
				t.Errorf("error %v, want a ResponseError with status %d", errs[0], tt.wantRE)
			}
			if n := calls.Load(); n != tt.requests {
				t.Errorf("server saw %d requests, want %d", n, tt.requests)
			}
			if hc.CheckRedirect == nil != (tt.check == nil) {
				t.Error("the caller's http.Client was modified")
			}
		})
	}
}

// TestClientHTTP2SharesConnection streams ten URLs from one Client over
// HTTP/2: once the first stream is open, the others share its TCP
// connection. (Streams that all start before any connection is up may
// each dial, as net/http does for any request; it keeps one.)
func TestClientHTTP2SharesConnection(t *testing.T) {
	const streams = 10
	var conns atomic.Int32
	var seen syncList
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.add(r.Proto + " " + r.RemoteAddr)
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "data: %s\n\n", r.URL.Path)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	srv.EnableHTTP2 = true
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c := &sse.Client{HTTPClient: srv.Client()}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	got := make([]string, streams)
	var wg sync.WaitGroup
	ready := make(chan struct{})
	for i := range streams {
		wg.Go(func() {
			for ev, err := range c.Events(ctx, fmt.Sprintf("%s/s%d", srv.URL, i)) {
				if err != nil {
					if !errors.Is(err, context.Canceled) {
						t.Errorf("stream %d: %v", i, err)
					}
					return
				}
				got[i] = ev.Data
				ready <- struct{}{}
				<-ctx.Done() // keep the stream open
			}
		})
		if i == 0 {
			<-ready // the first connection is up
		}
	}
	for range streams - 1 {
		<-ready
	}
	cancel()
	wg.Wait()
	for i, d := range got {
		if want := fmt.Sprintf("/s%d", i); d != want {
			t.Errorf("stream %d got %q, want %q", i, d, want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for %d streams, want 1", n, streams)
	}
	reqs := strings.Split(seen.String(), ",")
	for _, r := range reqs {
		if r != reqs[0] || !strings.HasPrefix(r, "HTTP/2.0 ") {
			t.Errorf("requests %q, want all HTTP/2.0 from one address", reqs)
			break
		}
	}
}

// TestClientErrorBodyStalls checks that a refused response whose body
// never ends still ends the subscription, a second later, with what
// arrived of the body.
func TestClientErrorBodyStalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newPipeTransport()
		c := &sse.Client{HTTPClient: &http.Client{Transport: tr}}
		results := subscribe(t.Context(), c)
		pw := (<-tr.conns).respond(http.StatusUnauthorized, "text/plain")
		defer pw.Close()
		start := time.Now()
		io.WriteString(pw, "token expired")
		r := <-results
		if d := time.Since(start); d != time.Second {
			t.Errorf("ended after %v, want 1s", d)
		}
		var re *sse.ResponseError
		if err, ok := r.(error); !ok || !errors.As(err, &re) || re.StatusCode != http.StatusUnauthorized || re.Body != "token expired" {
			t.Errorf("result %v, want a ResponseError 401 with body %q", r, "token expired")
		}
		if _, more := <-results; more {
			t.Error("results after the error")
		}
	})
}
