package sse_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coregx/stream/sse"
)

// Clients whose write is blocked are parked (internal/fanout/park.go): fan-outs log the
// events once for all of them instead of queueing them for each. These
// tests check what the clients get: every event, once, in order, after
// however many parkings, and the queue limit, shutdown and removal as for
// any client.

// wantEvents returns the body of a stream that got the events from..to-1
// of broadcast(i) = "%04d".
func wantEvents(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "data: %04d\n\n", i)
	}
	return b.String()
}

// kiloEvent is the data of event i of the tests that broadcast events of
// kiloSize bytes on the wire.
func kiloEvent(i int) string { return fmt.Sprintf("%04d%s", i, strings.Repeat("x", 996)) }

const kiloSize = len("data: ") + 1000 + len("\n\n")

// broadcastKilo broadcasts k events of kiloSize bytes, numbered on from
// *n, then waits for every goroutine of the bubble to block.
func broadcastKilo(t *testing.T, hub *sse.Hub[string], n *int, k int) {
	t.Helper()
	for range k {
		if err := hub.Broadcast(kiloEvent(*n)); err != nil {
			t.Fatal(err)
		}
		*n++
	}
	synctest.Wait()
}

func TestParkedClientGetsEveryEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHubWithOptions[string](&sse.Options{Heartbeat: -1})
		defer hub.Close()
		cs := fakeClients(t, hub, 3, &sse.UpgradeOptions{Heartbeat: -1, WriteTimeout: time.Hour})
		a, b := cs[0], cs[1]
		n := 0
		send := func(k int) {
			t.Helper()
			for range k {
				if err := hub.Broadcast(fmt.Sprintf("%04d", n)); err != nil {
					t.Fatal(err)
				}
				n++
				synctest.Wait()
			}
			time.Sleep(10 * time.Millisecond) // the blocked writes are handed off
		}
		releaseA := a.w.setBlock()
		releaseB := b.w.setBlock()
		send(1)   // a and b block on event 0
		send(300) // both parked: the group logs 1…300 once
		// Held: events 0…300 of 12 bytes (3612), the two writes of
		// event 0 and the 300 events logged (302 entries of 24).
		if st := hub.Stats(); st.QueuedBytes != 301*12+302*24 {
			t.Errorf("QueuedBytes: got %d, want %d", st.QueuedBytes, 301*12+302*24)
		}
		releaseA() // a takes its events back from the log, and is live again
		synctest.Wait()
		send(50)
		releaseA = a.w.setBlock() // a blocks again: parked again, later in the log
		send(1)
		send(100)
		releaseB()
		synctest.Wait()
		send(20)
		releaseA()
		synctest.Wait()
		send(5)
		want := ": connected\n\n" + wantEvents(0, n)
		for i, x := range cs {
			if got := x.w.Body(); got != want {
				t.Errorf("client %d: got %d bytes, want %d (every event, once, in order)", i, len(got), len(want))
			}
		}
		if st := hub.Stats(); st.QueuedBytes != 0 || st.Clients != 3 || st.Delivered != uint64(3*n) {
			t.Errorf("Stats: got %d queued, %d clients, %d delivered; want 0, 3, %d", st.QueuedBytes, st.Clients, st.Delivered, 3*n)
		}
	})
}

// A parked client is disconnected as too slow once its queue, its events
// in the log, is full, like any other.
func TestParkedClientTooSlow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHubWithOptions[string](&sse.Options{Heartbeat: -1, QueueSize: 8})
		defer hub.Close()
		cs := fakeClients(t, hub, 2, &sse.UpgradeOptions{Heartbeat: -1, WriteTimeout: time.Hour})
		a := cs[0]
		defer a.w.setBlock()()
		broadcast := func(i int) {
			t.Helper()
			if err := hub.Broadcast(fmt.Sprintf("%04d", i)); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
		}
		broadcast(0)
		time.Sleep(time.Second)   // a's write is handed off, and runs for 500 ms
		for i := 1; i <= 8; i++ { // a, parked, holds 1…8: full
			broadcast(i)
		}
		if err := a.conn.Err(); err != nil {
			t.Fatalf("a disconnected with 8 events queued: %v", err)
		}
		broadcast(9)
		if a.conn.Err() == nil {
			t.Fatal("a still connected with 9 events queued, want it disconnected")
		}
		st := hub.Stats()
		if st.SlowDisconnects != 1 || st.Clients != 1 || st.QueuedBytes != 0 {
			t.Errorf("Stats: got %d slow disconnects, %d clients, %d queued; want 1, 1, 0", st.SlowDisconnects, st.Clients, st.QueuedBytes)
		}
		if got, want := cs[1].w.Body(), ": connected\n\n"+wantEvents(0, 10); got != want {
			t.Errorf("other client: got %q, want %q", got, want)
		}
	})
}

