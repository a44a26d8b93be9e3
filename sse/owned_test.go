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
	"strings"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// registerHandler is the guide's way of serving a hub: Upgrade, Register,
// wait for Done. It sends what it saw once Done was closed to seen.
func registerHandler(hub *sse.Hub[string], seen chan<- string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		conn, err := sse.Upgrade(w, r)
		if err != nil {
			return
		}
		if err := hub.Register(conn); err != nil {
			return
		}
		defer hub.Unregister(conn)
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
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", addr); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	// Read the head only: http.ReadResponse would wrap the body in a
	// chunked reader, and the test reads the chunks as they are.
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	var head strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the head: %v", err)
		}
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(head.String())), req)
	if err != nil {
		t.Fatal(err)
	}
	return nc, br, resp
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
			waitFor(5*time.Second, func() bool { return hub.Clients() == 1 })
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
			srv := httptest.NewServer(registerHandler(hub, seen))
			t.Cleanup(srv.Close)
			nc, br, _ := rawStream(t, srv.Listener.Addr().String())
			readExactly(t, br, "d\r\n: connected\n\n\r\n")
			waitFor(5*time.Second, func() bool { return hub.Clients() == 1 })
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
	waitFor(5*time.Second, func() bool { return hub.Clients() == 1 })
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

// waitFor polls cond every 10 ms for up to d and reports whether it held.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// discardLog is a logger for a server whose complaints a test expects.
func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }
