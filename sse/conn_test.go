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
	"testing"
	"testing/synctest"
	"time"

	"github.com/coregx/stream/sse"
)

// serve starts a server whose handler upgrades and then runs fn.
func serve(t *testing.T, http2 bool, fn func(conn *sse.Conn, r *http.Request)) *httptest.Server {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		conn, err := sse.Upgrade(w, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer conn.Close()
		fn(conn, r)
	})
	srv := httptest.NewUnstartedServer(h)
	if http2 {
		srv.EnableHTTP2 = true
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv
}

func TestUpgradeHeaders(t *testing.T) {
	for _, tt := range []struct {
		name  string
		http2 bool
		proto int
		close bool // Connection: close, which net/http turns into resp.Close
	}{
		{"http1", false, 1, true},
		{"http2", true, 2, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, tt.http2, func(conn *sse.Conn, r *http.Request) { <-conn.Done() })
			s := get(t, srv.Client(), srv.URL)
			if s.resp.ProtoMajor != tt.proto {
				t.Fatalf("proto = %d, want %d", s.resp.ProtoMajor, tt.proto)
			}
			want := map[string]string{
				"Content-Type":                "text/event-stream",
				"Cache-Control":               "no-cache",
				"X-Accel-Buffering":           "no",
				"Connection":                  "",
				"Access-Control-Allow-Origin": "*",
			}
			if s.resp.Close != tt.close {
				t.Errorf("resp.Close = %v, want %v (Connection: close)", s.resp.Close, tt.close)
			}
			for k, v := range want {
				if got := s.resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			// The opening comment arrives while the handler still waits.
			s.expect(": connected\n\n")
		})
	}
}

func TestSendWire(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("http2=%v", h2), func(t *testing.T) {
			errs := make(chan error, 10)
			srv := serve(t, h2, func(conn *sse.Conn, r *http.Request) {
				errs <- conn.Send(sse.NewEvent("Order #123 shipped").WithType("notification").WithID("notif-456"))
				errs <- conn.SendData("Hello, World!")
				errs <- conn.SendJSON(map[string]string{"name": "Alice", "status": "online"})
				errs <- conn.SendComment("keep-alive")
				errs <- conn.Send(sse.NewEvent("a\r\nb\rc\nd").WithRetry(3000))
				close(errs)
				<-conn.Done()
			})
			s := get(t, srv.Client(), srv.URL)
			s.expect(": connected\n\n" +
				"event: notification\nid: notif-456\ndata: Order #123 shipped\n\n" +
				"data: Hello, World!\n\n" +
				"data: {\"name\":\"Alice\",\"status\":\"online\"}\n\n" +
				": keep-alive\n\n" +
				"retry: 3000\ndata: a\ndata: b\ndata: c\ndata: d\n\n")
			for err := range errs {
				if err != nil {
					t.Errorf("send: %v", err)
				}
			}
		})
	}
}

func TestSendRejectsInjection(t *testing.T) {
	bad := []*sse.Event{
		sse.NewEvent("x").WithID("1\nevent: admin"),
		sse.NewEvent("x").WithID("1\r"),
		sse.NewEvent("x").WithID("a\x00"),
		sse.NewEvent("x").WithType("t\ndata: evil"),
		sse.NewEvent("x").WithType("\x00"),
		sse.NewEvent("x").WithRetry(-1),
	}
	w := newFakeWriter()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	conn, err := sse.Upgrade(w, r)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, ev := range bad {
		if err := conn.Send(ev); !errors.Is(err, sse.ErrInvalidEvent) {
			t.Errorf("Send(%+v) = %v, want ErrInvalidEvent", *ev, err)
		}
	}
	if err := conn.SendData("ok"); err != nil {
		t.Fatalf("SendData after rejected events: %v", err)
	}
	if got, want := w.Body(), ": connected\n\ndata: ok\n\n"; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
}

func TestSendJSONError(t *testing.T) {
	w := newFakeWriter()
	conn, err := sse.Upgrade(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SendJSON(make(chan int)); err == nil || !strings.HasPrefix(err.Error(), "sse: ") {
		t.Errorf("SendJSON(chan) = %v, want an sse: error", err)
	}
	if got, want := w.Body(), ": connected\n\n"; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
}

func TestUpgradeNoFlusher(t *testing.T) {
	w := &noFlushWriter{header: http.Header{}}
	conn, err := sse.Upgrade(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if !errors.Is(err, sse.ErrNoFlusher) || conn != nil {
		t.Fatalf("Upgrade = %v, %v; want nil, ErrNoFlusher", conn, err)
	}
	if w.status != 0 || w.body.Len() != 0 || len(w.header) != 0 {
		t.Errorf("Upgrade wrote status %d, body %q, headers %v; want nothing", w.status, w.body.String(), w.header)
	}
	if got, want := err.Error(), "sse: response writer does not support flushing"; got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
}

func TestUpgradeThroughMiddleware(t *testing.T) {
	var wrapped *wrapWriter
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wrapped = &wrapWriter{ResponseWriter: w}
		conn, err := sse.Upgrade(wrapped, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer conn.Close()
		conn.SendData("through middleware")
		<-conn.Done()
	}))
	t.Cleanup(srv.Close)
	s := get(t, srv.Client(), srv.URL)
	s.expect(": connected\n\ndata: through middleware\n\n")
}

