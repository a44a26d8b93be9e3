package fanout

import (
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
)

// narrowAndRoomy registers two sinks with h: a narrow one and one with
// room, each with its write lock held (a write in progress), so that both
// wait for a writer.
func narrowAndRoomy(t *testing.T, h *Engine) (narrow, roomy *testSink) {
	t.Helper()
	narrow, roomy = newTestSink(), newTestSink()
	narrow.narrow = true
	for _, s := range []*testSink{narrow, roomy} {
		if err := h.RegisterAll(s); err != nil {
			t.Fatal(err)
		}
		s.LockWrite()
	}
	return narrow, roomy
}

// queueOf returns whether s's client is parked, and the length of its
// queue.
func queueOf(h *Engine, s *testSink) (parked bool, queued int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.bySink[s]
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.parked.Load(), len(c.queue)
}

// TestNarrowClientParksEarly checks that a narrow client waiting for a
// writer is parked after parkNarrow events, where one with room keeps
// its queue, and that both then get every event, in order, once.
func TestNarrowClientParksEarly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestEngine(t, testConfig())
		narrow, roomy := narrowAndRoomy(t, h)
		const events = parkNarrow + 3
		var want strings.Builder
		for i := range events {
			msg := fmt.Sprintf("data: e%d\n\n", i)
			if err := h.Broadcast([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			want.WriteString(msg)
		}
		if parked, queued := queueOf(h, narrow); !parked || queued != parkNarrow {
			t.Errorf("narrow client: parked %v with %d queued, want true with %d", parked, queued, parkNarrow)
		}
		if parked, queued := queueOf(h, roomy); parked || queued != events {
			t.Errorf("roomy client: parked %v with %d queued, want false with %d", parked, queued, events)
		}
		narrow.UnlockWrite()
		roomy.UnlockWrite()
		synctest.Wait()
		for _, s := range []*testSink{narrow, roomy} {
			if got := s.written(); got != want.String() {
				t.Errorf("narrow %v: got %q, want %q", s.narrow, got, want.String())
			}
		}
	})
}

// TestNarrowClientTakesLittleFromLog checks that a parked narrow client's
// writer takes at most narrowWrite bytes of events from the log at a
// time, where one with room takes MaxWrite, and that both then get every
// event, in order, once.
func TestNarrowClientTakesLittleFromLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestEngine(t, testConfig())
		// Both wait for a writer, and are parked once they have
		// parkNarrow and parkAfter events queued.
		narrow, roomy := narrowAndRoomy(t, h)
		const events = 200
		msg := "data: " + strings.Repeat("x", 1000) + "\n\n"
		for range events {
			if err := h.Broadcast([]byte(msg)); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			s      *testSink
			queued int
			limit  int
		}{{narrow, parkNarrow, narrowWrite}, {roomy, parkAfter, MaxWrite}} {
			h.mu.Lock()
			c := h.bySink[tc.s]
			c.mu.Lock()
			if !c.parked.Load() || len(c.queue) != tc.queued {
				t.Errorf("narrow %v: parked %v with %d queued, want true with %d", tc.s.narrow, c.parked.Load(), len(c.queue), tc.queued)
			}
			// What its writer does first once the write lock is free.
			h.unparkLocked(c, true)
			if got, want := len(c.queue)-tc.queued, tc.limit/len(msg); got != want {
				t.Errorf("narrow %v: took %d events of %d bytes from the log, want %d", tc.s.narrow, got, len(msg), want)
			}
			c.mu.Unlock()
			h.mu.Unlock()
			tc.s.UnlockWrite()
		}
		synctest.Wait()
		want := strings.Repeat(msg, events)
		for _, s := range []*testSink{narrow, roomy} {
			if got := s.written(); got != want {
				t.Errorf("narrow %v: got %d bytes, want %d (every event, once, in order)", s.narrow, len(got), len(want))
			}
		}
	})
}
