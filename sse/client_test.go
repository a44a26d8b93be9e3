package sse_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coregx/stream/sse"
)

// writeStream answers with an event stream carrying body.
func writeStream(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "text/event-stream")
	io.WriteString(w, body)
	w.(http.Flusher).Flush()
}

// collect runs a subscription to the end and returns its events and the
// errors it yielded.
func collect(seq func(func(sse.Event, error) bool)) ([]sse.Event, []error) {
	var evs []sse.Event
	var errs []error
	for ev, err := range seq {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		evs = append(evs, ev)
	}
	return evs, errs
}

// newServer starts a test server that closes each connection after its
// response, so that the transport never retries a request on its own on
// a reused connection.
func newServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Config.SetKeepAlivesEnabled(false)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// syncList is a list of strings shared between handlers and the test.
type syncList struct {
	mu    sync.Mutex
	items []string
}

func (l *syncList) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.items = append(l.items, s)
}

func (l *syncList) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.items, ",")
}

func (l *syncList) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.items)
}

func TestClientReconnectsWithLastEventID(t *testing.T) {
	var seen syncList
	var n atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		seen.add(fmt.Sprintf("%s accept=%q cache=%q last=%q custom=%q",
			r.Method, r.Header.Get("Accept"), r.Header.Get("Cache-Control"),
			r.Header.Values("Last-Event-ID"), r.Header.Get("X-Custom")))
		switch n.Add(1) {
		case 1:
			writeStream(w, "id: 1\ndata: a\n\nid: 2\ndata: b\n\n")
		case 2:
			writeStream(w, "data: c\n\nid: 3\n\n") // 3 is set by an empty event
		case 3:
			writeStream(w, "id\ndata: d\n\n") // clears the ID
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	var causes []error
	c := &sse.Client{
		HTTPClient:  srv.Client(),
		Header:      http.Header{"X-Custom": {"yes"}},
		MinRetry:    time.Millisecond,
		OnReconnect: func(err error, _ time.Duration) { causes = append(causes, err) },
	}
	evs, errs := collect(c.Events(t.Context(), srv.URL))
	want := []sse.Event{
		{Type: "message", ID: "1", Data: "a"},
		{Type: "message", ID: "2", Data: "b"},
		{Type: "message", ID: "2", Data: "c"},
		{Type: "message", ID: "", Data: "d"},
	}
	if fmt.Sprint(evs) != fmt.Sprint(want) {
		t.Errorf("events = %+v, want %+v", evs, want)
	}
	if len(errs) != 0 {
		t.Errorf("errors = %v, want none (204 ends quietly)", errs)
	}
	wantSeen := []string{
		`GET accept="text/event-stream" cache="no-cache" last=[] custom="yes"`,
		`GET accept="text/event-stream" cache="no-cache" last=["2"] custom="yes"`,
		`GET accept="text/event-stream" cache="no-cache" last=["3"] custom="yes"`,
		`GET accept="text/event-stream" cache="no-cache" last=[] custom="yes"`,
	}
	if seen.String() != strings.Join(wantSeen, ",") {
		t.Errorf("requests:\n%s\nwant:\n%s", seen.String(), strings.Join(wantSeen, ","))
	}
	if len(causes) != 3 || causes[0] != io.EOF || causes[1] != io.EOF || causes[2] != io.EOF {
		t.Errorf("OnReconnect causes = %v, want [EOF EOF EOF]", causes)
	}
}

func TestClientInitialLastEventID(t *testing.T) {
	tests := []struct {
		name   string
		header http.Header // Client.Header
		reqHdr string      // Last-Event-ID on the request
		want   string
	}{
		{"from request", nil, "41", `["41"]`},
		{"from client header", http.Header{"Last-Event-Id": {"7"}}, "", `["7"]`},
		{"request wins", http.Header{"Last-Event-Id": {"7"}}, "8", `["8"]`},
		{"none", nil, "", `[]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got syncList
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				got.add(fmt.Sprintf("%q", r.Header.Values("Last-Event-ID")))
				w.WriteHeader(http.StatusNoContent)
			})
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			if tt.reqHdr != "" {
				req.Header.Set("Last-Event-ID", tt.reqHdr)
			}
			c := &sse.Client{HTTPClient: srv.Client(), Header: tt.header}
			if _, errs := collect(c.Stream(t.Context(), req)); len(errs) != 0 {
				t.Fatalf("errors = %v", errs)
			}
			if got.String() != tt.want {
				t.Errorf("Last-Event-ID sent = %s, want %s", got.String(), tt.want)
			}
		})
	}
}

func TestClientResponseErrors(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    []sse.Event
		wantErr string // "" for none
		wantRE  *sse.ResponseError
	}{
		{"500", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		}, nil, "sse: unexpected response status 500 Internal Server Error: boom",
			&sse.ResponseError{StatusCode: 500, ContentType: "text/plain; charset=utf-8", Body: "boom\n"}},
		{"404 with server text", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `no topic "nope"`, http.StatusNotFound)
		}, nil, `sse: unexpected response status 404 Not Found: no topic "nope"`,
			&sse.ResponseError{StatusCode: 404, ContentType: "text/plain; charset=utf-8", Body: "no topic \"nope\"\n"}},
		{"403 empty body", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusForbidden)
		}, nil, "sse: unexpected response status 403 Forbidden",
			&sse.ResponseError{StatusCode: 403}},
		{"wrong content type", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<p>sign in</p>\r\n<p>again</p>\n")
		}, nil, `sse: unexpected content type "text/html", want text/event-stream: <p>sign in</p>  <p>again</p>`,
			&sse.ResponseError{StatusCode: 200, ContentType: "text/html", Body: "<p>sign in</p>\r\n<p>again</p>\n"}},
		{"missing content type", func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil
			io.WriteString(w, "data: no\n\n")
		}, nil, `sse: unexpected content type "", want text/event-stream: data: no`,
			&sse.ResponseError{StatusCode: 200, ContentType: "", Body: "data: no\n\n"}},
		// 511 ASCII bytes then a 3-byte character: the character would
		// end past 512 bytes, so the prefix stops before it.
		{"long body cut before a character", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, strings.Repeat("a", 511)+"€"+strings.Repeat("b", 4000))
		}, nil, "sse: unexpected response status 502 Bad Gateway: " + strings.Repeat("a", 511),
			&sse.ResponseError{StatusCode: 502, ContentType: "text/plain", Body: strings.Repeat("a", 511)}},
		{"invalid UTF-8 replaced", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "busy \xff\xe2\x82 now")
		}, nil, "sse: unexpected response status 503 Service Unavailable: busy \uFFFD\uFFFD now",
			&sse.ResponseError{StatusCode: 503, ContentType: "text/plain", Body: "busy \uFFFD\uFFFD now"}},
		{"replacements count toward the limit", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, strings.Repeat("\xff", 600))
		}, nil, "sse: unexpected response status 400 Bad Request: " + strings.Repeat("\uFFFD", 170),
			&sse.ResponseError{StatusCode: 400, ContentType: "text/plain", Body: strings.Repeat("\uFFFD", 170)}},
		{"204 stops", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}, nil, "", nil},
		{"content type with params and case", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "Text/Event-Stream; charset=utf-8")
			io.WriteString(w, "data: yes\n\n")
		}, []sse.Event{{Type: "message", Data: "yes"}}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) > 1 && tt.want != nil {
					w.WriteHeader(http.StatusNoContent)
					return
				}
				tt.handler(w, r)
			})
			c := &sse.Client{HTTPClient: srv.Client(), MinRetry: time.Millisecond}
			evs, errs := collect(c.Events(t.Context(), srv.URL))
			if fmt.Sprint(evs) != fmt.Sprint(tt.want) {
				t.Errorf("events = %+v, want %+v", evs, tt.want)
			}
			if tt.wantErr == "" {
				if len(errs) != 0 {
					t.Fatalf("errors = %v, want none", errs)
				}
				return
			}
			if len(errs) != 1 {
				t.Fatalf("errors = %v, want one", errs)
			}
			if errs[0].Error() != tt.wantErr {
				t.Errorf("error = %q, want %q", errs[0], tt.wantErr)
			}
			var re *sse.ResponseError
			if !errors.As(errs[0], &re) {
				t.Fatalf("error %T is not a *ResponseError", errs[0])
			}
			if *re != *tt.wantRE {
				t.Errorf("ResponseError = %+v, want %+v", *re, *tt.wantRE)
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("server saw %d requests, want 1 (no reconnection)", n)
			}
		})
	}
}

func TestClientRedirect(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/old":
			http.Redirect(w, r, "/events", http.StatusFound)
		case "/events":
			if r.Header.Get("Last-Event-ID") != "" {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			writeStream(w, "id: 1\ndata: moved\n\n")
		}
	})
	c := &sse.Client{HTTPClient: srv.Client(), MinRetry: time.Millisecond}
	evs, errs := collect(c.Events(t.Context(), srv.URL+"/old"))
	want := []sse.Event{{Type: "message", ID: "1", Data: "moved"}}
	if fmt.Sprint(evs) != fmt.Sprint(want) || len(errs) != 0 {
		t.Errorf("got %+v, %v; want %+v, no error", evs, errs, want)
	}
}

// TestClientRecovers drops connections in several ways before the server
// recovers; each drop shows up in OnReconnect and the last event ID is
// kept.
func TestClientRecovers(t *testing.T) {
	tests := []struct {
		name string
		drop func(w http.ResponseWriter, r *http.Request)
	}{
		{"closed before response", func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}},
		{"cut mid event", func(w http.ResponseWriter, r *http.Request) {
			writeStream(w, "data: partial\n")
			panic(http.ErrAbortHandler)
		}},
		{"cut mid line", func(w http.ResponseWriter, r *http.Request) {
			writeStream(w, "data: par")
			panic(http.ErrAbortHandler)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			var lastIDs syncList
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				lastIDs.add(r.Header.Get("Last-Event-ID"))
				switch n.Add(1) {
				case 1:
					writeStream(w, "id: 5\ndata: first\n\n")
				case 2, 3:
					tt.drop(w, r)
				case 4:
					writeStream(w, "data: recovered\n\n")
				default:
					w.WriteHeader(http.StatusNoContent)
				}
			})
			var causes []error
			c := &sse.Client{
				HTTPClient:  srv.Client(),
				MinRetry:    time.Millisecond,
				OnReconnect: func(err error, _ time.Duration) { causes = append(causes, err) },
			}
			evs, errs := collect(c.Events(t.Context(), srv.URL))
			want := []sse.Event{{Type: "message", ID: "5", Data: "first"}, {Type: "message", ID: "5", Data: "recovered"}}
			if fmt.Sprint(evs) != fmt.Sprint(want) || len(errs) != 0 {
				t.Errorf("got %+v, %v; want %+v, no error", evs, errs, want)
			}
			if got, want := lastIDs.String(), ",5,5,5,5"; got != want {
				t.Errorf("Last-Event-ID headers = %q, want %q", got, want)
			}
			if len(causes) != 4 {
				t.Fatalf("OnReconnect causes = %v, want 4", causes)
			}
			if causes[0] != io.EOF || causes[3] != io.EOF {
				t.Errorf("causes of clean ends = %v, %v; want EOF", causes[0], causes[3])
			}
			for _, err := range causes[1:3] {
				if err == nil || err == io.EOF {
					t.Errorf("cause of a dropped connection = %v, want a network error", err)
				}
			}
		})
	}
}

func TestClientOnConnect(t *testing.T) {
	var auths syncList
	var n atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		auths.add(r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") != fmt.Sprintf("Bearer token-%d", n.Load()+1) {
			http.Error(w, "stale token", http.StatusUnauthorized)
			return
		}
		if n.Add(1) == 3 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeStream(w, fmt.Sprintf("data: %d\n\n", n.Load()))
	})
	token := 0
	c := &sse.Client{
		HTTPClient: srv.Client(),
		MinRetry:   time.Millisecond,
		OnConnect: func(req *http.Request) error {
			token++
			req.Header.Set("Authorization", fmt.Sprintf("Bearer token-%d", token))
			return nil
		},
	}
	evs, errs := collect(c.Events(t.Context(), srv.URL))
	want := []sse.Event{{Type: "message", Data: "1"}, {Type: "message", Data: "2"}}
	if fmt.Sprint(evs) != fmt.Sprint(want) || len(errs) != 0 {
		t.Errorf("got %+v, %v; want %+v, no error", evs, errs, want)
	}
	if got, want := auths.String(), "Bearer token-1,Bearer token-2,Bearer token-3"; got != want {
		t.Errorf("Authorization headers = %q, want %q", got, want)
	}
}

func TestClientOnConnectError(t *testing.T) {
	errNoToken := errors.New("no token")
	var calls atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		writeStream(w, "data: x\n\n")
	})
	attempts := 0
	c := &sse.Client{
		HTTPClient: srv.Client(),
		MinRetry:   time.Millisecond,
		OnConnect: func(*http.Request) error {
			if attempts++; attempts > 1 {
				return errNoToken
			}
			return nil
		},
	}
	evs, errs := collect(c.Events(t.Context(), srv.URL))
	if len(evs) != 1 || len(errs) != 1 || !errors.Is(errs[0], errNoToken) {
		t.Errorf("got %+v, %v; want one event, then the hook's error", evs, errs)
	}
	if calls.Load() != 1 {
		t.Errorf("server saw %d requests, want 1", calls.Load())
	}
}

func TestClientPostBody(t *testing.T) {
	var bodies syncList
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies.add(r.Method + " " + string(b))
		if bodies.len() == 3 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeStream(w, "data: ok\n\n")
	})
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{"prompt":"hi"}`))
	c := &sse.Client{HTTPClient: srv.Client(), MinRetry: time.Millisecond}
	evs, errs := collect(c.Stream(t.Context(), req))
	if len(evs) != 2 || len(errs) != 0 {
		t.Errorf("got %+v, %v; want two events, no error", evs, errs)
	}
	want := `POST {"prompt":"hi"},POST {"prompt":"hi"},POST {"prompt":"hi"}`
	if got := bodies.String(); got != want {
		t.Errorf("requests = %q, want %q", got, want)
	}
}

func TestClientBodyNotReplayable(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		writeStream(w, "data: once\n\n")
	})
	req, _ := http.NewRequest(http.MethodPost, srv.URL, io.NopCloser(strings.NewReader("body")))
	c := &sse.Client{HTTPClient: srv.Client(), MinRetry: time.Millisecond}
	evs, errs := collect(c.Stream(t.Context(), req))
	wantErr := "sse: cannot reconnect: request body cannot be sent again (GetBody is nil)"
	if len(evs) != 1 || len(errs) != 1 || errs[0].Error() != wantErr {
		t.Errorf("got %+v, %v; want one event and error %q", evs, errs, wantErr)
	}
}

