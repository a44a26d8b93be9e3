package fanout

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"
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

// deliverN delivers events from to to-1 of topic t to h, each with its
// index as its Item.Value, and returns what they write.
func deliverN(h *Engine, from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		msg := fmt.Sprintf("data: %d\n\n", i)
		h.Deliver(Item{Topic: "t", Head: Head{Seq: uint64(i + 1), ID: fmt.Sprint(i)}, Value: i,
			Enc: wire(msg)})
		b.WriteString(msg)
	}
	return b.String()
}

// even passes the events whose Item.Value is even.
func even(v any) bool { return v.(int)%2 == 0 }

// evens returns what the even events of from to to-1 write.
func evens(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		if i%2 == 0 {
			fmt.Fprintf(&b, "data: %d\n\n", i)
		}
	}
	return b.String()
}

// TestFilteredClientParks checks that a client with a filter whose write
// is blocked is parked like any other (so that thousands of them cost a
// fan-out nothing), and then gets the events of the log that pass its
// filter, in order, once, while a client beside it gets every event.
func TestFilteredClientParks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestEngine(t, testConfig())
		h.SetLive("t", Head{})
		filtered, all := newTestSink(), newTestSink()
		if err := h.Register(filtered, []string{"t"}, even, false); err != nil {
			t.Fatal(err)
		}
		if err := h.Register(all, []string{"t"}, nil, false); err != nil {
			t.Fatal(err)
		}
		filtered.stall(false)
		want := deliverN(h, 0, 1) // its write stalls: handed off
		synctest.Wait()
		want += deliverN(h, 1, 40)
		synctest.Wait()
		if in := h.Inspect(); in.Parked != 1 {
			t.Fatalf("after 40 events: %d parked, want 1 (the filtered client)", in.Parked)
		}
		filtered.unstall()
		synctest.Wait()
		want += deliverN(h, 40, 50)
		synctest.Wait()
		if in := h.Inspect(); in.Parked != 0 || in.Clients != 2 {
			t.Errorf("after the write went through: %d clients, %d parked; want 2, 0", in.Clients, in.Parked)
		}
		if got := all.written(); got != want {
			t.Errorf("unfiltered client: got %q, want %q", got, want)
		}
		if got, want := filtered.written(), evens(0, 50); got != want {
			t.Errorf("filtered client: got %q, want %q (the even events, once, in order)", got, want)
		}
		h.Unregister(filtered)
		h.Unregister(all)
	})
}

// TestFilteredClientTakesOneWriteFromLog checks that a parked client
// with a filter takes from the log one write's worth of the events that
// pass it, moving past those that do not, and the rest after.
func TestFilteredClientTakesOneWriteFromLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestEngine(t, testConfig())
		h.SetLive("t", Head{})
		s := newTestSink()
		if err := h.Register(s, []string{"t"}, even, false); err != nil {
			t.Fatal(err)
		}
		// A write in progress holds the lock: the client waits for a
		// writer, and is parked once parkAfter events are queued.
		s.LockWrite()
		pad := strings.Repeat("x", 1000)
		var want strings.Builder
		for i := range 400 {
			msg := fmt.Sprintf("data: %d %s\n\n", i, pad)
			h.Deliver(Item{Topic: "t", Head: Head{Seq: uint64(i + 1)}, Value: i,
				Enc: wire(msg)})
			if i%2 == 0 {
				want.WriteString(msg)
			}
		}
		h.mu.Lock()
		c := h.bySink[s]
		c.mu.Lock()
		if !c.parked.Load() || len(c.queue) != parkAfter {
			t.Errorf("parked %v with %d queued, want true with %d", c.parked.Load(), len(c.queue), parkAfter)
		}
		cursor := c.cursor
		size := len(fmt.Sprintf("data: %d %s\n\n", 100, pad))
		h.unparkLocked(c, true)
		if got, want := len(c.queue)-parkAfter, MaxWrite/size; got != want {
			t.Errorf("took %d events from the log, want %d (one write's worth of those that pass)", got, want)
		}
		if got, want := c.cursor-cursor, int64(2*(MaxWrite/size)-1); got != want {
			t.Errorf("moved on by %d events of the log, want %d (those taken and those skipped between)", got, want)
		}
		c.mu.Unlock()
		h.mu.Unlock()
		s.UnlockWrite()
		synctest.Wait()
		if got := s.written(); got != want.String() {
			t.Errorf("got %d bytes, want %d (the even events, once, in order)", len(got), want.Len())
		}
		h.Unregister(s)
	})
}

