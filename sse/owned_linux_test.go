package sse_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// TestTakeoverSendBuffer checks the send buffer of a taken connection:
// SendBuffer, 16 KiB by default, which Linux doubles.
func TestTakeoverSendBuffer(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts sse.Options
		want int // SO_SNDBUF; 0: the connection is not taken
	}{
		{"default", sse.Options{}, 2 * 16 << 10},
		{"64 KiB", sse.Options{SendBuffer: 64 << 10}, 2 * 64 << 10},
		{"KeepResponseWriter", sse.Options{KeepResponseWriter: true}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := sse.NewHubWithOptions[string](&tc.opts)
			t.Cleanup(func() { hub.Close() })
			var mu sync.Mutex
			var taken *net.TCPConn
			ready := make(chan struct{}, 1)
			srv := httptest.NewUnstartedServer(registerHandlerReady(hub, nil, ready))
			srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
				if s == http.StateHijacked {
					mu.Lock()
					taken = c.(*net.TCPConn)
					mu.Unlock()
				}
			}
			srv.Start()
			t.Cleanup(srv.Close)
			_, br, _ := rawStream(t, srv.Listener.Addr().String())
			readExactly(t, br, "d\r\n: connected\n\n\r\n")
			<-ready
			// Register took the connection over before it returned, so
			// before this event was written.
			if err := hub.Broadcast("x"); err != nil {
				t.Fatal(err)
			}
			readExactly(t, br, "9\r\ndata: x\n\n\r\n")
			mu.Lock()
			defer mu.Unlock()
			if tc.want == 0 {
				if taken != nil {
					t.Fatal("the connection was taken over; want it left to net/http")
				}
				return
			}
			if taken == nil {
				t.Fatal("the connection was not taken over")
			}
			rc, err := taken.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var got int
			var gerr error
			if err := rc.Control(func(fd uintptr) {
				got, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
			}); err != nil || gerr != nil {
				t.Fatal(err, gerr)
			}
			if got != tc.want {
				t.Errorf("SO_SNDBUF: got %d, want %d", got, tc.want)
			}
		})
	}
}

// TestTakeoverQueuedBatches checks what a client that stopped reading gets
// once it reads again: every event queued meanwhile, exactly, in chunks
// that each end on an event, hold at most 64 KiB (or one larger event)
// and at most 1022 events (one writev), written from the queue itself.
func TestTakeoverQueuedBatches(t *testing.T) {
	hub := sse.NewHubWithOptions[string](&sse.Options{QueueSize: 8192, Heartbeat: -1})
	t.Cleanup(func() { hub.Close() })
	ready := make(chan struct{}, 1)
	srv := httptest.NewServer(registerHandlerReady(hub, nil, ready))
	t.Cleanup(srv.Close)
	nc := dialSmallBuffer(t, srv.Listener.Addr().String())
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-ready
	// Nothing is read until everything is broadcast: the first event
	// fills both socket buffers, and the rest queue behind it.
	var events []string
	big := strings.Repeat("b", 70<<10)
	events = append(events, strings.Repeat("f", 256<<10))
	for i := range 5000 {
		switch i {
		case 1000, 1001, 3000:
			events = append(events, big)
		default:
			events = append(events, strconv.Itoa(i))
		}
	}
	var want bytes.Buffer
	want.WriteString(": connected\n\n")
	for _, e := range events {
		if err := hub.Broadcast(e); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&want, "data: %s\n\n", e)
	}

	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("got status %d, transfer encoding %v; want 200, chunked", resp.StatusCode, resp.TransferEncoding)
	}
	// Read the chunks by hand, to see where each ends.
	var body bytes.Buffer
	var chunks []string
	for body.Len() < want.Len() {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d bytes of body: %v", body.Len(), err)
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(line, "\r\n"), 16, 32)
		if err != nil || n == 0 {
			t.Fatalf("chunk header %q after %d bytes of body", line, body.Len())
		}
		chunk := make([]byte, n+2)
		if _, err := io.ReadFull(br, chunk); err != nil {
			t.Fatal(err)
		}
		if string(chunk[n:]) != "\r\n" {
			t.Fatalf("chunk of %d bytes ends with %q, want CRLF", n, chunk[n:])
		}
		chunks = append(chunks, string(chunk[:n]))
		body.Write(chunk[:n])
	}
	if body.String() != want.String() {
		t.Fatalf("body: got %d bytes, want %d; they differ from byte %d", body.Len(), want.Len(), commonPrefix(body.String(), want.String()))
	}
	for i, c := range chunks {
		n := strings.Count(c, "\n\n")
		if !strings.HasSuffix(c, "\n\n") {
			t.Errorf("chunk %d (%d bytes) does not end on an event", i, len(c))
		}
		if len(c) > 64<<10 && n != 1 {
			t.Errorf("chunk %d: %d bytes in %d events; want at most 64 KiB, or one event", i, len(c), n)
		}
		if n > 1022 {
			t.Errorf("chunk %d: %d events; want at most 1022", i, n)
		}
	}
	if len(chunks) < 6 {
		t.Errorf("%d chunks; want the queue written in several", len(chunks))
	}
}

// commonPrefix returns the length of the common prefix of a and b.
func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
