package sse

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// SoloLeft reports what solo still holds: the Conns it watches, the
// heartbeats it schedules, and whether a timer of either is left. The
// leak check after the tests (TestMain) fails unless all are zero.
func SoloLeft() (watched, beats int, timers bool) {
	solo.mu.Lock()
	defer solo.mu.Unlock()
	return len(solo.conns), len(solo.beats.heap), solo.gone.timer != nil || solo.beats.timer != nil
}

// checkSoloEmpty fails unless solo holds nothing.
func checkSoloEmpty(t *testing.T) {
	t.Helper()
	if watched, beats, timers := SoloLeft(); watched != 0 || beats != 0 || timers {
		t.Fatalf("solo holds %d watched Conns, %d heartbeats, timers %v; want none", watched, beats, timers)
	}
}

// upgradeLone upgrades a request whose context ctx is into a lone Conn
// writing to w.
func upgradeLone(t *testing.T, ctx context.Context, w http.ResponseWriter, hb time.Duration) *Conn {
	t.Helper()
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	conn, err := UpgradeWithOptions(r.Context(), w, r, &UpgradeOptions{Heartbeat: hb})
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// A lone Conn with a heartbeat of 1s, idle for 2.5s, writes exactly two
// comments, at 1s and 2s; once it ended, none, and solo holds nothing
// for it.
func TestSoloHeartbeatBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &blockingWriter{h: http.Header{}}
		conn := upgradeLone(t, context.Background(), w, time.Second)
		body := func() string {
			w.mu.Lock()
			defer w.mu.Unlock()
			return string(w.body)
		}
		time.Sleep(time.Second - time.Nanosecond)
		synctest.Wait()
		if got, want := body(), ": connected\n\n"; got != want {
			t.Fatalf("a nanosecond before 1s: body %q, want %q", got, want)
		}
		time.Sleep(1500*time.Millisecond + time.Nanosecond)
		synctest.Wait()
		if got, want := body(), ": connected\n\n: keep-alive\n\n: keep-alive\n\n"; got != want {
			t.Fatalf("at 2.5s: body %q, want %q", got, want)
		}
		conn.Close()
		checkSoloEmpty(t)
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := strings.Count(body(), ": keep-alive"); got != 2 {
			t.Errorf("an hour after Close: %d heartbeats, want still 2", got)
		}
	})
}

// A heartbeat whose write blocks holds up no other Conn's, not even of
// those due at the same time: solo writes each on a goroutine of its own.
func TestSoloBlockedHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The stuck Conn comes first in the schedule: written in
		// turn, the others' heartbeats would wait behind its own.
		stuck := &blockingWriter{h: http.Header{}}
		stuckConn := upgradeLone(t, context.Background(), stuck, time.Second)
		release := stuck.setBlock()
		var conns []*Conn
		var ws []*blockingWriter
		for range 3 {
			w := &blockingWriter{h: http.Header{}}
			conns = append(conns, upgradeLone(t, context.Background(), w, time.Second))
			ws = append(ws, w)
		}
		time.Sleep(1500 * time.Millisecond) // the stuck heartbeat blocks since 1s
		synctest.Wait()
		for i, w := range ws {
			w.mu.Lock()
			got := string(w.body)
			w.mu.Unlock()
			if want := ": connected\n\n: keep-alive\n\n"; got != want {
				t.Errorf("Conn %d: body %q, want %q", i, got, want)
			}
		}
		release()
		stuckConn.Close()
		for _, c := range conns {
			c.Close()
		}
		checkSoloEmpty(t)
	})
}

