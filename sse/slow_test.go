package sse_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coregx/stream/sse"
)

func TestHubSlowPolicies(t *testing.T) {
	for _, tc := range []struct {
		policy    sse.SlowPolicy
		body      string
		dropped   uint64
		slow      uint64
		stillOpen bool
	}{
		{sse.SlowDisconnect, ": connected\n\n", 0, 1, false},
		{sse.SlowDropOldest, ": connected\n\ndata: 1\n\ndata: 4\n\ndata: 5\n\ndata: 6\n\n", 2, 0, true},
		{sse.SlowKeepLatest, ": connected\n\ndata: 1\n\ndata: 5\n\ndata: 6\n\n", 3, 0, true},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				hub := sse.NewHubWithOptions[string](&sse.Options{QueueSize: 3, SlowClients: tc.policy})
				defer hub.Close()
				c := fakeClients(t, hub, 1, &sse.UpgradeOptions{Heartbeat: -1, WriteTimeout: time.Hour})[0]
				release := c.w.setBlock()
				hub.Broadcast("1")
				synctest.Wait()         // the writer is blocked on event 1
				time.Sleep(time.Second) // and has been for 500 ms
				for i := 2; i <= 6; i++ {
					if err := hub.Broadcast(fmt.Sprint(i)); err != nil {
						t.Fatal(err)
					}
				}
				synctest.Wait() // a disconnected client's write is aborted first
				release()
				synctest.Wait()
				if got := c.w.Body(); got != tc.body {
					t.Errorf("body: got %q, want %q", got, tc.body)
				}
				st := hub.Stats()
				if st.Dropped != tc.dropped || st.SlowDisconnects != tc.slow || st.QueuedBytes != 0 {
					t.Errorf("Stats: got dropped %d, slow %d, queued %d; want %d, %d, 0", st.Dropped, st.SlowDisconnects, st.QueuedBytes, tc.dropped, tc.slow)
				}
				open := c.conn.Err() == nil
				if open != tc.stillOpen {
					t.Errorf("connection open: got %v, want %v", open, tc.stillOpen)
				}
			})
		})
	}
}

// TestHubQueuedBytesBudget checks that the budget counts what the queues
// hold, an event shared by several queues once, plus 24 bytes per queue
// entry, and that over it the client blocked for longest goes.
func TestHubQueuedBytesBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Each event is "data: xxxxxxxxxx\n\n", 18 bytes.
		hub := sse.NewHubWithOptions[string](&sse.Options{MaxQueuedBytes: 200})
		defer hub.Close()
		cs := fakeClients(t, hub, 3, &sse.UpgradeOptions{Heartbeat: -1, WriteTimeout: time.Hour})
		a, b, c := cs[0], cs[1], cs[2]
		send := func(i int) {
			t.Helper()
			if err := hub.Broadcast(fmt.Sprintf("%010d", i)); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			time.Sleep(10 * time.Millisecond)
		}
		releaseA := a.w.setBlock()
		defer releaseA()
		send(0) // a writes e0, blocked, and is handed off
		releaseB := b.w.setBlock()
		// a is parked: the group logs e1 for it. b writes e1, blocked.
		send(1)
		// b is parked too, at e2: the log holds e1 e2. c gets e2.
		send(2)
		// Counted once per queue, 6 entries of 18 bytes would be 108
		// bytes and 252 with the entries, over the budget. Held: the
		// events e0 to e2 (54), the two written and the two logged (96).
		if st := hub.Stats(); st.QueuedBytes != 150 || st.BudgetDisconnects != 0 {
			t.Fatalf("Stats: got queued %d, budget disconnects %d; want 150, 0", st.QueuedBytes, st.BudgetDisconnects)
		}
		// e0…e3 (72), two writes, e1…e3 logged, c's e3 queued: 6
		// entries (144), 216 > 200. a, blocked longest, goes: b holds
		// e1…e3 then, 54 + its write and e2 e3 logged: 126.
		send(3)
		if a.conn.Err() == nil {
			t.Fatal("client blocked longest still connected, want it disconnected")
		}
		if b.conn.Err() != nil {
			t.Fatalf("second client disconnected: %v; want it kept", b.conn.Err())
		}
		if st := hub.Stats(); st.QueuedBytes != 126 || st.BudgetDisconnects != 1 || st.Clients != 2 {
			t.Errorf("Stats: got %+v, want 126 queued, 1 budget disconnect, 2 clients", st)
		}
		releaseB()
		synctest.Wait()
		var want strings.Builder
		want.WriteString(": connected\n\n")
		for i := range 4 {
			fmt.Fprintf(&want, "data: %010d\n\n", i)
		}
		for i, x := range []fakeClient{b, c} {
			if got := x.w.Body(); got != want.String() {
				t.Errorf("client %d: got %q, want %q", i+1, got, want.String())
			}
		}
		if st := hub.Stats(); st.QueuedBytes != 0 {
			t.Errorf("QueuedBytes after draining: got %d, want 0", st.QueuedBytes)
		}
	})
}

func TestHubShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHubWithOptions[string](&sse.Options{ShutdownRetry: 500 * time.Millisecond, ShutdownJitter: time.Second})
		runDone := make(chan struct{})
		go func() { hub.Run(); close(runDone) }()
		cs := fakeClients(t, hub, 5, &sse.UpgradeOptions{Heartbeat: -1})
		hub.Broadcast("bye")
		if err := hub.Shutdown(t.Context()); err != nil {
			t.Fatalf("Shutdown: got %v, want nil", err)
		}
		<-runDone
		for i, c := range cs {
			const events = ": connected\n\ndata: bye\n\n"
			body := c.w.Body()
			if !strings.HasPrefix(body, events) {
				t.Fatalf("client %d: got %q, want %q first", i, body, events)
			}
			checkRetry(t, body[len(events):], 500, 1500)
			if !errors.Is(c.conn.Err(), sse.ErrConnectionClosed) {
				t.Errorf("client %d: Err got %v, want ErrConnectionClosed", i, c.conn.Err())
			}
		}
		if err := hub.Broadcast("late"); !errors.Is(err, sse.ErrHubClosed) {
			t.Errorf("Broadcast after Shutdown: got %v, want ErrHubClosed", err)
		}
		if err := hub.Register(cs[0].conn); !errors.Is(err, sse.ErrHubClosed) {
			t.Errorf("Register after Shutdown: got %v, want ErrHubClosed", err)
		}
		if st := hub.Stats(); st.ShutdownDisconnects != 5 || st.Clients != 0 {
			t.Errorf("Stats: got %+v, want 5 shutdown disconnects and no client", st)
		}
	})
}

// TestServerStuckClients has 1000 clients of which 10 stop reading: the
// 990 others get every event at once in virtual time, but for the first
// event while the stuck writers are found, and the 10 are disconnected
// and counted. BenchmarkStuckClients measures the latency
// in real time.
func TestServerStuckClients(t *testing.T) {
	const clients, stuck, events = 1000, 10, 100
	for _, withStuck := range []bool{false, true} {
		t.Run(fmt.Sprintf("stuck=%v", withStuck), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &sse.Server{Options: sse.Options{Heartbeat: -1, WriteTimeout: time.Hour, QueueSize: 32}}
				ws := make([]*fakeWriter, clients)
				dones := make([]<-chan struct{}, clients)
				for i := range ws {
					ws[i] = newFakeWriter()
					dones[i] = serveFake(s, ws[i])
				}
				synctest.Wait()
				nstuck := 0
				if withStuck {
					nstuck = stuck
					for _, w := range ws[:stuck] {
						defer w.setBlock()()
					}
				}
				var want strings.Builder
				want.WriteString(": connected\n\n")
				latencies := make([]time.Duration, events)
				for i := range events {
					start := time.Now()
					id := mustPublish(t, s, "", fmt.Sprint(i))
					fmt.Fprintf(&want, "id: %s\ndata: %d\n\n", id, i)
					// Virtual time passes only while every goroutine
					// waits: a stall check, say.
					for synctest.Wait(); !allEndWith(ws[nstuck:], want.String()); synctest.Wait() {
						time.Sleep(time.Millisecond)
					}
					latencies[i] = time.Since(start)
					// Ten milliseconds between events: a client is
					// disconnected for a full queue once its write has
					// run for 500 ms, which takes virtual time.
					time.Sleep(10 * time.Millisecond)
				}
				slices.Sort(latencies)
				// A write still running after 5ms is handed off to a
				// goroutine of its own and its worker replaced; ten stuck
				// clients delay the first event by a round or two of the
				// watchdog, once.
				if p99, worst := latencies[events*99/100-1], latencies[events-1]; p99 != 0 || worst > 15*time.Millisecond {
					t.Errorf("delivery latency: got p99 %v, worst %v; want 0 and at most 15ms", p99, worst)
				}
				for i, w := range ws[nstuck:] {
					if got := w.Body(); got != want.String() {
						t.Fatalf("client %d: got %d bytes, want %d", nstuck+i, len(got), want.Len())
					}
				}
				for i, w := range ws[:nstuck] {
					if got := w.Body(); got != ": connected\n\n" {
						t.Errorf("stuck client %d: got %q, want only the opening", i, got)
					}
					<-dones[i]
				}
				st := s.Stats()
				if st.SlowDisconnects != uint64(nstuck) || st.Clients != clients-nstuck || st.Delivered != uint64((clients-nstuck)*events) {
					t.Errorf("Stats: got %d slow disconnects, %d clients, %d delivered; want %d, %d, %d",
						st.SlowDisconnects, st.Clients, st.Delivered, nstuck, clients-nstuck, (clients-nstuck)*events)
				}
				t.Logf("clients %d, stuck %d, events %d: delivered %d, slow disconnects %d", clients, nstuck, events, st.Delivered, st.SlowDisconnects)
				s.Close()
			})
		})
	}
}