func TestClientMaxEventSize(t *testing.T) {
	var calls atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		writeStream(w, "data: small\n\ndata: "+strings.Repeat("x", 1000)+"\n\n")
	})
	c := &sse.Client{HTTPClient: srv.Client(), MinRetry: time.Millisecond, MaxEventSize: 100}
	evs, errs := collect(c.Events(t.Context(), srv.URL))
	if len(evs) != 1 || evs[0].Data != "small" {
		t.Errorf("events = %+v, want just the small one", evs)
	}
	if len(errs) != 1 || !errors.Is(errs[0], sse.ErrEventTooLarge) {
		t.Errorf("errors = %v, want ErrEventTooLarge", errs)
	}
	if calls.Load() != 1 {
		t.Errorf("server saw %d requests, want 1", calls.Load())
	}
}

func TestClientBadURL(t *testing.T) {
	var c sse.Client
	evs, errs := collect(c.Events(t.Context(), "http://bad host/"))
	if len(evs) != 0 || len(errs) != 1 {
		t.Errorf("got %+v, %v; want a single error", evs, errs)
	}
}

// TestClientStopMidRead ends a subscription while it waits for the next
// event, by cancelling the context or by breaking out of the loop, and
// checks that the server sees the connection go.
func TestClientStopMidRead(t *testing.T) {
	for _, how := range []string{"cancel", "break"} {
		t.Run(how, func(t *testing.T) {
			handlerDone := make(chan struct{})
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				defer close(handlerDone)
				writeStream(w, "data: one\n\n")
				<-r.Context().Done()
			})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			c := &sse.Client{HTTPClient: srv.Client()}
			var evs []sse.Event
			var errs []error
			for ev, err := range c.Events(ctx, srv.URL) {
				if err != nil {
					errs = append(errs, err)
					continue
				}
				evs = append(evs, ev)
				if how == "break" {
					break
				}
				cancel()
			}
			<-handlerDone
			if len(evs) != 1 || evs[0].Data != "one" {
				t.Errorf("events = %+v, want one", evs)
			}
			switch how {
			case "cancel":
				if len(errs) != 1 || !errors.Is(errs[0], context.Canceled) {
					t.Errorf("errors = %v, want context.Canceled", errs)
				}
			case "break":
				if len(errs) != 0 {
					t.Errorf("errors = %v, want none", errs)
				}
			}
		})
	}
}

