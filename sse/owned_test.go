package sse_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// registerHandler is the guide's way of serving a hub: Upgrade, Register,
// wait for Done. It sends what it saw once Done was closed to seen.
func registerHandler(hub *sse.Hub[string], seen chan<- string) http.HandlerFunc {
	return registerHandlerReady(hub, seen, nil)
}

// registerHandlerReady is registerHandler that also sends on ready, when
// not nil, once Register returned (and so the hub took the connection).
func registerHandlerReady(hub *sse.Hub[string], seen chan<- string, ready chan<- struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		conn, err := sse.Upgrade(w, r)
		if err != nil {
			return
		}
		if err := hub.Register(conn); err != nil {
			return
		}
		defer hub.Unregister(conn)
		if ready != nil {
			ready <- struct{}{}
		}
		<-conn.Done()
		if seen != nil {
			seen <- fmt.Sprintf("request context: %v; conn: %v", r.Context().Err(), conn.Err())
		}
	}
}

// rawStream sends a GET over a plain TCP connection and returns the
// reader positioned at the start of the body, with the response.
func rawStream(t *testing.T, addr string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	return rawStreamThen(t, addr, "")
}

// rawStreamThen is rawStream with after sent right behind the request, in
// the same write.
func rawStreamThen(t *testing.T, addr, after string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n%s", addr, after); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	// Read the head only: http.ReadResponse would wrap the body in a
	// chunked reader, and the test reads the chunks as they are.
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	head := readHead(t, br)
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(head)), req)
	if err != nil {
		t.Fatal(err)
	}
	return nc, br, resp
}

// readHead reads a response head from br, up to the empty line, and
// returns it.
func readHead(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	var head strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the head: %v", err)
		}
		head.WriteString(line)
		if line == "\r\n" {
			return head.String()
		}
	}
}

// readExactly reads len(want) bytes from br and compares them with want.
func readExactly(t *testing.T, br *bufio.Reader, want string) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatalf("reading %q: got %q, %v", want, got, err)
	}
	if string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestTakeoverWire checks the bytes on the wire of a stream whose
// connection the hub took over: the chunked body goes on where net/http
// left it, and a closed hub ends it with the last chunk, then closes the
// connection.
func TestTakeoverWire(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler func(*sse.Hub[string]) http.Handler
	}{
		{"Register", func(h *sse.Hub[string]) http.Handler { return registerHandler(h, nil) }},
		{"ServeHTTP", func(h *sse.Hub[string]) http.Handler { return h }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := sse.NewHub[string]()
			srv := httptest.NewServer(tc.handler(hub))
			t.Cleanup(srv.Close)
			t.Cleanup(func() { hub.Close() })
			_, br, resp := rawStream(t, srv.Listener.Addr().String())
			got := fmt.Sprintf("%d %v %s close=%v", resp.StatusCode, resp.TransferEncoding, resp.Header.Get("Content-Type"), resp.Close)
			if want := "200 [chunked] text/event-stream close=true"; got != want {
				t.Fatalf("head: got %s, want %s", got, want)
			}
			readExactly(t, br, "d\r\n: connected\n\n\r\n")
			sse.WaitFor(5*time.Second, func() bool { return hub.Clients() == 1 })
			if err := hub.Broadcast("hi"); err != nil {
				t.Fatal(err)
			}
			readExactly(t, br, "a\r\ndata: hi\n\n\r\n")
			if err := hub.Broadcast(strings.Repeat("x", 300)); err != nil {
				t.Fatal(err)
			}
			readExactly(t, br, "134\r\ndata: "+strings.Repeat("x", 300)+"\n\n\r\n")
			hub.Close()
			readExactly(t, br, "0\r\n\r\n")
			if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Fatalf("after the last chunk: got %d bytes, %v; want io.EOF", n, err)
			}
		})
	}
}