// allEndWith reports whether every writer's body ends with want.
func allEndWith(ws []*fakeWriter, want string) bool {
	for _, w := range ws {
		if !strings.HasSuffix(w.Body(), want) {
			return false
		}
	}
	return true
}

// A hub's write to a client that reads gets no deadline: only a write
// still running after a while gets one, the write's start plus the
// stream's write timeout, so a stuck client is cut exactly then.
func TestHubWriteDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHubWithOptions[string](&sse.Options{Heartbeat: -1})
		defer hub.Close()
		cs := fakeClients(t, hub, 2, &sse.UpgradeOptions{WriteTimeout: 2 * time.Second})
		healthy, stuck := cs[0], cs[1]
		opened := healthy.w.deadlineCalls() // the probe, and the opening's set and clear
		for i := range 100 {
			if err := hub.Broadcast(fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
		}
		if got := healthy.w.deadlineCalls(); got != opened {
			t.Errorf("100 quick writes: %d more deadline calls, want none", got-opened)
		}

		release := stuck.w.setBlock()
		defer release()
		start := time.Now()
		if err := hub.Broadcast("blocked"); err != nil {
			t.Fatal(err)
		}
		<-stuck.conn.Done()
		if took := time.Since(start); took != 2*time.Second {
			t.Errorf("stuck client ended after %v, want the write timeout, 2s", took)
		}
		if err := stuck.conn.Err(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("stuck client's Err() = %v, want a deadline error", err)
		}
		synctest.Wait()
		var want strings.Builder
		want.WriteString(": connected\n\n")
		for i := range 100 {
			fmt.Fprintf(&want, "data: %d\n\n", i)
		}
		want.WriteString("data: blocked\n\n")
		if got := healthy.w.Body(); got != want.String() {
			t.Errorf("healthy client's body: got %q, want %q", got, want.String())
		}
	})
}

// A slow write that finishes within the write timeout keeps its stream,
// and the deadline it got is cleared (HTTP/2 resets a stream whose
// deadline passes even when idle).
func TestHubSlowWriteClearsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHubWithOptions[string](&sse.Options{Heartbeat: -1})
		defer hub.Close()
		c := fakeClients(t, hub, 1, &sse.UpgradeOptions{WriteTimeout: 2 * time.Second})[0]
		release := c.w.setBlock()
		start := time.Now()
		if err := hub.Broadcast("slow"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got, want := c.w.currentDeadline(), start.Add(2*time.Second); !got.Equal(want) {
			t.Errorf("during the slow write: deadline %v, want its start plus 2s, %v", got, want)
		}
		release()
		synctest.Wait()
		if got := c.w.currentDeadline(); !got.IsZero() {
			t.Errorf("after the write: deadline %v, want none", got)
		}
		if err := c.conn.Err(); err != nil {
			t.Errorf("Err() = %v, want the stream open", err)
		}
		if got, want := c.w.Body(), ": connected\n\ndata: slow\n\n"; got != want {
			t.Errorf("body %q, want %q", got, want)
		}
	})
}