// pipeTransport is an in-memory http.RoundTripper for tests inside a
// synctest bubble: each request is handed to the test, which answers it.
type pipeTransport struct {
	conns chan *pipeConn
}

type pipeConn struct {
	req *http.Request
	at  time.Time
	res chan func() (*http.Response, error)
}

func newPipeTransport() *pipeTransport {
	return &pipeTransport{conns: make(chan *pipeConn)}
}

func (p *pipeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	c := &pipeConn{req: req, at: time.Now(), res: make(chan func() (*http.Response, error), 1)}
	select {
	case p.conns <- c:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case f := <-c.res:
		return f()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// open answers with an event stream and returns its writer.
func (c *pipeConn) open() *io.PipeWriter {
	return c.respond(http.StatusOK, "text/event-stream")
}

// respond answers with the status and content type, and returns the
// writer of the body.
func (c *pipeConn) respond(code int, contentType string) *io.PipeWriter {
	pr, pw := io.Pipe()
	ctx := c.req.Context()
	stop := context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })
	c.res <- func() (*http.Response, error) {
		return &http.Response{
			StatusCode: code,
			Header:     http.Header{"Content-Type": {contentType}},
			Body:       &pipeBody{pr, stop},
			Request:    c.req,
		}, nil
	}
	return pw
}

