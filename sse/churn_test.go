package sse_test

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// heavyWriter is a ResponseWriter holding buffers the size of net/http's,
// so that a stream kept after it closed shows in the heap.
type heavyWriter struct {
	header http.Header
	buf    [8 << 10]byte
}

func (w *heavyWriter) Header() http.Header         { return w.header }
func (w *heavyWriter) WriteHeader(int)             {}
func (w *heavyWriter) Write(p []byte) (int, error) { return copy(w.buf[:], p), nil }
func (w *heavyWriter) Flush()                      {}

// TestChurnLeavesNothing opens and closes 50 000 streams through a Hub
// with heartbeats on: right after, the live heap is within 16 MiB of what
// it was before (each stream holds 8 KiB, 400 MiB in all, were any kept
// until its heartbeat came due) and no goroutine is left.
func TestChurnLeavesNothing(t *testing.T) {
	const streams = 50000
	hub := sse.NewHub[string]()
	t.Cleanup(func() { hub.Close() })
	goroutines := runtime.NumGoroutine()
	before := liveHeap()
	for i := range streams {
		w := &heavyWriter{header: http.Header{}}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		conn, err := sse.Upgrade(w, r)
		if err != nil {
			t.Fatal(err)
		}
		if err := hub.Register(conn); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			hub.Unregister(conn)
		}
		conn.Close()
	}
	if got := hub.Clients(); got != 0 {
		t.Fatalf("Clients: got %d, want 0", got)
	}
	after := liveHeap()
	if grown := int64(after) - int64(before); grown > 16<<20 {
		t.Errorf("live heap: grew by %d KiB, want at most 16 MiB", grown>>10)
	}
	if !sse.WaitFor(time.Second, func() bool { return runtime.NumGoroutine() <= goroutines }) {
		t.Errorf("goroutines: got %d, want at most %d", runtime.NumGoroutine(), goroutines)
	}
}