// TestBudgetEvictsNoProgressFirst has two stalled clients on a Server,
// one stalled for a second with a few bytes, the other just stalled with
// more: over the budget, the one whose oldest unsent byte is oldest goes,
// not the one with the most bytes.
func TestBudgetEvictsNoProgressFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &sse.Server{
			Topics:  queryTopics,
			Options: sse.Options{Heartbeat: -1, WriteTimeout: time.Hour, MaxQueuedBytes: 350},
		}
		defer s.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		old, busy := newFakeWriter(), newFakeWriter()
		oldDone := serveTopic(ctx, s, old, "x")
		busyDone := serveTopic(ctx, s, busy, "y")
		synctest.Wait()
		defer old.setBlock()()
		// Each entry costs its event's bytes and 24 more.
		mustPublish(t, s, "x", "stalled") // 21 bytes, stuck from now: 45
		synctest.Wait()
		time.Sleep(time.Second)
		defer busy.setBlock()()
		for i := range 4 {
			mustPublish(t, s, "y", fmt.Sprintf("%030d", i)) // 44 bytes each: 68
			synctest.Wait()
		}
		if st := s.Stats(); st.QueuedBytes != 45+4*68 || st.BudgetDisconnects != 0 {
			t.Fatalf("Stats: got queued %d, budget disconnects %d; want %d, 0", st.QueuedBytes, st.BudgetDisconnects, 45+4*68)
		}
		mustPublish(t, s, "y", fmt.Sprintf("%030d", 4)) // 45 + 5*68 = 385 > 350, and 5*68 fits
		synctest.Wait()
		select {
		case <-oldDone:
		default:
			t.Fatal("the client stalled for longest is still connected")
		}
		select {
		case <-busyDone:
			t.Fatal("the client with the most bytes, stalled for less long, was disconnected")
		default:
		}
		if st := s.Stats(); st.BudgetDisconnects != 1 || st.Clients != 1 || st.QueuedBytes != 5*68 {
			t.Errorf("Stats: got %d budget disconnects, %d clients, %d queued; want 1, 1, %d", st.BudgetDisconnects, st.Clients, st.QueuedBytes, 5*68)
		}
	})
}

// TestBudgetIgnoresEvictedWrites checks that the bytes of a client already
// evicted, whose write is still blocked (its writer hides deadlines, so the
// write cannot be cut), do not make the budget evict a client that fits.
func TestBudgetIgnoresEvictedWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &sse.Server{
			Topics:  queryTopics,
			Options: sse.Options{Heartbeat: -1, WriteTimeout: time.Hour, MaxQueuedBytes: 380},
		}
		defer s.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		old, busy := newFakeWriter(), newFakeWriter()
		old.noDL = true
		serveTopic(ctx, s, old, "x")
		busyDone := serveTopic(ctx, s, busy, "y")
		synctest.Wait()
		defer old.setBlock()()
		// Each entry costs its event's bytes and 24 more.
		mustPublish(t, s, "x", "stalled") // 21 bytes, stuck from now on: 45
		synctest.Wait()
		time.Sleep(time.Second)
		defer busy.setBlock()()
		for i := range 5 {
			mustPublish(t, s, "y", fmt.Sprintf("%030d", i)) // 44 bytes each: 68
			synctest.Wait()
		}
		// 45 + 5*68 = 385 > 380: the stalled client goes, its write
		// still blocked.
		if st := s.Stats(); st.BudgetDisconnects != 1 || st.Clients != 1 {
			t.Fatalf("Stats: got %d budget disconnects, %d clients; want 1, 1", st.BudgetDisconnects, st.Clients)
		}
		mustPublish(t, s, "y", "") // "id: 6\ndata: \n\n": 14 bytes; 5*68 + 38 = 378 fits, 423 would not
		synctest.Wait()
		select {
		case <-busyDone:
			t.Fatal("a client whose queue fits the budget was disconnected for the bytes of an evicted one")
		default:
		}
		if st := s.Stats(); st.BudgetDisconnects != 1 || st.Clients != 1 {
			t.Errorf("Stats: got %d budget disconnects, %d clients; want 1, 1", st.BudgetDisconnects, st.Clients)
		}
	})
}