// status answers with an empty response.
func (c *pipeConn) status(code int) {
	c.res <- func() (*http.Response, error) {
		return &http.Response{StatusCode: code, Header: http.Header{}, Body: http.NoBody, Request: c.req}, nil
	}
}

func (c *pipeConn) fail(err error) {
	c.res <- func() (*http.Response, error) { return nil, err }
}

type pipeBody struct {
	*io.PipeReader
	stop func() bool
}

func (b *pipeBody) Close() error {
	b.stop()
	return b.PipeReader.Close()
}

// reconnectLog records OnReconnect calls with their time.
type reconnectLog struct {
	mu      sync.Mutex
	entries []reconnectEntry
}

type reconnectEntry struct {
	err   error
	delay time.Duration
	at    time.Time
}

func (l *reconnectLog) add(err error, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, reconnectEntry{err, d, time.Now()})
}

func (l *reconnectLog) get() []reconnectEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]reconnectEntry(nil), l.entries...)
}

// subscribe runs c.Events in the background and returns a channel of its
// results, closed when the iteration ends.
func subscribe(ctx context.Context, c *sse.Client) <-chan any {
	out := make(chan any, 100)
	go func() {
		defer close(out)
		for ev, err := range c.Events(ctx, "http://stream.test/events") {
			if err != nil {
				out <- err
			} else {
				out <- ev
			}
		}
	}()
	return out
}

