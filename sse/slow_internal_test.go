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