// serveTopic serves a stream of topic from s to w until ctx ends, and
// returns a channel closed once the handler returned.
func serveTopic(ctx context.Context, s *sse.Server, w *fakeWriter, topic string) <-chan struct{} {
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/?topic="+topic, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ServeHTTP(w, r)
	}()
	return done
}

// A client whose queue is full only because the writers are busy
// elsewhere is not slow: it is disconnected for a full queue only once its
// own write is found blocked. Here every writer is held by a client that
// stopped reading, so a client that reads waits for one with a growing
// queue; it keeps every event, and the stuck clients go once found.
func TestFullQueueWaitingForWriterKept(t *testing.T) {
	// 10 events queue for the waiting client; 100 park it too (see
	// parkAfter), its events then logged for it.
	// What the queues hold then, with s stuck clients: the events
	// (0…9: 90 bytes; 0…99: 990) and 24 bytes per entry. With 10 events,
	// each stuck client has 1 in flight and 9 queued, the waiting one 10
	// queued. With 100, the waiting client is parked at event 64, the
	// stuck ones at 65 (64 queued each), and the log holds 64…99: s*65 +
	// 64 + 36 entries, where s*100 + 100 would be queued without parking.
	for _, tc := range []struct {
		n    int
		held func(s int64) int64
	}{
		{10, func(s int64) int64 { return 90 + (s*10+10)*24 }},
		{100, func(s int64) int64 { return 990 + (s*65+64+36)*24 }},
	} {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) { testFullQueueWaitingForWriter(t, tc.n, tc.held) })
	}
}

func testFullQueueWaitingForWriter(t *testing.T, n int, held func(stuck int64) int64) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHubWithOptions[string](&sse.Options{QueueSize: 4, Heartbeat: -1})
		defer hub.Close()
		// As many stuck clients as the pool starts writers, registered
		// first so that the writers take them first.
		nstuck := max(4, runtime.GOMAXPROCS(0))
		cs := fakeClients(t, hub, nstuck+1, &sse.UpgradeOptions{Heartbeat: -1, WriteTimeout: time.Hour})
		stuck, healthy := cs[:nstuck], cs[nstuck]
		for _, c := range stuck {
			defer c.w.setBlock()()
		}
		want := ": connected\n\n"
		for i := range n {
			if err := hub.Broadcast(fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
			want += fmt.Sprintf("data: %d\n\n", i)
			synctest.Wait()
		}
		// No time passed: the stuck writes are not found yet, and the
		// healthy client has n events queued, over QueueSize.
		if err := healthy.conn.Err(); err != nil {
			t.Fatalf("the client waiting for a writer was disconnected: %v", err)
		}
		if got := healthy.w.Body(); got != ": connected\n\n" {
			t.Fatalf("healthy client written %q before the writers were free", got)
		}
		if st, want := hub.Stats(), held(int64(nstuck)); st.QueuedBytes != want {
			t.Errorf("QueuedBytes: got %d, want %d", st.QueuedBytes, want)
		}
		time.Sleep(time.Second) // the watchdog finds the stuck writes, which then run for 500 ms
		if err := hub.Broadcast(fmt.Sprint(n)); err != nil {
			t.Fatal(err)
		}
		want += fmt.Sprintf("data: %d\n\n", n)
		synctest.Wait()
		if got := healthy.w.Body(); got != want {
			t.Errorf("healthy client: got %d bytes, want %d (every event, once, in order)", len(got), len(want))
		}
		for i, c := range stuck {
			if c.conn.Err() == nil {
				t.Errorf("stuck client %d still connected", i)
			}
		}
		if st := hub.Stats(); st.SlowDisconnects != uint64(nstuck) || st.Clients != 1 || st.QueuedBytes != 0 {
			t.Errorf("Stats: got %d slow disconnects, %d clients, %d queued; want %d, 1, 0", st.SlowDisconnects, st.Clients, st.QueuedBytes, nstuck)
		}
	})
}
