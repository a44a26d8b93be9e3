//go:build unix

package sse_test

import (
	"context"
	"errors"
	"io"
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

// endCase is a way for the server to end the stream of a client that
// stopped reading.
type endCase struct {
	name string
	// make returns the handler, a broadcast function, Stats, and end,
	// which ends the stream (after broadcasting when it needs to) and
	// reports when it did.
	make func(t *testing.T) (http.Handler, func(string) error, func() sse.Stats, func(t *testing.T))
}

func hubEnd(name string, opts *sse.Options, end func(t *testing.T, hub *sse.Hub[string], bcast func(t *testing.T, until func(sse.Stats) bool))) endCase {
	return endCase{name, func(t *testing.T) (http.Handler, func(string) error, func() sse.Stats, func(t *testing.T)) {
		hub := sse.NewHubWithOptions[string](opts)
		t.Cleanup(func() { hub.Close() })
		return hub, hub.Broadcast, hub.Stats, func(t *testing.T) {
			end(t, hub, func(t *testing.T, until func(sse.Stats) bool) { broadcastUntil(t, hub.Broadcast, hub.Stats, until) })
		}
	}}
}

// broadcastUntil broadcasts 1 KiB events until cond holds.
func broadcastUntil(t *testing.T, bcast func(string) error, stats func() sse.Stats, cond func(sse.Stats) bool) {
	t.Helper()
	ev := strings.Repeat("e", 1<<10)
	for i := 0; !cond(stats()); i++ {
		if i == 100000 {
			t.Fatalf("the stream did not end: %+v", stats())
		}
		if err := bcast(ev); err != nil {
			t.Fatal(err)
		}
		if i%16 == 15 {
			time.Sleep(time.Millisecond)
		}
	}
}

func endCases() []endCase {
	stall := func(t *testing.T, hub *sse.Hub[string]) {
		// Enough to fill the socket's buffers: the write blocks.
		broadcastUntil(t, hub.Broadcast, hub.Stats, func(st sse.Stats) bool { return st.StalledWrites > 0 })
	}
	return []endCase{
		hubEnd("slow", &sse.Options{QueueSize: 8}, func(t *testing.T, _ *sse.Hub[string], bcast func(*testing.T, func(sse.Stats) bool)) {
			bcast(t, func(st sse.Stats) bool { return st.SlowDisconnects == 1 })
		}),
		hubEnd("over budget", &sse.Options{MaxQueuedBytes: 64 << 10}, func(t *testing.T, _ *sse.Hub[string], bcast func(*testing.T, func(sse.Stats) bool)) {
			bcast(t, func(st sse.Stats) bool { return st.BudgetDisconnects == 1 })
		}),
		hubEnd("Close", nil, func(t *testing.T, hub *sse.Hub[string], _ func(*testing.T, func(sse.Stats) bool)) {
			stall(t, hub)
			if err := hub.Close(); err != nil {
				t.Fatal(err)
			}
		}),
		hubEnd("Shutdown", nil, func(t *testing.T, hub *sse.Hub[string], _ func(*testing.T, func(sse.Stats) bool)) {
			stall(t, hub)
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			// A stream that drains in time ends with nil (an HTTP/2
			// client buffers a window's worth); one that does not, with
			// the context's error.
			if err := hub.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Shutdown: got %v, want nil or %v", err, context.DeadlineExceeded)
			}
		}),
		{"Server.Close", func(t *testing.T) (http.Handler, func(string) error, func() sse.Stats, func(t *testing.T)) {
			s := &sse.Server{}
			t.Cleanup(func() { s.Close() })
			publish := func(data string) error {
				_, err := s.Publish(context.Background(), "", sse.NewEvent(data))
				return err
			}
			return s, publish, s.Stats, func(t *testing.T) {
				broadcastUntil(t, publish, s.Stats, func(st sse.Stats) bool { return st.StalledWrites > 0 })
				s.Close()
			}
		}},
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
			h, _, stats, end := tc.make(t)
			var active atomic.Int64
			srv := newSmallBufferServer(countHandler(h, &active))
			t.Cleanup(srv.Close)
			base := runtime.NumGoroutine()
			c := dialStalled(t, srv.Listener.Addr().String())
			if !waitFor(5*time.Second, func() bool { return stats().Clients == 1 }) {
				t.Fatal("the client was not registered")
			}
			end(t)
			ended := time.Now()
			if err := c.SetReadDeadline(ended.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, c)
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("reading what was left (%d bytes): got %v, want the connection to end within 1s", n, err)
			}
			if !waitFor(time.Second, func() bool { return active.Load() == 0 && runtime.NumGoroutine() <= base }) {
				buf := make([]byte, 1<<20)
				t.Fatalf("1s after the end: %d handlers running, %d goroutines, want 0 and at most %d\n%s",
					active.Load(), runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
			}
		})
	}
}

// TestEndedMeansClosedHTTP2 ends the stream of an HTTP/2 client that
// stopped reading: within a second the stream is reset (the client's read
// fails) and the handler has returned.
func TestEndedMeansClosedHTTP2(t *testing.T) {
	for _, tc := range endCases() {
		t.Run(tc.name, func(t *testing.T) {
			h, _, stats, end := tc.make(t)
			var active atomic.Int64
			srv := httptest.NewUnstartedServer(countHandler(h, &active))
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
			if !waitFor(5*time.Second, func() bool { return stats().Clients == 1 }) {
				t.Fatal("the client was not registered")
			}
			end(t)
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
			if !waitFor(time.Second, func() bool { return active.Load() == 0 }) {
				t.Fatalf("1s after the end: %d handlers running, want 0", active.Load())
			}
		})
	}
}