// TestTakeoverClientGone checks that a client leaving a taken stream is
// noticed from its connection: Done is closed while the request's context
// is still live (it ends when the handler returns). With
// KeepResponseWriter, the stream stays on net/http, which ends the
// request's context first.
func TestTakeoverClientGone(t *testing.T) {
	for _, tc := range []struct {
		name string
		keep bool
		want string
	}{
		{"taken", false, "request context: <nil>; conn: sse: connection closed: client went away"},
		{"KeepResponseWriter", true, "request context: context canceled; conn: sse: connection closed: client went away"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := sse.NewHubWithOptions[string](&sse.Options{KeepResponseWriter: tc.keep})
			t.Cleanup(func() { hub.Close() })
			seen := make(chan string, 1)
			ready := make(chan struct{}, 1)
			srv := httptest.NewServer(registerHandlerReady(hub, seen, ready))
			t.Cleanup(srv.Close)
			nc, br, _ := rawStream(t, srv.Listener.Addr().String())
			readExactly(t, br, "d\r\n: connected\n\n\r\n")
			<-ready // taken over: net/http no longer reads the connection
			nc.Close()
			select {
			case got := <-seen:
				if got != tc.want {
					t.Errorf("got %q, want %q", got, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the stream did not end after its client left")
			}
		})
	}
}

// TestTakeoverUnregisteredEndsWithHandler checks that a taken stream that
// leaves its hub ends when its handler returns, as one on net/http does:
// nothing else would close its connection.
func TestTakeoverUnregisteredEndsWithHandler(t *testing.T) {
	hub := sse.NewHub[string]()
	t.Cleanup(func() { hub.Close() })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := sse.Upgrade(w, r)
		if err != nil {
			return
		}
		if err := hub.Register(conn); err != nil {
			return
		}
		hub.Unregister(conn)
		_ = conn.SendData("alone")
	}))
	t.Cleanup(srv.Close)
	_, br, _ := rawStream(t, srv.Listener.Addr().String())
	readExactly(t, br, "d\r\n: connected\n\n\r\n"+"d\r\ndata: alone\n\n\r\n"+"0\r\n\r\n")
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the last chunk: got %d bytes, %v; want io.EOF", n, err)
	}
}

// TestTakeoverHandlerWrites checks what a handler that writes its
// ResponseWriter after Register gets: http.ErrHijacked, and the stream
// goes on.
func TestTakeoverHandlerWrites(t *testing.T) {
	hub := sse.NewHub[string]()
	t.Cleanup(func() { hub.Close() })
	got := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := sse.Upgrade(w, r)
		if err != nil {
			return
		}
		if err := hub.Register(conn); err != nil {
			return
		}
		defer hub.Unregister(conn)
		_, err = io.WriteString(w, ": mine\n\n")
		got <- err
		<-conn.Done()
	}))
	t.Cleanup(srv.Close)
	srv.Config.ErrorLog = discardLog()
	_, br, _ := rawStream(t, srv.Listener.Addr().String())
	readExactly(t, br, "d\r\n: connected\n\n\r\n")
	if err := <-got; !errors.Is(err, http.ErrHijacked) {
		t.Fatalf("write after Register: got %v, want http.ErrHijacked", err)
	}
	if err := hub.Broadcast("on"); err != nil {
		t.Fatal(err)
	}
	readExactly(t, br, "a\r\ndata: on\n\n\r\n")
}

// TestTakeoverTLS checks a taken stream over TLS (HTTP/1.1): exact events,
// and a clean end when the hub closes.
func TestTakeoverTLS(t *testing.T) {
	hub := sse.NewHub[string]()
	srv := httptest.NewTLSServer(registerHandler(hub, nil))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { hub.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 1 {
		t.Fatalf("protocol: got %s, want HTTP/1.1", resp.Proto)
	}
	br := bufio.NewReader(resp.Body)
	readExactly(t, br, ": connected\n\n")
	sse.WaitFor(5*time.Second, func() bool { return hub.Clients() == 1 })
	for _, s := range []string{"one", strings.Repeat("y", 70<<10)} {
		if err := hub.Broadcast(s); err != nil {
			t.Fatal(err)
		}
		readExactly(t, br, "data: "+s+"\n\n")
	}
	hub.Close()
	rest, err := io.ReadAll(br)
	if len(rest) != 0 || err != nil {
		t.Fatalf("after Close: got %q, %v; want a clean end", rest, err)
	}
}

// discardLog is a logger for a server whose complaints a test expects.
func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }

// endRecord collects the calls of an OnStreamEnd hook.
type endRecord struct {
	mu    sync.Mutex
	calls []string
	ch    chan struct{}
}

func newEndRecord() *endRecord { return &endRecord{ch: make(chan struct{}, 16)} }

func (e *endRecord) hook(r *http.Request, err error) {
	e.mu.Lock()
	e.calls = append(e.calls, fmt.Sprintf("%s %v", r.URL.Path, err))
	e.mu.Unlock()
	e.ch <- struct{}{}
}

func (e *endRecord) wait(t *testing.T) []string {
	t.Helper()
	select {
	case <-e.ch:
	case <-time.After(10 * time.Second):
		t.Fatal("OnStreamEnd was not called")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.calls)
}

