//go:build unix

package sse_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// endTarget is a Hub or a Server whose streams a test ends.
type endTarget struct {
	handler  http.Handler
	publish  func(data string) error
	stats    func() sse.Stats
	close    func() error
	shutdown func(context.Context) error
}

func hubTarget(t *testing.T, opts sse.Options) endTarget {
	hub := sse.NewHubWithOptions[string](&opts)
	t.Cleanup(func() { hub.Close() })
	return endTarget{hub, hub.Broadcast, hub.Stats, hub.Close, hub.Shutdown}
}

func serverTarget(t *testing.T, opts sse.Options) endTarget {
	s := &sse.Server{Options: opts}
	t.Cleanup(func() { s.Close() })
	publish := func(data string) error {
		_, err := s.Publish(context.Background(), "", sse.NewEvent(data))
		return err
	}
	return endTarget{s, publish, s.Stats, s.Close, s.Shutdown}
}

// endCase is a way for the server to end the stream of a client that
// stopped reading, once a write to it blocked.
type endCase struct {
	name   string
	target func(t *testing.T) endTarget
	stall  func(t *testing.T, tg endTarget) // stallClient or stallBatch
	end    func(t *testing.T, tg endTarget)
}

// endCases returns the ways a Hub and a Server end a stalled stream: too
// slow, over the queued bytes budget, Close, and Shutdown that runs out
// of time, while a write of one event is blocked, and Close and Shutdown
// while a write of many is.
func endCases() []endCase {
	var cases []endCase
	for _, kind := range []struct {
		name string
		make func(*testing.T, sse.Options) endTarget
	}{{"Hub", hubTarget}, {"Server", serverTarget}} {
		add := func(name string, opts sse.Options, end func(t *testing.T, tg endTarget)) {
			target := func(t *testing.T) endTarget { return kind.make(t, opts) }
			cases = append(cases, endCase{kind.name + " " + name, target, stallClient, end})
			if name == "Close" || name == "Shutdown" {
				cases = append(cases, endCase{kind.name + " " + name + " batch", target, stallBatch, end})
			}
		}
		add("slow", sse.Options{QueueSize: 8}, func(t *testing.T, tg endTarget) {
			broadcastUntil(t, tg, func(st sse.Stats) bool { return st.SlowDisconnects == 1 })
		})
		add("over budget", sse.Options{MaxQueuedBytes: 64 << 10}, func(t *testing.T, tg endTarget) {
			broadcastUntil(t, tg, func(st sse.Stats) bool { return st.BudgetDisconnects == 1 })
		})
		add("Close", sse.Options{}, func(t *testing.T, tg endTarget) {
			if err := tg.close(); err != nil {
				t.Fatal(err)
			}
		})
		add("Shutdown", sse.Options{}, func(t *testing.T, tg endTarget) {
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			// A stream that drains in time ends with nil (an HTTP/2
			// client buffers a window's worth); one that does not, with
			// the context's error.
			if err := tg.shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Shutdown: got %v, want nil or %v", err, context.DeadlineExceeded)
			}
		})
	}
	return cases
}

// event1K is the data of the events the tests broadcast.
var event1K = strings.Repeat("e", 1<<10)

// stallClient broadcasts events one at a time, each once the one before
// was written, until a write blocks: the client's socket is full, and the
// write blocked on it is one event.
func stallClient(t *testing.T, tg endTarget) {
	t.Helper()
	for i := 0; tg.stats().StalledWrites == 0; i++ {
		if i == 10000 {
			t.Fatalf("no write blocked: %+v", tg.stats())
		}
		before := tg.stats().Delivered
		if err := tg.publish(event1K); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Second)
		for st := tg.stats(); st.Delivered == before && st.StalledWrites == 0; st = tg.stats() {
			if time.Now().After(deadline) {
				t.Fatalf("the event was neither written nor stalled: %+v", st)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// stallBatch broadcasts events in bursts until a write blocks: the write
// blocked holds many events, more than fit in net/http's buffers.
func stallBatch(t *testing.T, tg endTarget) {
	t.Helper()
	broadcastUntil(t, tg, func(st sse.Stats) bool { return st.StalledWrites > 0 })
}

// broadcastUntil broadcasts events until cond holds.
func broadcastUntil(t *testing.T, tg endTarget, cond func(sse.Stats) bool) {
	t.Helper()
	for i := 0; !cond(tg.stats()); i++ {
		if i == 100000 {
			t.Fatalf("the stream did not end: %+v", tg.stats())
		}
		if err := tg.publish(event1K); err != nil {
			t.Fatal(err)
		}
		if i%16 == 15 {
			time.Sleep(time.Millisecond)
		}
	}
}

// countHandler counts the requests h is serving.
func countHandler(h http.Handler, active *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		active.Add(1)
		defer active.Add(-1)
		h.ServeHTTP(w, r)
	})
}

// TestEndedMeansClosed ends the stream of a client that stopped reading,
// in each way a server does, over HTTP/1.1: within a second the client
// sees its connection end (after what was still buffered) and the
// server's goroutines are back to what they were before the client came.
func TestEndedMeansClosed(t *testing.T) {
	for _, tc := range endCases() {
		t.Run(tc.name, func(t *testing.T) {
			st := startStalled(t, tc, false)
			tc.end(t, st.tg)
			ended := time.Now()
			if err := st.c.SetReadDeadline(ended.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, st.c)
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("reading what was left (%d bytes): got %v, want the connection to end within 1s", n, err)
			}
			checkIdle(t, &st.active, st.base)
		})
	}
}