// TestFilteredClientSlow checks that a parked client with a filter whose
// write stays blocked is disconnected as too slow once the log holds
// QueueSize events from its place on, whether or not they pass its
// filter. (A client is parked at an event that passes its filter: one
// whose filter passes nothing more costs a filter call per event, holds
// nothing, and ends at its write timeout.)
func TestFilteredClientSlow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.QueueSize = 8
		h := newTestEngine(t, cfg)
		h.SetLive("t", Head{})
		s := newTestSink()
		if err := h.Register(s, []string{"t"}, func(v any) bool { return v.(int) < 2 }, false); err != nil {
			t.Fatal(err)
		}
		s.stall(false)
		for i := range 40 {
			deliverN(h, i, i+1)
			time.Sleep(50 * time.Millisecond) // 2 s in all: past slowStall
			synctest.Wait()
		}
		if err := s.Err(); !errors.Is(err, errEnded) || !strings.Contains(err.Error(), "too slow") {
			t.Errorf("stalled client ended with %v, want an error wrapping %v that says too slow", err, errEnded)
		}
		if st := h.Stats(); st.Clients != 0 || st.SlowDisconnects != 1 {
			t.Errorf("Stats: %d clients, %d slow disconnects; want 0, 1", st.Clients, st.SlowDisconnects)
		}
	})
}

// TestFilteredClientExtraAfterLog checks that an entry queued for a
// parked client with a filter (a retry hint, when its topic's broker is
// lost) comes after every logged event that passes its filter, however
// many, and that what the queues are charged comes back to zero.
func TestFilteredClientExtraAfterLog(t *testing.T) {
	for _, filtered := range []bool{false, true} {
		t.Run(fmt.Sprint("filtered=", filtered), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newTestEngine(t, testConfig())
				h.SetLive("t", Head{})
				s := newTestSink()
				var f func(any) bool
				if filtered {
					f = even
				}
				if err := h.Register(s, []string{"t"}, f, false); err != nil {
					t.Fatal(err)
				}
				// Waiting for a writer: parked after parkAfter events,
				// never slow, so the log grows past maxVecEvents.
				s.LockWrite()
				const n = parkAfter + 3*maxVecEvents
				deliverN(h, 0, n)
				if parked, _ := queueOf(h, s); !parked {
					t.Fatal("not parked")
				}
				h.DropTopic("t", errors.New("fanout test: broker gone"), true)
				s.UnlockWrite()
				synctest.Wait()
				want := deliverN(newTestEngine(t, testConfig()), 0, n) // the events, as written
				if filtered {
					want = evens(0, n)
				}
				got := s.written()
				if !strings.HasPrefix(got, want) || !strings.HasPrefix(got[len(want):], "retry: ") {
					t.Errorf("got %d bytes, want the %d of the events that pass, then the retry hint", len(got), len(want))
				}
				if st := h.Stats(); st.QueuedBytes != 0 {
					t.Errorf("Stats.QueuedBytes = %d after everything was written, want 0", st.QueuedBytes)
				}
			})
		})
	}
}

// TestUnfilteredParkedKeepsNoValues checks that the log keeps no
// event's value while no client with a filter is parked in its group.
func TestUnfilteredParkedKeepsNoValues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestEngine(t, testConfig())
		h.SetLive("t", Head{})
		plain, filtered := newTestSink(), newTestSink()
		if err := h.Register(plain, []string{"t"}, nil, false); err != nil {
			t.Fatal(err)
		}
		plain.LockWrite()
		deliverN(h, 0, parkAfter+50)
		values := func() (n int) {
			h.mu.Lock()
			defer h.mu.Unlock()
			for _, g := range h.byTopic["t"] {
				for _, v := range g.park.vals {
					if v != nil {
						n++
					}
				}
			}
			return n
		}
		if n := values(); n != 0 {
			t.Errorf("with an unfiltered client parked: the log keeps %d values, want 0", n)
		}
		if err := h.Register(filtered, []string{"t"}, even, false); err != nil {
			t.Fatal(err)
		}
		filtered.LockWrite()
		deliverN(h, parkAfter+50, 4*parkAfter+50) // half pass its filter: parked after 2*parkAfter
		if n := values(); n == 0 {
			t.Error("with a filtered client parked: the log keeps no values, want those from its place on")
		}
		plain.UnlockWrite()
		filtered.UnlockWrite()
		synctest.Wait()
		if n := values(); n != 0 {
			t.Errorf("once both caught up: the log keeps %d values, want 0", n)
		}
		if got, want := filtered.written(), evens(parkAfter+50, 4*parkAfter+50); got != want {
			t.Errorf("filtered client: got %d bytes, want %d (the even events since it came)", len(got), len(want))
		}
		h.Unregister(plain)
		h.Unregister(filtered)
	})
}