// Lone Conns that handlers wait on (Done) are watched by solo until they
// end: those whose client leaves end within pollEvery, those closed or
// ended by their Upgrade context leave at once, and afterwards solo holds
// nothing. A Conn registered with a hub leaves solo to the hub's poll and
// comes back when unregistered.
func TestSoloForgetsEndedConns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 1000
		type stream struct {
			conn     *Conn
			leave    context.CancelFunc // the client goes away
			stop     context.CancelFunc // the Upgrade context ends
			returned chan struct{}
		}
		streams := make([]stream, n)
		defer func() { // on failure, let the handlers return
			for _, s := range streams {
				if s.conn != nil {
					s.conn.Close()
				}
			}
		}()
		for i := range streams {
			reqCtx, leave := context.WithCancel(context.Background())
			ctx, stop := context.WithCancel(context.Background())
			r := httptest.NewRequestWithContext(reqCtx, http.MethodGet, "/", nil)
			var hb time.Duration
			if i%2 == 0 {
				hb = time.Second
			}
			conn, err := UpgradeWithOptions(ctx, &blockingWriter{h: http.Header{}}, r, &UpgradeOptions{Heartbeat: hb})
			if err != nil {
				t.Fatal(err)
			}
			s := stream{conn: conn, leave: leave, stop: stop, returned: make(chan struct{})}
			go func() { <-conn.Done(); close(s.returned) }() // the guide's handler
			streams[i] = s
		}
		synctest.Wait()
		if watched, beats, _ := SoloLeft(); watched != n || beats != n/2 {
			t.Fatalf("solo watches %d Conns, beats %d; want %d, %d", watched, beats, n, n/2)
		}

		hub := NewHub[string]()
		defer hub.Close()
		if err := hub.Register(streams[0].conn); err != nil {
			t.Fatal(err)
		}
		if watched, _, _ := SoloLeft(); watched != n-1 {
			t.Errorf("registered: solo watches %d Conns, want %d", watched, n-1)
		}
		hub.Unregister(streams[0].conn)
		if watched, _, _ := SoloLeft(); watched != n {
			t.Errorf("unregistered: solo watches %d Conns, want %d", watched, n)
		}

		// Heartbeats are written meanwhile; the clients then leave
		// between two checks.
		time.Sleep(10*time.Second + pollEvery/2)
		for i, s := range streams {
			switch i % 3 {
			case 0:
				s.leave()
			case 1:
				s.conn.Close()
			case 2:
				s.stop()
			}
		}
		synctest.Wait()
		for i, s := range streams {
			select {
			case <-s.returned:
				if i%3 == 0 {
					t.Fatalf("stream %d ended before its client was checked for", i)
				}
			default:
				if i%3 != 0 {
					t.Fatalf("stream %d (closed or ended by its context) still open", i)
				}
			}
		}
		time.Sleep(pollEvery)
		synctest.Wait()
		for i, s := range streams {
			select {
			case <-s.returned:
			default:
				t.Fatalf("stream %d still open %v after its client left", i, pollEvery)
			}
			if err := s.conn.Err(); i%3 == 0 && !strings.Contains(err.Error(), "client went away") {
				t.Errorf("stream %d: Err() = %v, want client went away", i, err)
			}
			s.leave()
			s.stop()
		}
		checkSoloEmpty(t)
	})
}

// A hub's heartbeats and polls use the same mechanisms as solo's: while
// it has clients, they get a heartbeat after each 15s of silence; once
// they all left, it holds no heartbeat timer and stops polling after one
// last check.
func TestHubIdleHoldsNoTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := NewHub[string]()
		defer hub.Close()
		var conns []*Conn
		var ws []*blockingWriter
		for range 3 {
			w := &blockingWriter{h: http.Header{}}
			conn := upgradeLone(t, context.Background(), w, 0)
			if err := hub.Register(conn); err != nil {
				t.Fatal(err)
			}
			conns, ws = append(conns, conn), append(ws, w)
		}
		time.Sleep(59 * time.Second)
		synctest.Wait()
		for i, w := range ws {
			w.mu.Lock()
			got := string(w.body)
			w.mu.Unlock()
			if want := ": connected\n\n" + strings.Repeat(": keep-alive\n\n", 3); got != want {
				t.Errorf("client %d at 59s: body %q, want %q", i, got, want)
			}
		}
		for _, c := range conns {
			c.Close()
		}
		time.Sleep(pollEvery)
		synctest.Wait()
		h := hub.engine()
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.beats.heap) != 0 || h.beats.timer != nil || h.gone.armed {
			t.Errorf("idle hub: %d heartbeats, heartbeat timer %v, poll armed %v; want none",
				len(h.beats.heap), h.beats.timer != nil, h.gone.armed)
		}
	})
}