// Shutdown writes a parked client's events, then the retry hint.
func TestParkedClientShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHubWithOptions[string](&sse.Options{Heartbeat: -1, ShutdownRetry: 2 * time.Second, ShutdownJitter: -1})
		cs := fakeClients(t, hub, 1, &sse.UpgradeOptions{Heartbeat: -1, WriteTimeout: time.Hour})
		a := cs[0]
		release := a.w.setBlock()
		for i := range 5 {
			if err := hub.Broadcast(fmt.Sprintf("%04d", i)); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			time.Sleep(10 * time.Millisecond) // parked from event 1 on
		}
		done := make(chan error, 1)
		go func() { done <- hub.Shutdown(t.Context()) }()
		synctest.Wait()
		release()
		if err := <-done; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if got, want := a.w.Body(), ": connected\n\n"+wantEvents(0, 5)+"retry: 2000\n\n"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
}

// A Server's parked client leaves cleanly: its topic's group goes with
// it, and a client that comes later gets only what comes later.
func TestParkedClientLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &sse.Server{Topics: queryTopics, Options: sse.Options{Heartbeat: -1, WriteTimeout: time.Hour}}
		defer s.Close()
		ctx, cancel := context.WithCancel(t.Context())
		w := newFakeWriter()
		done := serveTopic(ctx, s, w, "x")
		synctest.Wait()
		release := w.setBlock()
		for i := range 10 {
			mustPublish(t, s, "x", fmt.Sprintf("%04d", i))
			synctest.Wait()
			time.Sleep(10 * time.Millisecond)
		}
		if st := s.Stats(); st.Clients != 1 || st.Topics != 1 {
			t.Fatalf("Stats: %d clients, %d topics; want 1, 1", st.Clients, st.Topics)
		}
		cancel() // the client leaves while parked
		release()
		<-done
		synctest.Wait()
		if st := s.Stats(); st.Clients != 0 || st.Topics != 0 || st.QueuedBytes != 0 {
			t.Fatalf("after it left: %d clients, %d topics, %d queued; want 0, 0, 0", st.Clients, st.Topics, st.QueuedBytes)
		}
		w2 := newFakeWriter()
		r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/?topic=x", nil)
		r.Header.Set("Last-Event-ID", "10")
		go s.ServeHTTP(w2, r)
		synctest.Wait()
		mustPublish(t, s, "x", "late")
		synctest.Wait()
		if got, want := w2.Body(), ": connected\n\nid: 11\ndata: late\n\n"; got != want {
			t.Errorf("later client: got %q, want %q", got, want)
		}
	})
}

// Clients that stop reading at once reach a full queue at once: the
// broadcast that finds them disconnects them all (more than a fan-out
// resets itself), counted, with one log line for all.
func TestManySlowClientsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs syncBuffer
		hub := sse.NewHubWithOptions[string](&sse.Options{
			Heartbeat: -1, QueueSize: 2,
			Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: dropTime})),
		})
		defer hub.Close()
		const n = 100
		cs := fakeClients(t, hub, n+1, &sse.UpgradeOptions{Heartbeat: -1, WriteTimeout: time.Hour})
		for _, c := range cs[:n] {
			defer c.w.setBlock()()
		}
		broadcast := func(i int) {
			t.Helper()
			start := time.Now()
			if err := hub.Broadcast(fmt.Sprintf("%04d", i)); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d != 0 {
				t.Errorf("broadcast %d took %v", i, d)
			}
			synctest.Wait()
		}
		broadcast(0)
		time.Sleep(time.Second) // every blocked write is found, and runs for 500 ms
		broadcast(1)
		broadcast(2)
		for i, c := range cs[:n] {
			if err := c.conn.Err(); err != nil {
				t.Fatalf("client %d disconnected with 2 events queued: %v", i, err)
			}
		}
		broadcast(3) // 3 queued: every stuck client is too slow
		for i, c := range cs[:n] {
			if err := c.conn.Err(); err == nil || !strings.Contains(err.Error(), "client too slow: 2 events queued") {
				t.Fatalf("client %d: got %v, want disconnected as too slow", i, err)
			}
		}
		if st := hub.Stats(); st.SlowDisconnects != n || st.Clients != 1 {
			t.Errorf("Stats: got %d slow disconnects, %d clients; want %d, 1", st.SlowDisconnects, st.Clients, n)
		}
		want := fmt.Sprintf("level=INFO msg=\"sse: disconnecting slow clients\" clients=%d queued=2\n", n)
		if got := logs.String(); got != want {
			t.Errorf("log: got %q, want %q", got, want)
		}
		if got, want := cs[n].w.Body(), ": connected\n\n"+wantEvents(0, 4); got != want {
			t.Errorf("the client that reads: got %q, want %q", got, want)
		}
	})
}

// dropTime leaves the time out of slog's text records.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey && len(groups) == 0 {
		return slog.Attr{}
	}
	return a
}