func checkDelay(t *testing.T, i int, got, base time.Duration) {
	t.Helper()
	if got < base || got > base+base/5 {
		t.Errorf("reconnection %d: delay %v, want within [%v, %v]", i, got, base, base+base/5)
	}
}

var errNetwork = errors.New("test: connection refused")

func TestClientBackoff(t *testing.T) {
	tests := []struct {
		name     string
		min, max time.Duration
		want     []time.Duration // bases of the successive delays
	}{
		{"defaults", 0, 0, []time.Duration{3 * time.Second, 6 * time.Second, 12 * time.Second, 24 * time.Second, 30 * time.Second, 30 * time.Second}},
		{"custom", time.Second, 5 * time.Second, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}},
		{"max below min", 10 * time.Second, time.Second, []time.Duration{10 * time.Second, 10 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := newPipeTransport()
				var log reconnectLog
				c := &sse.Client{HTTPClient: &http.Client{Transport: tr}, MinRetry: tt.min, MaxRetry: tt.max, OnReconnect: log.add}
				results := subscribe(t.Context(), c)
				var attempts []time.Time
				for range tt.want {
					conn := <-tr.conns
					attempts = append(attempts, conn.at)
					conn.fail(errNetwork)
				}
				conn := <-tr.conns
				attempts = append(attempts, conn.at)
				conn.status(http.StatusNoContent)
				for r := range results {
					t.Errorf("unexpected result %v", r)
				}
				entries := log.get()
				if len(entries) != len(tt.want) {
					t.Fatalf("%d reconnections, want %d", len(entries), len(tt.want))
				}
				for i, e := range entries {
					if !errors.Is(e.err, errNetwork) {
						t.Errorf("reconnection %d: cause %v, want %v", i, e.err, errNetwork)
					}
					checkDelay(t, i, e.delay, tt.want[i])
					if waited := attempts[i+1].Sub(attempts[i]); waited != e.delay {
						t.Errorf("reconnection %d: waited %v, want the reported %v", i, waited, e.delay)
					}
				}
			})
		})
	}
}