func TestUpgradeOptions(t *testing.T) {
	w := newFakeWriter()
	w.Header().Set("X-Before", "kept")
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	conn, err := sse.UpgradeWithOptions(r.Context(), w, r, &sse.UpgradeOptions{
		Retry:  3 * time.Second,
		Header: http.Header{"X-Extra": {"1"}, "Content-Type": {"text/plain"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got, want := w.Writes(), []string{": connected\n\nretry: 3000\n\n"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("writes = %q, want %q", got, want)
	}
	for k, v := range map[string]string{"X-Before": "kept", "X-Extra": "1", "Content-Type": "text/event-stream"} {
		if got := w.Header().Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if w.status != http.StatusOK {
		t.Errorf("status = %d, want 200", w.status)
	}
}

func TestLastEventID(t *testing.T) {
	tests := []struct {
		name, target, header, want string
	}{
		{"none", "/", "", ""},
		{"header", "/", "evt-123", "evt-123"},
		{"query", "/?lastEventId=q-7", "", "q-7"},
		{"header wins", "/?lastEventId=q-7", "h-9", "h-9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tt.target, nil)
			if tt.header != "" {
				r.Header.Set("Last-Event-ID", tt.header)
			}
			conn, err := sse.Upgrade(newFakeWriter(), r)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if got := conn.LastEventID(); got != tt.want {
				t.Errorf("LastEventID() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCloseIdempotentAndSendAfter(t *testing.T) {
	w := newFakeWriter()
	conn, err := sse.Upgrade(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := conn.Close(); err != nil {
			t.Fatalf("Close #%d = %v, want nil", i+1, err)
		}
	}
	select {
	case <-conn.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	for name, send := range map[string]func() error{
		"Send":        func() error { return conn.Send(sse.NewEvent("x")) },
		"SendData":    func() error { return conn.SendData("x") },
		"SendJSON":    func() error { return conn.SendJSON(1) },
		"SendComment": func() error { return conn.SendComment("x") },
	} {
		if err := send(); !errors.Is(err, sse.ErrConnectionClosed) {
			t.Errorf("%s after Close = %v, want ErrConnectionClosed", name, err)
		}
	}
	if !errors.Is(conn.Err(), sse.ErrConnectionClosed) {
		t.Errorf("Err() = %v, want ErrConnectionClosed", conn.Err())
	}
	if got, want := w.Body(), ": connected\n\n"; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
}

func TestClientDisconnectClosesDone(t *testing.T) {
	result := make(chan error, 1)
	srv := serve(t, false, func(conn *sse.Conn, r *http.Request) {
		<-conn.Done()
		result <- conn.SendData("too late")
	})
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(": connected\n\n"))
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	if err := <-result; !errors.Is(err, sse.ErrConnectionClosed) {
		t.Errorf("send after disconnect = %v, want ErrConnectionClosed", err)
	}
}

func TestUpgradeWithContextEnds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		conn, err := sse.UpgradeWithContext(ctx, w, r)
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SendData("before")
		cancel()
		<-conn.Done()
	}))
	t.Cleanup(srv.Close)
	s := get(t, srv.Client(), srv.URL)
	s.expect(": connected\n\ndata: before\n\n")
	s.expectEOF()
}

func TestWriteTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newFakeWriter()
		conn, err := sse.UpgradeWithOptions(t.Context(), w, httptest.NewRequest(http.MethodGet, "/", nil),
			&sse.UpgradeOptions{WriteTimeout: 2 * time.Second, Heartbeat: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		w.setBlock() // the client stops reading
		start := time.Now()
		err = conn.SendData("stuck")
		if !errors.Is(err, sse.ErrConnectionClosed) {
			t.Fatalf("Send to a stuck client = %v, want ErrConnectionClosed", err)
		}
		if got := time.Since(start); got != 2*time.Second {
			t.Errorf("Send failed after %v, want 2s", got)
		}
		select {
		case <-conn.Done():
		default:
			t.Error("Done not closed after a timed-out write")
		}
	})
}

func TestCloseAbortsBlockedWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newFakeWriter()
		conn, err := sse.UpgradeWithOptions(t.Context(), w, httptest.NewRequest(http.MethodGet, "/", nil),
			&sse.UpgradeOptions{Heartbeat: -1})
		if err != nil {
			t.Fatal(err)
		}
		w.setBlock()
		sent := make(chan error)
		go func() { sent <- conn.SendData("stuck") }()
		synctest.Wait() // the send is now blocked in Write
		start := time.Now()
		conn.Close()
		if got := time.Since(start); got != 0 {
			t.Errorf("Close took %v, want it to cut the write short", got)
		}
		if err := <-sent; !errors.Is(err, sse.ErrConnectionClosed) {
			t.Errorf("blocked Send = %v, want ErrConnectionClosed", err)
		}
	})
}

func TestHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newFakeWriter()
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		conn, err := sse.UpgradeWithOptions(r.Context(), w, r, &sse.UpgradeOptions{Heartbeat: 15 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		time.Sleep(10 * time.Second)
		conn.SendData("at 10s")
		time.Sleep(14 * time.Second) // 24s: 14s after the last write
		synctest.Wait()
		if got, want := w.Body(), ": connected\n\ndata: at 10s\n\n"; got != want {
			t.Fatalf("at 24s body = %q, want %q", got, want)
		}
		time.Sleep(time.Second) // 25s: 15s of silence
		synctest.Wait()
		if got, want := w.Body(), ": connected\n\ndata: at 10s\n\n: keep-alive\n\n"; got != want {
			t.Fatalf("at 25s body = %q, want %q", got, want)
		}
		time.Sleep(15 * time.Second)
		synctest.Wait()
		if got, want := strings.Count(w.Body(), ": keep-alive\n\n"), 2; got != want {
			t.Fatalf("at 40s heartbeats = %d, want %d", got, want)
		}
	})
}

