package sse

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// blockingWriter is a ResponseWriter whose writes wait while it is
// blocked.
type blockingWriter struct {
	mu    sync.Mutex
	h     http.Header
	block chan struct{}
	body  []byte
}

func (w *blockingWriter) Header() http.Header { return w.h }
func (w *blockingWriter) WriteHeader(int)     {}
func (w *blockingWriter) Flush()              {}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	b := w.block
	w.mu.Unlock()
	if b != nil {
		<-b
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.body = append(w.body, p...)
	return len(p), nil
}

// setBlock blocks later writes until the returned func is called.
func (w *blockingWriter) setBlock() (release func()) {
	ch := make(chan struct{})
	w.mu.Lock()
	w.block = ch
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		w.block = nil
		w.mu.Unlock()
		close(ch)
	}
}

// Close lets go of every client under the hub's lock, then ends them one
// by one. Meanwhile a parked client's write may return, or its stream end
// on its own: its writer must not take events from a log that is gone
// (a panic, or the log's bytes freed twice), and its end must not remove
// it from a list it is no longer in (a negative client count). This
// checks the state closeLocked leaves, then lets both happen.
func TestCloseLeavesNoClientParked(t *testing.T) {
	for _, server := range []bool{false, true} {
		t.Run(fmt.Sprintf("server=%v", server), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var h *hubCore
				var publish func(i int)
				var s *Server
				hub := NewHubWithOptions[string](&Options{Heartbeat: -1})
				if server {
					s = &Server{Options: Options{Heartbeat: -1}}
					s.init()
					h = s.core
					publish = func(i int) {
						if _, err := s.Publish(t.Context(), "", NewEvent(fmt.Sprintf("%04d", i))); err != nil {
							t.Fatal(err)
						}
					}
				} else {
					h = hub.engine()
					publish = func(i int) {
						if err := hub.Broadcast(fmt.Sprintf("%04d", i)); err != nil {
							t.Fatal(err)
						}
					}
				}
				var ws []*blockingWriter
				var releases []func()
				for range 2 {
					w := &blockingWriter{h: http.Header{}}
					r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/", nil)
					if server {
						go s.ServeHTTP(w, r)
						synctest.Wait()
					} else {
						conn, err := UpgradeWithOptions(r.Context(), w, r, &UpgradeOptions{Heartbeat: -1})
						if err != nil {
							t.Fatal(err)
						}
						t.Cleanup(func() { conn.Close() })
						if err := hub.Register(conn); err != nil {
							t.Fatal(err)
						}
					}
					ws = append(ws, w)
					releases = append(releases, w.setBlock())
				}
				publish(0)
				synctest.Wait()
				time.Sleep(10 * time.Millisecond) // the blocked writes are handed off
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
					t.Error("a client was removed again from a closed hub")
				}
				releases[0]()
				releases[1]()
				synctest.Wait()
				if n := h.clients(); n != 0 {
					t.Errorf("clients after close: %d, want 0", n)
				}
				// The rest of closeNow.
				for _, c := range closed {
					c.mu.Lock()
					h.dropQueueLocked(c)
					c.mu.Unlock()
					c.conn.unwatch(c)
					c.conn.drop(ErrConnectionClosed)
				}
				synctest.Wait()
				if got := h.queued.Load(); got != 0 {
					t.Errorf("charged at the end: %d, want 0", got)
				}
				if n := h.clients(); n != 0 {
					t.Errorf("clients at the end: %d, want 0", n)
				}
				if server {
					s.Close()
				} else {
					hub.Close()
				}
			})
		})
	}
}