// TestClientServerRetry checks that the server's retry field becomes the
// base delay, on this and later connections, and that the backoff resets
// after a healthy connection.
func TestClientServerRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newPipeTransport()
		var log reconnectLog
		c := &sse.Client{HTTPClient: &http.Client{Transport: tr}, OnReconnect: log.add}
		results := subscribe(t.Context(), c)

		w := (<-tr.conns).open() // 1: sets retry, ends
		io.WriteString(w, "retry: 500\ndata: a\n\n")
		w.Close()
		(<-tr.conns).fail(errNetwork) // 2
		(<-tr.conns).fail(errNetwork) // 3
		w = (<-tr.conns).open()       // 4: healthy for 31s, then retry 0
		io.WriteString(w, "data: b\n\n")
		time.Sleep(31 * time.Second)
		io.WriteString(w, "retry: 0\n")
		w.Close()
		(<-tr.conns).fail(errNetwork) // 5
		(<-tr.conns).fail(errNetwork) // 6
		(<-tr.conns).status(http.StatusNoContent)

		var evs []string
		for r := range results {
			ev, ok := r.(sse.Event)
			if !ok {
				t.Fatalf("unexpected result %v", r)
			}
			evs = append(evs, fmt.Sprintf("%s/%d", ev.Data, ev.Retry))
		}
		if got, want := strings.Join(evs, " "), "a/500 b/0"; got != want {
			t.Errorf("events = %q, want %q", got, want)
		}
		entries := log.get()
		// retry: 0 is raised to the default floor of 100ms.
		bases := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}
		if len(entries) != len(bases) {
			t.Fatalf("%d reconnections, want %d", len(entries), len(bases))
		}
		for i, e := range entries {
			checkDelay(t, i, e.delay, bases[i])
		}
		if entries[0].err != io.EOF || entries[3].err != io.EOF {
			t.Errorf("causes = %v, %v; want EOF", entries[0].err, entries[3].err)
		}
	})
}

func TestClientIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newPipeTransport()
		var log reconnectLog
		c := &sse.Client{
			HTTPClient:  &http.Client{Transport: tr},
			IdleTimeout: 10 * time.Second,
			MinRetry:    time.Second,
			OnReconnect: log.add,
		}
		results := subscribe(t.Context(), c)

		// 1: comments every 9s keep the stream alive, then silence.
		conn := <-tr.conns
		w := conn.open()
		io.WriteString(w, "id: 1\ndata: a\n\n")
		for range 5 {
			time.Sleep(9 * time.Second)
			io.WriteString(w, ": ping\n\n")
		}
		lastByte := time.Now()

		// 2: a server that never answers times out too.
		conn = <-tr.conns
		if got := conn.at.Sub(lastByte); got != 10*time.Second+log.get()[0].delay {
			t.Errorf("reconnected %v after the last byte, want idle timeout plus delay", got)
		}
		if got := conn.req.Header.Get("Last-Event-ID"); got != "1" {
			t.Errorf("Last-Event-ID = %q, want 1", got)
		}
		conn2at := conn.at
		conn = <-tr.conns
		if got := conn.at.Sub(conn2at); got != 10*time.Second+log.get()[1].delay {
			t.Errorf("reconnected %v after an unanswered request, want idle timeout plus delay", got)
		}
		conn.status(http.StatusNoContent)

		for r := range results {
			if ev, ok := r.(sse.Event); !ok || ev.Data != "a" {
				t.Errorf("unexpected result %v", r)
			}
		}
		entries := log.get()
		if len(entries) != 2 {
			t.Fatalf("%d reconnections, want 2", len(entries))
		}
		for i, e := range entries {
			if !errors.Is(e.err, sse.ErrIdleTimeout) {
				t.Errorf("reconnection %d: cause %v, want ErrIdleTimeout", i, e.err)
			}
		}
		if got, want := entries[0].err.Error(), "sse: idle timeout: nothing received for 10s"; got != want {
			t.Errorf("cause text = %q, want %q", got, want)
		}
	})
}

// TestClientIdleNotCountingHandler checks that time spent in the loop body
// does not count as silence.
func TestClientIdleNotCountingHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newPipeTransport()
		var log reconnectLog
		c := &sse.Client{HTTPClient: &http.Client{Transport: tr}, IdleTimeout: 10 * time.Second, OnReconnect: log.add}
		go func() {
			w := (<-tr.conns).open()
			io.WriteString(w, "data: slow\n\ndata: next\n\n")
			w.Close()
			(<-tr.conns).status(http.StatusNoContent)
		}()
		var got []string
		for ev, err := range c.Events(t.Context(), "http://stream.test/") {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ev.Data)
			time.Sleep(time.Minute) // a slow consumer
		}
		if strings.Join(got, ",") != "slow,next" {
			t.Errorf("events = %q, want slow,next", got)
		}
		entries := log.get()
		if len(entries) != 1 || entries[0].err != io.EOF {
			t.Errorf("reconnections = %+v, want one, caused by EOF", entries)
		}
	})
}

func TestClientCancelWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newPipeTransport()
		ctx, cancel := context.WithCancel(t.Context())
		c := &sse.Client{HTTPClient: &http.Client{Transport: tr}}
		results := subscribe(ctx, c)
		(<-tr.conns).fail(errNetwork)
		time.Sleep(time.Second) // within the first delay of at least 3s
		synctest.Wait()
		start := time.Now()
		cancel()
		r, ok := <-results
		if err, isErr := r.(error); !ok || !isErr || !errors.Is(err, context.Canceled) {
			t.Errorf("result = %v, want context.Canceled", r)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("took %v to stop, want no time", d)
		}
		if _, more := <-results; more {
			t.Error("results after the error")
		}
	})
}

func TestClientCancelMidStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newPipeTransport()
		ctx, cancel := context.WithCancel(t.Context())
		c := &sse.Client{HTTPClient: &http.Client{Transport: tr}}
		results := subscribe(ctx, c)
		conn := <-tr.conns
		w := conn.open()
		io.WriteString(w, "data: x\n\n")
		if r := <-results; r != (sse.Event{Type: "message", Data: "x"}) {
			t.Fatalf("result = %v, want the event", r)
		}
		cancel()
		r := <-results
		if err, ok := r.(error); !ok || !errors.Is(err, context.Canceled) {
			t.Errorf("result = %v, want context.Canceled", r)
		}
		if _, err := w.Write([]byte("data: y\n\n")); err == nil {
			t.Error("write after cancel succeeded, want the connection closed")
		}
	})
}

// A retry field may hold any number of digits: the client waits that
// long (saturating at the longest Duration), never less.
func TestClientHugeServerRetry(t *testing.T) {
	for _, retry := range []string{"9223372036854", "9223372036855", "99999999999999999999"} {
		t.Run(retry, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := newPipeTransport()
				var log reconnectLog
				ctx, cancel := context.WithCancel(t.Context())
				c := &sse.Client{HTTPClient: &http.Client{Transport: tr}, OnReconnect: log.add}
				results := subscribe(ctx, c)
				w := (<-tr.conns).open()
				io.WriteString(w, "retry: "+retry+"\ndata: a\n\n")
				w.Close()
				if r := <-results; r.(sse.Event).Data != "a" {
					t.Fatalf("first result %v, want event a", r)
				}
				time.Sleep(100 * 365 * 24 * time.Hour) // a century later: still waiting
				synctest.Wait()
				select {
				case <-tr.conns:
					t.Fatalf("reconnected within a century after retry: %s", retry)
				default:
				}
				entries := log.get()
				if len(entries) != 1 || entries[0].delay < 9223372036854*time.Millisecond {
					t.Errorf("reconnections %+v, want one with a delay of at least %v", entries, 9223372036854*time.Millisecond)
				}
				cancel()
				for r := range results {
					if !errors.Is(r.(error), context.Canceled) {
						t.Errorf("after cancel: %v, want context.Canceled", r)
					}
				}
			})
		})
	}
}

// An ID holding a control character other than tab cannot go in a header
// (net/http refuses the request): the client reconnects without the
// header rather than failing, and sends the next ID that can.
func TestClientUnsendableLastEventID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newPipeTransport()
		c := &sse.Client{HTTPClient: &http.Client{Transport: tr}}
		ctx, cancel := context.WithCancel(t.Context())
		results := subscribe(ctx, c)
		w := (<-tr.conns).open()
		io.WriteString(w, "id: a\x01b\ndata: x\n\n")
		w.Close()
		if r := <-results; r.(sse.Event).ID != "a\x01b" {
			t.Fatalf("first result %v, want the event with ID \"a\\x01b\"", r)
		}
		conn := <-tr.conns
		if got := conn.req.Header.Values("Last-Event-ID"); len(got) != 0 {
			t.Errorf("reconnection Last-Event-ID = %q, want none", got)
		}
		w = conn.open()
		io.WriteString(w, "id: a\tb\ndata: y\n\n")
		w.Close()
		<-results
		if got := (<-tr.conns).req.Header.Get("Last-Event-ID"); got != "a\tb" {
			t.Errorf("next reconnection Last-Event-ID = %q, want \"a\\tb\"", got)
		}
		cancel()
		for range results {
		}
	})
}