func TestHeartbeatDisabled(t *testing.T) {
	for _, hb := range []time.Duration{0, -1} {
		t.Run(fmt.Sprint(hb), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newFakeWriter()
				r := httptest.NewRequest(http.MethodGet, "/", nil)
				conn, err := sse.UpgradeWithOptions(r.Context(), w, r, &sse.UpgradeOptions{Heartbeat: hb})
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				time.Sleep(time.Hour)
				synctest.Wait()
				if got, want := w.Body(), ": connected\n\n"; got != want {
					t.Fatalf("body = %q, want %q", got, want)
				}
			})
		})
	}
}

// The guide keeps a stream alive by writing comments to the
// ResponseWriter itself. A Conn from Upgrade writes nothing on its own, so
// that does not race with it (run with -race: ResponseRecorder has no lock).
func TestGuideKeepAliveWritesToW(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		conn, err := sse.Upgrade(w, r)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		flusher := http.Flusher(w)
		ticker := time.NewTicker(30 * time.Second)
		defer ticker.Stop()
		for range 3 {
			select {
			case <-ticker.C:
				// Send comment
				io.WriteString(w, ": keep-alive\n\n")
				flusher.Flush()
			case <-conn.Done():
				t.Fatal("stream ended")
			}
		}
		time.Sleep(29 * time.Second)
		synctest.Wait()
		if got, want := w.Body.String(), ": connected\n\n"+strings.Repeat(": keep-alive\n\n", 3); got != want {
			t.Fatalf("after 119s: body %q, want %q", got, want)
		}
	})
}

func TestConcurrentSendsDoNotInterleave(t *testing.T) {
	const senders, each = 8, 50
	srv := serve(t, false, func(conn *sse.Conn, r *http.Request) {
		var wg sync.WaitGroup
		for g := range senders {
			wg.Go(func() {
				for i := range each {
					conn.Send(sse.NewEvent(fmt.Sprintf("g%d\nn%d", g, i)).WithID(fmt.Sprint(g)))
				}
			})
		}
		wg.Wait()
		<-conn.Done()
	})
	s := get(t, srv.Client(), srv.URL)
	s.expect(": connected\n\n")
	next := make([]int, senders)
	for range senders * each {
		block := s.block()
		var g, n int
		if _, err := fmt.Sscanf(block, "id: %d\ndata: g%d\ndata: n%d\n\n", new(int), &g, &n); err != nil {
			t.Fatalf("malformed event %q: %v", block, err)
		}
		if want := fmt.Sprintf("id: %d\ndata: g%d\ndata: n%d\n\n", g, g, n); block != want || n != next[g] {
			t.Fatalf("event = %q, want %q (n %d)", block, want, next[g])
		}
		next[g]++
	}
}

func TestDoneWaitsForWriteInProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newFakeWriter()
		w.noDL = true // nothing can cut the write short
		ctx, cancel := context.WithCancel(t.Context())
		conn, err := sse.UpgradeWithOptions(ctx, w, httptest.NewRequest(http.MethodGet, "/", nil),
			&sse.UpgradeOptions{Heartbeat: -1})
		if err != nil {
			t.Fatal(err)
		}
		release := w.setBlock()
		sent := make(chan error)
		go func() { sent <- conn.SendData("slow") }()
		synctest.Wait()
		cancel()
		synctest.Wait()
		select {
		case <-conn.Done():
			t.Fatal("Done closed while a write still used the ResponseWriter")
		default:
		}
		release()
		if err := <-sent; err != nil {
			t.Errorf("the write in progress = %v, want nil", err)
		}
		<-conn.Done()
		if err := conn.SendData("after"); !errors.Is(err, sse.ErrConnectionClosed) {
			t.Errorf("Send after the context ended = %v, want ErrConnectionClosed", err)
		}
		if got, want := w.Body(), ": connected\n\ndata: slow\n\n"; got != want {
			t.Errorf("body = %q, want %q", got, want)
		}
	})
}

// A Conn's request context ending ends the stream: Done, Err and Send
// called after it see it at once; a handler already waiting on Done is
// woken once the stream's client is next checked for, within 100 ms, and
// not before that.
func TestConnRequestContextEnds(t *testing.T) {
	for _, tc := range []string{"waiting on Done", "Done after", "Err after", "Send after"} {
		t.Run(tc, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
				w := newFakeWriter()
				conn, err := sse.Upgrade(w, r)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				returned := make(chan struct{})
				if tc == "waiting on Done" {
					go func() { <-conn.Done(); close(returned) }()
					synctest.Wait()
				}
				cancel()
				synctest.Wait() // no time passes
				switch tc {
				case "waiting on Done":
					// Done was called when the cancel came: the first
					// check is 100 ms later, not a nanosecond sooner.
					time.Sleep(100*time.Millisecond - time.Nanosecond)
					synctest.Wait()
					select {
					case <-returned:
						t.Fatal("the handler waiting on Done was woken before the check")
					default:
					}
					time.Sleep(time.Nanosecond)
					synctest.Wait()
					select {
					case <-returned:
					default:
						t.Fatal("the handler waiting on Done was not woken 100 ms after the cancel")
					}
				case "Done after":
					select {
					case <-conn.Done():
					default:
						t.Fatal("Done not closed")
					}
				case "Err after":
				case "Send after":
					if err := conn.SendData("x"); !errors.Is(err, sse.ErrConnectionClosed) {
						t.Errorf("Send = %v, want ErrConnectionClosed", err)
					}
				}
				if err := conn.Err(); !errors.Is(err, sse.ErrConnectionClosed) || !strings.Contains(err.Error(), "client went away") {
					t.Errorf("Err() = %v, want ErrConnectionClosed: client went away", err)
				}
				if got := w.Body(); got != ": connected\n\n" {
					t.Errorf("body %q, want only the opening", got)
				}
			})
		})
	}
}

// TestNilConn checks that a nil *Conn, what Upgrade returns with an
// error, behaves as an ended stream instead of panicking, for code that
// ignores the error as some of the guide's snippets do.
func TestNilConn(t *testing.T) {
	var c *sse.Conn
	select {
	case <-c.Done():
	default:
		t.Error("Done: got an open channel, want a closed one")
	}
	for name, err := range map[string]error{
		"Err":         c.Err(),
		"Send":        c.Send(sse.NewEvent("x")),
		"SendData":    c.SendData("x"),
		"SendJSON":    c.SendJSON(1),
		"SendComment": c.SendComment("x"),
	} {
		if !errors.Is(err, sse.ErrConnectionClosed) {
			t.Errorf("%s: got %v, want an error matching ErrConnectionClosed", name, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: got %v, want nil", err)
	}
	if id := c.LastEventID(); id != "" {
		t.Errorf("LastEventID: got %q, want \"\"", id)
	}
	hub := sse.NewHub[string]()
	defer hub.Close()
	if err := hub.Register(c); !errors.Is(err, sse.ErrConnectionClosed) {
		t.Errorf("Register: got %v, want an error matching ErrConnectionClosed", err)
	}
	hub.Unregister(c)
	if n := hub.Clients(); n != 0 {
		t.Errorf("Clients: got %d, want 0", n)
	}
}
