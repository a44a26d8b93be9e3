package fanout

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// Close lets go of every client under the engine's lock, then ends them
// one by one. Meanwhile a parked client's write may return, or its stream
// end on its own: its writer must not take events from a log that is gone
// (a panic, or the log's bytes freed twice), and its end must not remove
// it from a list it is no longer in (a negative client count). This
// checks the state closeLocked leaves, then lets both happen.
func TestCloseLeavesNoClientParked(t *testing.T) {
	for _, tc := range []struct{ topics, quiet bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		topics := tc.topics
		t.Run(fmt.Sprintf("topics=%v,quiet=%v", tc.topics, tc.quiet), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := New(testConfig())
				if topics {
					h.SetLive("t", Head{})
				}
				publish := func(i int) {
					msg := fmt.Appendf(nil, "data: %04d\n\n", i)
					if !topics {
						if err := h.Broadcast(msg); err != nil {
							t.Fatal(err)
						}
						return
					}
					h.Deliver(Item{Topic: "t", Head: Head{Seq: uint64(i + 1)}, Enc: wire(msg)})
				}
				var sinks []*testSink
				for range 2 {
					s := newTestSink()
					var err error
					if topics {
						err = h.Register(s, []string{"t"}, nil, false)
					} else {
						err = h.RegisterAll(s)
					}
					if err != nil {
						t.Fatal(err)
					}
					s.stall(tc.quiet)
					sinks = append(sinks, s)
				}
				publish(0) // both writes stall: handed off
				synctest.Wait()
				if tc.quiet {
					// The writes do not say they stall: the watchdog
					// hands them off after stallLimit.
					time.Sleep(2 * stallLimit)
					synctest.Wait()
				}
				for i := 1; i <= 5; i++ {
					publish(i) // both parked from event 1 on
					synctest.Wait()
				}
				h.mu.Lock()
				list := h.allClientsLocked()
				if len(list) != 2 || !list[0].parked.Load() || !list[1].parked.Load() {
					h.mu.Unlock()
					t.Fatalf("want 2 parked clients, got %d", len(list))
				}
				g := list[0].grp
				closed := h.closeLocked()
				var queued int64
				for _, c := range closed {
					if c.parked.Load() {
						t.Error("a client is still parked after closeLocked")
					}
					c.mu.Lock()
					queued += c.bytes + c.inflight
					c.mu.Unlock()
				}
				if len(g.clients) != 0 || g.park.live != 0 || len(g.park.events) != 0 {
					t.Errorf("group after closeLocked: %d clients, %d parked, %d logged; want none", len(g.clients), g.park.live, len(g.park.events))
				}
				if got := h.queued.Load(); got != queued {
					t.Errorf("charged after closeLocked: %d, want the queues' own %d", got, queued)
				}
				h.mu.Unlock()

				// What closeNow's loop races with: a stream that ends on
				// its own, and a write that returns.
				if h.detach(closed[1]) {
					t.Error("a client was removed again from a closed engine")
				}
				sinks[0].unstall()
				sinks[1].unstall()
				synctest.Wait()
				if n := h.Clients(); n != 0 {
					t.Errorf("clients after close: %d, want 0", n)
				}
				// The rest of closeNow.
				for _, c := range closed {
					c.mu.Lock()
					h.dropQueueLocked(c)
					c.mu.Unlock()
					c.conn.Unwatch(c)
					c.conn.Drop(errEnded)
				}
				synctest.Wait()
				if got := h.queued.Load(); got != 0 {
					t.Errorf("charged at the end: %d, want 0", got)
				}
				if n := h.Clients(); n != 0 {
					t.Errorf("clients at the end: %d, want 0", n)
				}
				h.Close()
			})
		})
	}
}