// TestParkingRandomized drives a hub with clients that block and unblock
// at random while events are broadcast, so that they are parked,
// unparked and parked again in every order, and some leave: every client
// that stays gets every event once, in order; one that leaves got a
// prefix of them; nothing stays queued.
func TestParkingRandomized(t *testing.T) {
	for seed := range uint64(18) {
		// From seed 12 on, events of 2 KiB: a parked client's writer
		// then takes its backlog from the log a write's worth at a time
		// (see TestParkedClientTakesOneWriteAtATime).
		pad := ""
		if seed >= 12 {
			pad = strings.Repeat("y", 2044)
		}
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, 1))
				hub := sse.NewHubWithOptions[string](&sse.Options{Heartbeat: -1, QueueSize: 4096})
				defer hub.Close()
				const n = 6
				cs := fakeClients(t, hub, n, &sse.UpgradeOptions{Heartbeat: -1, WriteTimeout: time.Hour})
				releases := make([]func(), n)
				left := make([]bool, n)
				events := 0
				for range 400 {
					switch r := rng.IntN(100); {
					case r < 65:
						if err := hub.Broadcast(fmt.Sprintf("%04d%s", events, pad)); err != nil {
							t.Fatal(err)
						}
						events++
					case r < 85:
						i := rng.IntN(n)
						if releases[i] == nil {
							releases[i] = cs[i].w.setBlock()
						} else {
							releases[i]()
							releases[i] = nil
						}
					case r < 98:
						time.Sleep(time.Duration(1+rng.IntN(10)) * time.Millisecond)
					default:
						i := rng.IntN(n)
						if !left[i] {
							// Closed first: Unregister waits for a
							// write in progress, which a blocked one
							// only ends when cut short.
							left[i] = true
							cs[i].conn.Close()
							hub.Unregister(cs[i].conn)
						}
					}
					synctest.Wait()
				}
				for i, release := range releases {
					if release != nil {
						release()
						releases[i] = nil
					}
				}
				synctest.Wait()
				want := ": connected\n\n"
				for i := range events {
					want += fmt.Sprintf("data: %04d%s\n\n", i, pad)
				}
				stayed := 0
				for i, c := range cs {
					got := c.w.Body()
					if left[i] {
						if !strings.HasPrefix(want, got) {
							t.Errorf("client %d, which left: got %d bytes, not a prefix of the events", i, len(got))
						}
						continue
					}
					stayed++
					if got != want {
						t.Errorf("client %d: got %d bytes, want %d (every event, once, in order); err %v", i, len(got), len(want), c.conn.Err())
					}
				}
				if st := hub.Stats(); st.QueuedBytes != 0 || st.Clients != stayed {
					t.Errorf("Stats: got %d queued, %d clients; want 0, %d", st.QueuedBytes, st.Clients, stayed)
				}
			})
		})
	}
}

// TestParkedClientTakesOneWriteAtATime checks that a parked client's
// writer takes from the log one write's worth of events at a time (64 KiB
// here: 65 events of 1 008 bytes), comes back for the rest once that
// write went through, and so holds no copy of its whole backlog while a
// write is blocked; and that every event still arrives once, in order.
func TestParkedClientTakesOneWriteAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHubWithOptions[string](&sse.Options{Heartbeat: -1})
		defer hub.Close()
		cs := fakeClients(t, hub, 3, &sse.UpgradeOptions{Heartbeat: -1, WriteTimeout: time.Hour})
		a, b := cs[0], cs[1]
		n := 0
		send := func(k int) {
			t.Helper()
			for range k {
				broadcastKilo(t, hub, &n, 1)
			}
			time.Sleep(10 * time.Millisecond) // the blocked writes are handed off
		}
		const size = kiloSize
		releaseA := a.w.setBlock()
		releaseB := b.w.setBlock()
		send(1)   // a and b block on event 0
		send(300) // both parked: the group logs 1…300 once
		// a's write of event 0 returns; its writer takes 65 events from
		// the log and blocks writing them.
		releaseA()
		releaseA = a.w.setBlock()
		synctest.Wait()
		time.Sleep(10 * time.Millisecond)
		// Held: events 0…300; entries: b's write of event 0, the 300 in
		// the log (b is parked at 1) and the 65 in a's write. A copy of
		// a's whole backlog would be 300 entries there.
		if got, want := hub.Stats().QueuedBytes, int64(301*size+(1+300+65)*24); got != want {
			t.Errorf("QueuedBytes while a's catch-up write is blocked: got %d, want %d", got, want)
		}
		releaseA()
		releaseB()
		synctest.Wait()
		send(5)
		want := ": connected\n\n"
		for i := range n {
			want += "data: " + kiloEvent(i) + "\n\n"
		}
		for i, x := range cs {
			if got := x.w.Body(); got != want {
				t.Errorf("client %d: got %d bytes, want %d (every event, once, in order)", i, len(got), len(want))
			}
		}
		if st := hub.Stats(); st.QueuedBytes != 0 || st.Delivered != uint64(3*n) {
			t.Errorf("Stats: got %d queued, %d delivered; want 0, %d", st.QueuedBytes, st.Delivered, 3*n)
		}
	})
}
