package fanout

import (
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// dropPolicies are the dropping policies, by name.
var dropPolicies = []struct {
	name   string
	policy Policy
}{{"DropOldest", DropOldest}, {"KeepLatest", KeepLatest}}

// A full queue under a dropping policy drops live events only, never a
// replay queued for a resuming client.
func TestDroppingPoliciesKeepReplay(t *testing.T) {
	for _, tc := range dropPolicies {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := testConfig()
				cfg.QueueSize, cfg.Policy = 2, tc.policy
				h := newTestEngine(t, cfg)
				conn := newTestSink()
				registerAll(t, h, conn)
				// A write in progress holds the lock: the queue fills.
				conn.LockWrite()
				const replay = "id: 1\ndata: r1\n\nid: 2\ndata: r2\n\n"
				h.mu.Lock()
				c := h.bySink[conn]
				c.mu.Lock()
				var wake []*client
				if h.queueExtraLocked(c, []byte(replay)) {
					wake = append(wake, c)
				}
				c.mu.Unlock()
				h.finishFanout(wake, nil) // unlocks h.mu
				for _, v := range []string{"a", "b", "c"} {
					if err := h.Broadcast([]byte("data: " + v + "\n\n")); err != nil {
						t.Fatal(err)
					}
				}
				conn.UnlockWrite()
				synctest.Wait()

				want := replay + "data: c\n\n"
				if got := conn.written(); got != want {
					t.Errorf("written: got %q, want %q", got, want)
				}
				st := h.Stats()
				if st.Dropped != 2 || st.QueuedBytes != 0 {
					t.Errorf("Stats: dropped %d, queued %d bytes; want 2 (a and b), 0", st.Dropped, st.QueuedBytes)
				}
				if got, want := st.Delivered, uint64(1); got != want {
					t.Errorf("Stats.Delivered = %d, want %d (c; the replay is not a broadcast)", got, want)
				}
				h.Unregister(conn)
			})
		})
	}
}

// Over the budget, a client whose write is blocked goes before one merely
// waiting for a writer, even when the waiting one's oldest unsent byte is
// older: when thousands of clients stall at once, the writers reach the
// clients queued behind them late, though those read everything.
func TestBudgetEvictsBlockedFirst(t *testing.T) {
	h := newBudgetEngine(160)
	now := time.Now().UnixNano()
	// Four events of 10 bytes were fanned out: positions 0, 10, 20, 30.
	ev := make([]byte, 10)
	h.def.fanned = 40
	mk := func(queued int, pos int64, out int, posOut int64, since, outAt int64) *client {
		c := &client{hub: h, grp: h.def, beatAt: -1, since: since, sinceOut: since, outAt: outAt, pos: pos, posOut: posOut, nOut: int32(out)}
		for range queued {
			c.queue = append(c.queue, ev)
		}
		c.bytes = int64(queued) * (10 + entryCost)
		c.inflight = int64(out) * (10 + entryCost)
		h.def.clients = append(h.def.clients, c)
		return c
	}
	// Queued longest, not yet reached by a writer: all four events.
	waiting := mk(4, 0, 0, -1, now-int64(time.Second), 0)
	// Blocked in a write of the second event for 50 ms, the other two
	// queued.
	blocked := mk(2, 20, 1, 10, now-int64(100*time.Millisecond), now-int64(50*time.Millisecond))
	// A write of the last event begun just now, not stalled yet.
	writing := mk(0, -1, 1, 30, now-int64(200*time.Millisecond), now)
	h.mu.Lock()
	held := h.heldLocked()
	evict := h.overBudgetLocked(nil)
	h.mu.Unlock()
	// The four events and 8 entries: 40 + 192 = 232. Evicting the
	// blocked client (3 entries) leaves 160, within the budget.
	if held != 232 {
		t.Errorf("held %d bytes, want 232", held)
	}
	if len(evict) != 1 || evict[0] != blocked {
		names := map[*client]string{waiting: "waiting", blocked: "blocked", writing: "writing"}
		var got []string
		for _, c := range evict {
			got = append(got, names[c])
		}
		t.Fatalf("evicted %v, want [blocked]", got)
	}
}

// An event queued for many clients counts once: the budget evicts
// nobody while the events held fit, however many queues hold them, and
// when they do not, evicting the client that holds the oldest ones
// frees them.
func TestBudgetCountsSharedEventsOnce(t *testing.T) {
	h := newBudgetEngine(100_000)
	now := time.Now().UnixNano()
	ev := make([]byte, 1000)
	// 100 clients each hold the same 20 events of 1000 bytes: counted
	// per queue, 2 MB; held, 20 000 bytes and 2000 entries (48 000).
	h.def.fanned = 40_000 // 40 events so far
	var cs []*client
	for i := range 100 {
		c := &client{hub: h, grp: h.def, index: int32(i), beatAt: -1, since: now, pos: 20_000, posOut: -1}
		for range 20 {
			c.queue = append(c.queue, ev)
		}
		c.bytes = 20 * (1000 + entryCost)
		h.queued.Add(c.bytes)
		h.def.clients = append(h.def.clients, c)
		cs = append(cs, c)
	}
	h.mu.Lock()
	if held := h.heldLocked(); held != 68_000 {
		t.Errorf("held %d bytes, want 68 000", held)
	}
	if evict := h.overBudgetLocked(nil); len(evict) != 0 {
		t.Errorf("evicted %d clients within the budget, want none", len(evict))
	}
	// One client falls 40 events further behind, to position 0:
	// 40 000 bytes of events, 2040 entries (48 960), over the budget.
	old := cs[50]
	old.since, old.pos = now-int64(time.Second), 0
	for range 40 {
		old.queue = append(old.queue, ev)
	}
	if held := h.heldLocked(); held != 88_960 {
		t.Errorf("held %d bytes, want 88 960", held)
	}
	h.cfg.MaxBytes = 80_000
	evict := h.overBudgetLocked(nil)
	h.mu.Unlock()
	if len(evict) != 1 || evict[0] != old {
		t.Fatalf("evicted %d clients, want the one behind only", len(evict))
	}
}

