package sse_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coregx/stream/sse"
)

// creditWriter is a ResponseWriter that takes only as many bytes as it
// was given credit for, blocking for more: a client that reads at the
// pace the test sets.
type creditWriter struct {
	mu     sync.Mutex
	cond   *sync.Cond
	header http.Header
	credit int
	n      int
}

func newCreditWriter(credit int) *creditWriter {
	w := &creditWriter{header: http.Header{}, credit: credit}
	w.cond = sync.NewCond(&w.mu)
	return w
}

func (w *creditWriter) Header() http.Header              { return w.header }
func (w *creditWriter) WriteHeader(int)                  {}
func (w *creditWriter) Flush()                           {}
func (w *creditWriter) SetWriteDeadline(time.Time) error { return nil }

func (w *creditWriter) setCredit(n int) {
	w.mu.Lock()
	w.credit = n
	w.cond.Broadcast()
	w.mu.Unlock()
}

func (w *creditWriter) give(n int) {
	w.mu.Lock()
	w.credit += n
	w.cond.Broadcast()
	w.mu.Unlock()
}

func (w *creditWriter) written() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

func (w *creditWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.credit <= 0 {
		w.cond.Wait()
	}
	w.credit -= len(p)
	w.n += len(p)
	return len(p), nil
}

func registerCredit(t *testing.T, hub *sse.Hub[string], ws ...*creditWriter) {
	t.Helper()
	for _, w := range ws {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		conn, err := sse.UpgradeWithOptions(r.Context(), w, r, &sse.UpgradeOptions{Heartbeat: -1, WriteTimeout: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if err := hub.Register(conn); err != nil {
			t.Fatal(err)
		}
	}
}

// TestParkedSlowBehindCatchingUp checks that a parked client that stopped
// reading is disconnected as too slow even while another, parked before
// it, catches up from the log a write at a time without ever getting all
// its events back.
func TestParkedSlowBehindCatchingUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHubWithOptions[string](&sse.Options{Heartbeat: -1, QueueSize: 50})
		defer hub.Close()
		a, b, c := newCreditWriter(1<<30), newCreditWriter(1<<30), newCreditWriter(1<<30)
		registerCredit(t, hub, a, b, c)
		n := 0
		send := func(k int) { t.Helper(); broadcastKilo(t, hub, &n, k) }
		send(1)
		a.setCredit(0)
		send(1)
		time.Sleep(10 * time.Millisecond) // a's write handed off
		send(1000)                        // a parked, 1000 behind, blocked for 10 ms: not slow
		b.setCredit(0)
		send(1)
		time.Sleep(10 * time.Millisecond)
		send(1) // b parked behind a
		for range 30 {
			// a takes one 64 KiB write per 100 ms, while 60 events come.
			a.give(65 * kiloSize)
			synctest.Wait()
			send(60)
			time.Sleep(100 * time.Millisecond)
		}
		if st := hub.Stats(); st.SlowDisconnects != 1 || st.Clients != 2 {
			t.Errorf("Stats: got %d slow disconnects, %d clients; want 1, 2 (b, blocked for 3 s and far over QueueSize, disconnected)", st.SlowDisconnects, st.Clients)
		}
		a.give(1 << 30)
		b.give(1 << 30)
	})
}

// TestParkedCatchUpBudget checks that what a parked client catching up
// has taken from the log is counted where it is held: the log lets it go,
// and its queue holds it.
func TestParkedCatchUpBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHubWithOptions[string](&sse.Options{Heartbeat: -1, QueueSize: 10000})
		defer hub.Close()
		a, c := newCreditWriter(1<<30), newCreditWriter(1<<30)
		registerCredit(t, hub, a, c)
		n := 0
		send := func(k int) { t.Helper(); broadcastKilo(t, hub, &n, k) }
		const size = kiloSize
		a.setCredit(0)
		send(1)
		time.Sleep(10 * time.Millisecond)
		send(300) // a parked at 1
		a.give(size)
		synctest.Wait() // event 0
		a.give(65 * size)
		synctest.Wait() // 1…65
		a.give(65 * size)
		synctest.Wait() // 66…130; writing 131…195
		if got := a.written() / size; got != 131 {
			t.Fatalf("a got %d events, want 131", got)
		}
		// Held: events 131…300, the 65 entries of a's write and the 105
		// (196…300) the log still holds for it.
		if got, want := hub.Stats().QueuedBytes, int64(170*size+(65+105)*24); got != want {
			t.Errorf("QueuedBytes: got %d, want %d", got, want)
		}
		a.give(1 << 30)
		synctest.Wait()
		all := len(": connected\n\n") + n*size
		if st := hub.Stats(); st.QueuedBytes != 0 || a.written() != all || c.written() != all {
			t.Errorf("after catching up: %d queued, a %d bytes, c %d; want 0, %d, %d", st.QueuedBytes, a.written(), c.written(), all, all)
		}
	})
}