// stalledStream is a stream to a client that stopped reading.
type stalledStream struct {
	tg     endTarget
	c      net.Conn     // the client's side
	active atomic.Int64 // handlers running
	base   int          // goroutines before the client came
}

// startStalled serves tc's target over HTTP/1.1 (with small send
// buffers), over TLS when secure is set, to a client that never reads,
// and stalls it (see endCase.stall). The client's side is its TCP
// connection.
func startStalled(t *testing.T, tc endCase, secure bool) *stalledStream {
	t.Helper()
	st := &stalledStream{tg: tc.target(t)}
	var srv *httptest.Server
	if secure {
		srv = httptest.NewUnstartedServer(countHandler(st.tg.handler, &st.active))
		srv.Listener = smallBufferListener{srv.Listener}
		srv.StartTLS() // HTTP/1.1 only: EnableHTTP2 is not set
	} else {
		srv = newSmallBufferServer(countHandler(st.tg.handler, &st.active))
	}
	t.Cleanup(srv.Close)
	st.base = runtime.NumGoroutine()
	addr := srv.Listener.Addr().String()
	if secure {
		st.c = dialSmallBuffer(t, addr)
		conf := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
		conf.ServerName = "127.0.0.1"
		tc := tls.Client(st.c, conf)
		if err := tc.HandshakeContext(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", addr); err != nil {
			t.Fatal(err)
		}
	} else {
		st.c = dialStalled(t, addr)
	}
	if !sse.WaitFor(5*time.Second, func() bool { return st.tg.stats().Clients == 1 }) {
		t.Fatal("the client was not registered")
	}
	tc.stall(t, st.tg)
	return st
}

// checkIdle waits up to a second for the handlers counted in active to
// return and the goroutines to be back to base.
func checkIdle(t *testing.T, active *atomic.Int64, base int) {
	t.Helper()
	if !sse.WaitFor(time.Second, func() bool { return active.Load() == 0 && runtime.NumGoroutine() <= base }) {
		buf := make([]byte, 1<<20)
		t.Fatalf("1s after the end: %d handlers running, %d goroutines, want 0 and at most %d\n%s",
			active.Load(), runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
	}
}

// TestShutdownEndsGracefully shuts down a Hub and a Server with a client
// that reads: the stream must end as a complete response (the end of the
// chunked body, then the connection's close), after the event queued
// before Shutdown and the retry hint, and not be reset as the stream of a
// client that stopped reading is.
func TestShutdownEndsGracefully(t *testing.T) {
	opts := sse.Options{ShutdownRetry: 2 * time.Second, ShutdownJitter: -1, Heartbeat: -1}
	for _, tc := range []struct {
		name   string
		target func(*testing.T, sse.Options) endTarget
		want   string
	}{
		{"Hub", hubTarget, ": connected\n\ndata: a\n\nretry: 2000\n\n"},
		{"Server", serverTarget, ": connected\n\nid: 1\ndata: a\n\nretry: 2000\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := tc.target(t, opts)
			var active atomic.Int64
			srv := httptest.NewServer(countHandler(tg.handler, &active))
			t.Cleanup(srv.Close)
			base := runtime.NumGoroutine()
			c, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", srv.Listener.Addr()); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !sse.WaitFor(5*time.Second, func() bool { return tg.stats().Clients == 1 }) {
				t.Fatal("the client was not registered")
			}
			if err := tg.publish("a"); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if err := tg.shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: got %v, want nil", err)
			}
			if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("reading the stream (%q so far): got %v, want its complete end", body, err)
			}
			if string(body) != tc.want {
				t.Fatalf("stream: got %q, want %q", body, tc.want)
			}
			if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Fatalf("after the response: got %d bytes, %v, want the connection closed (EOF)", n, err)
			}
			checkIdle(t, &active, base)
		})
	}
}

// TestEndedMeansClosedHTTP2 ends the stream of an HTTP/2 client that
// stopped reading: within a second the stream is reset (the client's read
// fails) and the handler has returned.
func TestEndedMeansClosedHTTP2(t *testing.T) {
	for _, tc := range endCases() {
		t.Run(tc.name, func(t *testing.T) {
			tg := tc.target(t)
			var active atomic.Int64
			srv := httptest.NewUnstartedServer(countHandler(tg.handler, &active))
			srv.EnableHTTP2 = true
			srv.StartTLS()
			t.Cleanup(srv.Close)
			resp, err := srv.Client().Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Fatalf("proto: got %d, want 2", resp.ProtoMajor)
			}
			if !sse.WaitFor(5*time.Second, func() bool { return tg.stats().Clients == 1 }) {
				t.Fatal("the client was not registered")
			}
			tc.stall(t, tg)
			tc.end(t, tg)
			read := make(chan error, 1)
			go func() {
				_, err := io.Copy(io.Discard, resp.Body)
				read <- err
			}()
			select {
			case <-read:
			case <-time.After(time.Second):
				resp.Body.Close()
				<-read
				t.Fatal("the stream did not end within 1s")
			}
			if !sse.WaitFor(time.Second, func() bool { return active.Load() == 0 }) {
				t.Fatalf("1s after the end: %d handlers running, want 0", active.Load())
			}
		})
	}
}
