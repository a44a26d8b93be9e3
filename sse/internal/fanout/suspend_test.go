package fanout

import (
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// newSuspendingSink is a vectored testSink whose stalled writes are
// suspended, as a Conn's on a connection the process watches.
func newSuspendingSink() *testSink {
	s := newTestSink()
	s.vectored, s.suspends = true, true
	return s
}

// TestSuspendedWriteGoesOn: a write the stream suspends holds no writer;
// the other clients are served meanwhile, and once the stream tells the
// engine, what was kept and what came since is written, in order, once.
func TestSuspendedWriteGoesOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestEngine(t, testConfig())
		healthy, slow := newTestSink(), newSuspendingSink()
		registerAll(t, h, healthy, slow)
		slow.stall(false)
		want := broadcastPaced(t, h, 20, 10*time.Millisecond)
		if got := healthy.written(); got != want {
			t.Errorf("healthy sink while the other is suspended: got %q, want %q", got, want)
		}
		in := h.Inspect()
		slow.mu.Lock()
		suspended, kept := slow.suspended, slow.kept != nil
		slow.mu.Unlock()
		// Every writer is gone: none waits on the suspended write.
		if suspended != 1 || !kept || in.Writers != 0 || slow.written() != "" {
			t.Errorf("while stalled: %d suspensions, kept %v, %d writers, written %q; want 1, true, 0, nothing",
				suspended, kept, in.Writers, slow.written())
		}
		if st := h.Stats(); st.StalledWrites != 1 || st.Clients != 2 {
			t.Errorf("Stats: %d stalled writes, %d clients; want 1, 2", st.StalledWrites, st.Clients)
		}
		slow.unstall()
		synctest.Wait()
		if got := slow.written(); got != want {
			t.Errorf("resumed sink: got %q, want %q", got, want)
		}
		// The write lock is free again, and a new event goes out at once.
		if err := h.Broadcast([]byte("data: after\n\n")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := slow.written(); got != want+"data: after\n\n" {
			t.Errorf("after the resumed write: got %q", got)
		}
		h.Unregister(healthy)
		h.Unregister(slow)
	})
}

// TestSuspendedWriteSuspendsAgain: a stream that tells the engine but is
// still full suspends the write again; nothing is written twice.
func TestSuspendedWriteSuspendsAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestEngine(t, testConfig())
		slow := newSuspendingSink()
		registerAll(t, h, slow)
		slow.stall(false)
		if err := h.Broadcast([]byte("data: a\n\n")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		// Told while still stalled: Continue suspends it again.
		slow.mu.Lock()
		r := slow.tellResumerLocked()
		slow.mu.Unlock()
		r.Resume()
		synctest.Wait()
		if err := h.Broadcast([]byte("data: b\n\n")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		slow.mu.Lock()
		suspended := slow.suspended
		slow.mu.Unlock()
		if suspended != 2 || slow.written() != "" {
			t.Fatalf("got %d suspensions, written %q; want 2, nothing", suspended, slow.written())
		}
		slow.unstall()
		synctest.Wait()
		if got, want := slow.written(), "data: a\n\ndata: b\n\n"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		h.Unregister(slow)
	})
}

// TestSuspendedWriteResumedAtOnce: the stream may tell the engine that
// a suspended write can go on before the writer that saw it suspended
// has noted it; the write goes on once both did, on one writer.
func TestSuspendedWriteResumedAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestEngine(t, testConfig())
		slow := newSuspendingSink()
		slow.roomAtOnce = true
		registerAll(t, h, slow)
		var want strings.Builder
		for i := range 5 {
			slow.stall(false)
			msg := fmt.Sprintf("data: %d\n\n", i)
			want.WriteString(msg)
			if err := h.Broadcast([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond) // past the sink's pause
			synctest.Wait()
		}
		slow.mu.Lock()
		suspended := slow.suspended
		slow.mu.Unlock()
		if got := slow.written(); got != want.String() || suspended != 5 {
			t.Errorf("got %q after %d suspensions, want %q after 5", got, suspended, want.String())
		}
		if in := h.Inspect(); in.Writers != 0 {
			t.Errorf("writers left: %d", in.Writers)
		}
		h.Unregister(slow)
	})
}

// TestSuspendedAfterHandOff: a write the watchdog handed off (it ran
// for stallLimit) and that the stream then suspended has the deadline the
// watchdog gave it cleared (the stream times a suspended write itself),
// and counts as one stalled write.
func TestSuspendedAfterHandOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestEngine(t, testConfig())
		slow := newSuspendingSink()
		slow.slowSuspend = 2 * stallLimit
		registerAll(t, h, slow)
		slow.stall(true)
		if err := h.Broadcast([]byte("data: x\n\n")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * stallLimit)
		synctest.Wait()
		slow.mu.Lock()
		bounds, unbound, suspended := slow.bounds, slow.unbound, slow.suspended
		slow.mu.Unlock()
		if bounds != 1 || unbound != 1 || suspended != 1 {
			t.Errorf("got %d deadlines given, %d cleared, %d suspensions; want 1, 1, 1", bounds, unbound, suspended)
		}
		if st := h.Stats(); st.StalledWrites != 1 {
			t.Errorf("StalledWrites: got %d, want 1", st.StalledWrites)
		}
		slow.unstall()
		synctest.Wait()
		if got := slow.written(); got != "data: x\n\n" {
			t.Errorf("got %q after the write went on", got)
		}
		h.Unregister(slow)
	})
}