// TestDetach checks Options.Detach on a Hub and a Server: ServeHTTP
// returns once the stream is open, the stream goes on with exact bytes,
// and OnStreamEnd is called once when the client leaves.
func TestDetach(t *testing.T) {
	for _, kind := range []string{"Hub", "Server"} {
		t.Run(kind, func(t *testing.T) {
			rec := newEndRecord()
			opts := sse.Options{Detach: true, OnStreamEnd: rec.hook}
			var h http.Handler
			var publish func(string) error
			var clients func() int
			switch kind {
			case "Hub":
				hub := sse.NewHubWithOptions[string](&opts)
				t.Cleanup(func() { hub.Close() })
				h, publish, clients = hub, hub.Broadcast, hub.Clients
			default:
				s := &sse.Server{Options: opts}
				t.Cleanup(func() { s.Close() })
				h, clients = s, s.Clients
				publish = func(d string) error {
					_, err := s.Publish(context.Background(), "", sse.NewEvent(d))
					return err
				}
			}
			returned := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h.ServeHTTP(w, r)
				close(returned)
			}))
			t.Cleanup(srv.Close)
			nc, br, _ := rawStream(t, srv.Listener.Addr().String())
			readExactly(t, br, "d\r\n: connected\n\n\r\n")
			select {
			case <-returned:
			case <-time.After(10 * time.Second):
				t.Fatal("ServeHTTP did not return with the stream open")
			}
			if got := clients(); got != 1 {
				t.Fatalf("Clients after ServeHTTP returned: got %d, want 1", got)
			}
			if err := publish("after"); err != nil {
				t.Fatal(err)
			}
			want := "d\r\ndata: after\n\n\r\n"
			if kind == "Server" {
				want = "13\r\nid: 1\ndata: after\n\n\r\n"
			}
			readExactly(t, br, want)
			nc.Close()
			if got, want := rec.wait(t), []string{"/ sse: connection closed: client went away"}; !slices.Equal(got, want) {
				t.Errorf("OnStreamEnd: got %q, want %q", got, want)
			}
			if !sse.WaitFor(5*time.Second, func() bool { return clients() == 0 }) {
				t.Errorf("Clients after the client left: got %d, want 0", clients())
			}
		})
	}
}

// TestDetachDeadline checks that a detached stream still ends at its
// request context's deadline, which a middleware set.
func TestDetachDeadline(t *testing.T) {
	rec := newEndRecord()
	s := &sse.Server{Options: sse.Options{Detach: true, OnStreamEnd: rec.hook}}
	t.Cleanup(func() { s.Close() })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 300*time.Millisecond)
		defer cancel() // the stream outlives this cancellation, not the deadline
		s.ServeHTTP(w, r.WithContext(ctx))
	}))
	t.Cleanup(srv.Close)
	_, br, _ := rawStream(t, srv.Listener.Addr().String())
	readExactly(t, br, "d\r\n: connected\n\n\r\n")
	if got, want := rec.wait(t), []string{"/ sse: connection closed: context deadline exceeded"}; !slices.Equal(got, want) {
		t.Errorf("OnStreamEnd: got %q, want %q", got, want)
	}
	readExactly(t, br, "0\r\n\r\n")
}

// TestOnStreamEnd checks the hook where no stream is detached: after a
// stream served to its end (KeepResponseWriter, where Detach does not
// apply), and for a request refused.
func TestOnStreamEnd(t *testing.T) {
	rec := newEndRecord()
	s := &sse.Server{Options: sse.Options{Detach: true, KeepResponseWriter: true, OnStreamEnd: rec.hook}}
	returned := make(chan struct{}, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ServeHTTP(w, r)
		returned <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	_, br, _ := rawStream(t, srv.Listener.Addr().String())
	readExactly(t, br, "d\r\n: connected\n\n\r\n")
	select {
	case <-returned:
		t.Fatal("ServeHTTP returned with its stream open on net/http")
	case <-time.After(100 * time.Millisecond):
	}
	s.Close()
	if got, want := rec.wait(t), []string{"/ sse: connection closed: server shutting down"}; !slices.Equal(got, want) {
		t.Errorf("OnStreamEnd after Close: got %q, want %q", got, want)
	}
	<-returned
	resp, err := srv.Client().Get(srv.URL + "/again")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := rec.wait(t), []string{"/ sse: connection closed: server shutting down", "/again sse: server closed"}; !slices.Equal(got, want) {
		t.Errorf("OnStreamEnd after a refused request: got %q, want %q", got, want)
	}
}