// newBudgetEngine returns an engine whose budget is maxBytes, for tests
// that set its clients up by hand.
func newBudgetEngine(maxBytes int64) *Engine {
	cfg := testConfig()
	cfg.MaxBytes = maxBytes
	return New(cfg)
}

// TestParkedClientDropPolicies checks that under a dropping policy a
// client whose write is blocked is parked like any other, that what waits
// for it stays within QueueSize (the oldest dropped first, an eighth of a
// queue's worth at a time under DropOldest; all but the newest under
// KeepLatest), and that once its write goes through it gets the newest
// events, in order, once, with Stats.Dropped counting the others.
func TestParkedClientDropPolicies(t *testing.T) {
	for _, tc := range []struct {
		name     string
		policy   Policy
		min, max int // events after the one in flight it may get
	}{{"DropOldest", DropOldest, 14, 16}, {"KeepLatest", KeepLatest, 1, 16}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := testConfig()
				cfg.QueueSize, cfg.Policy = 16, tc.policy
				h := newTestEngine(t, cfg)
				s := newTestSink()
				registerAll(t, h, s)
				s.stall(false)
				const events = 200
				msgs := make([]string, events)
				for i := range events {
					msgs[i] = fmt.Sprintf("data: %d\n\n", i)
					if err := h.Broadcast([]byte(msgs[i])); err != nil {
						t.Fatal(err)
					}
					synctest.Wait()
					if i == 20 {
						if in := h.Inspect(); in.Parked != 1 {
							t.Fatalf("after 20 events: %d parked, want 1", in.Parked)
						}
					}
				}
				h.mu.Lock()
				c := h.bySink[s]
				c.mu.Lock()
				waiting := int(c.grp.park.end()-c.cursor) + len(c.queue)
				c.mu.Unlock()
				h.mu.Unlock()
				if waiting > cfg.QueueSize {
					t.Errorf("%d events wait for the parked client, want at most %d", waiting, cfg.QueueSize)
				}
				s.unstall()
				synctest.Wait()
				got := s.written()
				// The event in flight, then a run of the newest ones.
				n := 0
				for i := events - 1; i > 0 && strings.HasSuffix(got, strings.Join(msgs[i:], "")); i-- {
					n = events - i
				}
				if !strings.HasPrefix(got, msgs[0]) || len(msgs[0])+len(strings.Join(msgs[events-n:], "")) != len(got) {
					t.Fatalf("got %q, want event 0 then the newest events, in order", got)
				}
				if n < tc.min || n > tc.max {
					t.Errorf("got the newest %d events after the one in flight, want %d to %d", n, tc.min, tc.max)
				}
				if st := h.Stats(); st.Dropped != uint64(events-1-n) || st.Clients != 1 {
					t.Errorf("Stats: %d dropped, %d clients; want %d, 1", st.Dropped, st.Clients, events-1-n)
				}
				h.Unregister(s)
			})
		})
	}
}

// TestParkedWithFullQueueDropPolicies checks a client under a dropping
// policy that is parked with a full queue (its write blocked without
// saying so, found by the watchdog): it stays one client, its drops come
// from its queue first, a shutdown gives it one retry hint, and what the
// queues are charged comes back to zero.
func TestParkedWithFullQueueDropPolicies(t *testing.T) {
	for _, tc := range dropPolicies {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := testConfig()
				cfg.QueueSize, cfg.Policy = 16, tc.policy
				h := New(cfg)
				s := newTestSink()
				registerAll(t, h, s)
				s.stall(true) // quiet: the watchdog hands the write off
				if err := h.Broadcast([]byte("data: 0\n\n")); err != nil {
					t.Fatal(err)
				}
				synctest.Wait() // its write blocks, not yet handed off
				for i := 1; i <= 40; i++ {
					if err := h.Broadcast(fmt.Appendf(nil, "data: %d\n\n", i)); err != nil {
						t.Fatal(err)
					}
				}
				time.Sleep(2 * stallLimit) // handed off: parked at the next event
				synctest.Wait()
				// Parked at 41 with 16 queued: the drops come from its
				// queue first.
				for i := 41; i <= 44; i++ {
					if err := h.Broadcast(fmt.Appendf(nil, "data: %d\n\n", i)); err != nil {
						t.Fatal(err)
					}
				}
				if in := h.Inspect(); in.Clients != 1 || in.Parked != 1 {
					t.Fatalf("Inspect: %d clients, %d parked; want 1, 1", in.Clients, in.Parked)
				}
				done := make(chan error, 1)
				go func() { done <- h.Shutdown(t.Context()) }()
				synctest.Wait()
				s.unstall()
				synctest.Wait()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				got := s.written()
				if n := strings.Count(got, "retry: "); n != 1 {
					t.Errorf("%d retry hints written, want 1:\n%s", n, got)
				}
				if st := h.Stats(); st.QueuedBytes != 0 {
					t.Errorf("Stats.QueuedBytes = %d at the end, want 0", st.QueuedBytes)
				}
				if st := h.Stats(); int(st.Dropped)+strings.Count(got, "data: ") != 45 {
					t.Errorf("%d events written and %d dropped, want 45 in all", strings.Count(got, "data: "), st.Dropped)
				}
			})
		})
	}
}
