package fanout

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// The engine serves any Sink, not only the sse package's Conn: these
// tests drive it with test sinks alone.

// stallKinds are the sinks whose stalled writes block, and those whose
// stalled writes are suspended (see Sink.WriteAt).
var stallKinds = []struct {
	name string
	sink func() *testSink
}{{"blocked", newTestSink}, {"suspended", newSuspendingSink}}

// TestSlowSinkDisconnected checks that a sink whose write stays blocked,
// or suspended (see Sink.WriteAt), is disconnected as too slow once its
// queue is full and slowStall has passed, with an error wrapping
// Config.Ended, which ends that write and frees its write lock, while a
// sink beside it gets every event, in order, once.
func TestSlowSinkDisconnected(t *testing.T) {
	for _, tt := range stallKinds {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := testConfig()
				cfg.QueueSize = 4
				h := newTestEngine(t, cfg)
				healthy, stalled := newTestSink(), tt.sink()
				registerAll(t, h, healthy, stalled)
				stalled.stall(false)
				want := broadcastPaced(t, h, 40, 50*time.Millisecond) // 2 s in all: past slowStall
				if got := healthy.written(); got != want {
					t.Errorf("healthy sink: got %q, want %q", got, want)
				}
				err := stalled.Err()
				if !errors.Is(err, errEnded) || !strings.Contains(err.Error(), "too slow") {
					t.Errorf("stalled sink ended with %v, want an error wrapping %v that says too slow", err, errEnded)
				}
				stalled.mu.Lock()
				kept := stalled.kept != nil
				stalled.mu.Unlock()
				if kept {
					t.Error("the suspended write was not ended with its stream")
				}
				select {
				case stalled.wlock <- struct{}{}: // the write lock is free
					<-stalled.wlock
				default:
					t.Error("the write lock is still held after the stalled write ended")
				}
				st := h.Stats()
				if st.Clients != 1 || st.SlowDisconnects != 1 || st.StalledWrites == 0 {
					t.Errorf("Stats: %d clients, %d slow disconnects, %d stalled writes; want 1, 1, at least 1", st.Clients, st.SlowDisconnects, st.StalledWrites)
				}
				h.Unregister(healthy)
			})
		})
	}
}

// broadcastPaced broadcasts n events, "data: i", i from 0, waiting every
// (in the bubble's time) after each, and returns what they write.
func broadcastPaced(t *testing.T, h *Engine, n int, every time.Duration) string {
	t.Helper()
	var want strings.Builder
	for i := range n {
		msg := fmt.Sprintf("data: %d\n\n", i)
		if err := h.Broadcast([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		want.WriteString(msg)
		time.Sleep(every)
		synctest.Wait()
	}
	return want.String()
}

// TestCloseEndsStalledSink checks that Close writes what was broadcast
// before it to a sink that reads, ends every sink, and returns without
// waiting for a write that makes no progress, blocked or suspended (see
// Sink.WriteAt), the latter's write lock released.
func TestCloseEndsStalledSink(t *testing.T) {
	for _, tt := range stallKinds {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := New(testConfig())
				healthy, stalled := newTestSink(), tt.sink()
				registerAll(t, h, healthy, stalled)
				stalled.stall(false)
				if err := h.Broadcast([]byte("data: last\n\n")); err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
				start := time.Now()
				h.Close()
				if d := time.Since(start); d > time.Second {
					t.Errorf("Close took %v with a stalled sink, want under a second", d)
				}
				if got, want := healthy.written(), "data: last\n\n"; got != want {
					t.Errorf("healthy sink: got %q, want %q", got, want)
				}
				for i, s := range []*testSink{healthy, stalled} {
					if err := s.Err(); !errors.Is(err, errEnded) {
						t.Errorf("sink %d ended with %v, want an error wrapping %v", i, err, errEnded)
					}
				}
				if got := stalled.written(); got != "" {
					t.Errorf("stalled sink: got %q, want nothing", got)
				}
				select {
				case stalled.wlock <- struct{}{}: // the write lock is free
					<-stalled.wlock
				default:
					t.Error("the stalled sink's write lock is still held after Close")
				}
				if err := h.Broadcast([]byte("data: late\n\n")); err != h.cfg.Closed {
					t.Errorf("Broadcast after Close: got %v, want Config.Closed", err)
				}
				if in := h.Inspect(); in.Clients != 0 || in.Timers || in.Writers != 0 {
					t.Errorf("after Close: %d clients, timers %v, %d writers; want none", in.Clients, in.Timers, in.Writers)
				}
			})
		})
	}
}
