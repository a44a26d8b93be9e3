package sse

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"
)

// A full queue under a dropping policy drops live events only, never a
// replay queued for a resuming client.
func TestDroppingPoliciesKeepReplay(t *testing.T) {
	for _, policy := range []SlowPolicy{SlowDropOldest, SlowKeepLatest} {
		t.Run(policy.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				hub := NewHubWithOptions[string](&Options{QueueSize: 2, SlowClients: policy})
				defer hub.Close()
				rec := httptest.NewRecorder()
				conn, err := UpgradeWithOptions(t.Context(), rec, httptest.NewRequest(http.MethodGet, "/", nil),
					&UpgradeOptions{Heartbeat: -1, WriteTimeout: time.Hour})
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				if err := hub.Register(conn); err != nil {
					t.Fatal(err)
				}
				// A write in progress holds the lock: the queue fills.
				conn.lockWrite()
				const replay = "id: 1\ndata: r1\n\nid: 2\ndata: r2\n\n"
				h := hub.core
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
					if err := hub.Broadcast(v); err != nil {
						t.Fatal(err)
					}
				}
				conn.unlockWrite()
				synctest.Wait()

				want := ": connected\n\n" + replay + "data: c\n\n"
				if got := rec.Body.String(); got != want {
					t.Errorf("body: got %q, want %q", got, want)
				}
				st := hub.Stats()
				if st.Dropped != 2 || st.QueuedBytes != 0 {
					t.Errorf("Stats: dropped %d, queued %d bytes; want 2 (a and b), 0", st.Dropped, st.QueuedBytes)
				}
				if got, want := st.Delivered, uint64(1); got != want {
					t.Errorf("Stats.Delivered = %d, want %d (c; the replay is not a broadcast)", got, want)
				}
			})
		})
	}
}

// Over the budget, a client whose write is blocked goes before one merely
// waiting for a writer, even when the waiting one's oldest unsent byte is
// older: when thousands of clients stall at once, the writers reach the
// clients queued behind them late, though those read everything.
func TestBudgetEvictsBlockedFirst(t *testing.T) {
	h := newHubCore(Options{MaxQueuedBytes: 100}, ErrHubClosed)
	now := time.Now().UnixNano()
	mk := func(bytes, inflight, since, outAt int64) *client {
		c := &client{hub: h, grp: h.def, beatAt: -1, bytes: bytes, inflight: inflight, since: since, sinceOut: since, outAt: outAt}
		h.def.clients = append(h.def.clients, c)
		return c
	}
	// Queued longest, not yet reached by a writer.
	waiting := mk(60, 0, now-int64(time.Second), 0)
	// Blocked in a write for 50 ms; its bytes are younger.
	blocked := mk(10, 50, now-int64(100*time.Millisecond), now-int64(50*time.Millisecond))
	// A write begun just now, not stalled yet.
	writing := mk(0, 30, now-int64(200*time.Millisecond), now)
	h.mu.Lock()
	evict := h.overBudgetLocked(nil)
	h.mu.Unlock()
	// 150 bytes: evicting the blocked client (60) leaves 90, within 100.
	if len(evict) != 1 || evict[0] != blocked {
		names := map[*client]string{waiting: "waiting", blocked: "blocked", writing: "writing"}
		var got []string
		for _, c := range evict {
			got = append(got, names[c])
		}
		t.Fatalf("evicted %v, want [blocked]", got)
	}
}
