//go:build linux

package sse_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// tcpEstablished is the TCP state ESTABLISHED as Linux numbers it
// (include/net/tcp_states.h).
const tcpEstablished = 1

// TestForcedEndResets ends, in each way a server does, the stream of a
// client that stopped reading, over HTTP/1.1. Its socket is full and the
// server's holds more, so a FIN would wait behind data the client never
// reads and leave the server's side of the connection open, holding that
// data. Within a second the server's side must be gone (reset) or, for a
// stream that drained after all, have its FIN acknowledged, and the
// server's goroutines be back to what they were; the client, reading what
// it holds, then learns of the reset (or of the clean end).
//
// The client's own state is not what is checked: when the client's
// kernel had dropped the last segment sent to it (its buffer was full),
// the reset is sent after that segment's sequence and the client's
// kernel discards it, until the client reads and opens its window.
func TestForcedEndResets(t *testing.T) {
	for _, secure := range []bool{false, true} {
		for _, tc := range endCases() {
			name := tc.name
			if secure {
				name = "TLS " + name
			}
			t.Run(name, func(t *testing.T) { forcedEndResets(t, tc, secure) })
		}
	}
}

func forcedEndResets(t *testing.T, tc endCase, secure bool) {
	st := startStalled(t, tc, secure)
	c := st.c
	if state, err := sse.PeerState(c); err != nil || state != tcpEstablished {
		t.Fatalf("TCP state of the server's side before the end: got %d (%v), want %d", state, err, tcpEstablished)
	}
	tc.end(t, st.tg)
	var state byte
	var err error
	sse.WaitFor(time.Second, func() bool {
		state, err = sse.PeerState(c)
		return err != nil || state == 0 || finAcked(state)
	})
	if err != nil {
		t.Fatal(err)
	}
	if state != 0 && !finAcked(state) {
		t.Fatalf("TCP state of the server's side 1s after the end: got %d, want it gone (reset)", state)
	}
	checkIdle(t, &st.active, st.base)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, c)
	switch {
	case finAcked(state):
		// On a loaded machine the client's socket may not have been
		// full after all, and the stream drained in time (Shutdown):
		// it then ended cleanly, its FIN taken, which holds nothing.
		if err != nil {
			t.Fatalf("reading the stream that ended cleanly (%d bytes): got %v, want EOF", n, err)
		}
	case !errors.Is(err, syscall.ECONNRESET):
		t.Fatalf("reading what was left (%d bytes): got %v, want a connection reset", n, err)
	}
}

// finAcked reports whether a server's side in TCP state st has had its
// FIN acknowledged by the client (FIN_WAIT2, TIME_WAIT): it holds nothing.
func finAcked(st byte) bool { return st == 5 || st == 6 }

// TestShutdownClosedOnReturn shuts down a Hub and a Server whose one
// client reads. When Shutdown returns, the server has already written the
// end of the chunked body and sent its FIN: its side of the connection
// has left ESTABLISHED (the kernel's state, which does not wait for the
// client). A program that exits once Shutdown returned (every example
// does) would otherwise cut the response short, and its client would see
// the stream end in the middle of the chunked body. The client then
// reads the whole response, and EOF, not a reset.
func TestShutdownClosedOnReturn(t *testing.T) {
	opts := sse.Options{ShutdownRetry: time.Second, ShutdownJitter: -1, Heartbeat: -1}
	for _, tc := range []struct {
		name   string
		target func(*testing.T, sse.Options) endTarget
	}{
		{"Hub", hubTarget},
		{"Server", serverTarget},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 20 {
				tg := tc.target(t, opts)
				srv := httptest.NewServer(tg.handler)
				c, err := net.Dial("tcp", srv.Listener.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", srv.Listener.Addr()); err != nil {
					t.Fatal(err)
				}
				br := bufio.NewReader(c)
				if _, err := http.ReadResponse(br, nil); err != nil {
					t.Fatal(err)
				}
				if !sse.WaitFor(5*time.Second, func() bool { return tg.stats().Clients == 1 }) {
					t.Fatal("the client was not registered")
				}
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				err = tg.shutdown(ctx)
				cancel()
				if err != nil {
					t.Fatalf("Shutdown: got %v, want nil", err)
				}
				if state, err := sse.PeerState(c); err != nil || state == tcpEstablished {
					t.Fatalf("TCP state of the server's side when Shutdown returned: got %d (%v), want its FIN sent", state, err)
				}
				if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
					t.Fatal(err)
				}
				rest, err := io.ReadAll(br)
				if err != nil {
					t.Fatal(err)
				}
				const want = "d\r\n: connected\n\n\r\nd\r\nretry: 1000\n\n\r\n0\r\n\r\n"
				if string(rest) != want {
					t.Fatalf("stream after the headers: got %q, want %q", rest, want)
				}
				c.Close()
				srv.Close()
			}
		})
	}
}
