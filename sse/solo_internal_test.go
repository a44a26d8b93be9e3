package sse

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coregx/stream/sse/internal/fanout"
)

// SoloLeft reports what solo still holds: its groups, the Conns they
// watch, the heartbeats they schedule, and whether a timer of theirs is
// left. The leak check after the tests (TestMain) fails unless all are
// zero.
func SoloLeft() (groups, watched, beats int, timers bool) {
	solo.mu.Lock()
	defer solo.mu.Unlock()
	for _, g := range solo.groups {
		watched += len(g.conns)
		beats += g.beats.Len() + g.writing
		timers = timers || g.gone.HasTimer() || g.beats.HasTimer()
	}
	return len(solo.groups), watched, beats, timers
}

// checkSoloEmpty fails unless solo holds nothing.
func checkSoloEmpty(t *testing.T) {
	t.Helper()
	if groups, watched, beats, timers := SoloLeft(); groups != 0 || watched != 0 || beats != 0 || timers {
		t.Fatalf("solo holds %d groups, %d watched Conns, %d heartbeats, timers %v; want none", groups, watched, beats, timers)
	}
}

// serving returns a context for the requests of one server, as net/http
// gives them: solo groups the lone Conns of a server.
func serving() context.Context {
	return context.WithValue(context.Background(), http.ServerContextKey, &http.Server{})
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
		srv := serving() // one group
		stuckConn := upgradeLone(t, srv, stuck, time.Second)
		release := stuck.setBlock()
		var conns []*Conn
		var ws []*blockingWriter
		for range 3 {
			w := &blockingWriter{h: http.Header{}}
			conns = append(conns, upgradeLone(t, srv, w, time.Second))
			ws = append(ws, w)
		}
		if groups, _, _, _ := SoloLeft(); groups != 1 {
			t.Fatalf("%d groups, want 1", groups)
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
		// The released heartbeat's goroutine ends the stuck Conn (Close
		// does not wait for a write in progress) and leaves solo.
		synctest.Wait()
		checkSoloEmpty(t)
	})
}

// Lone Conns of one server that handlers wait on (Done) are watched by
// one group of solo until they end: those whose client leaves end within fanout.PollEvery, those closed or
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
		srv := serving() // one group
		streams := make([]stream, n)
		defer func() { // on failure, let the handlers return
			for _, s := range streams {
				if s.conn != nil {
					s.conn.Close()
				}
			}
		}()
		for i := range streams {
			reqCtx, leave := context.WithCancel(srv)
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
		if groups, watched, beats, _ := SoloLeft(); groups != 1 || watched != n || beats != n/2 {
			t.Fatalf("solo has %d groups, watches %d Conns, beats %d; want 1, %d, %d", groups, watched, beats, n, n/2)
		}

		hub := NewHub[string]()
		defer hub.Close()
		if err := hub.Register(streams[0].conn); err != nil {
			t.Fatal(err)
		}
		if _, watched, _, _ := SoloLeft(); watched != n-1 {
			t.Errorf("registered: solo watches %d Conns, want %d", watched, n-1)
		}
		hub.Unregister(streams[0].conn)
		if _, watched, _, _ := SoloLeft(); watched != n {
			t.Errorf("unregistered: solo watches %d Conns, want %d", watched, n)
		}

		// Heartbeats are written meanwhile; the clients then leave
		// between two checks.
		time.Sleep(10*time.Second + fanout.PollEvery/2)
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
		time.Sleep(fanout.PollEvery)
		synctest.Wait()
		for i, s := range streams {
			select {
			case <-s.returned:
			default:
				t.Fatalf("stream %d still open %v after its client left", i, fanout.PollEvery)
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
		time.Sleep(fanout.PollEvery)
		synctest.Wait()
		if in := hub.engine().Inspect(); in.Clients != 0 || in.Timers {
			t.Errorf("idle hub: %d clients, timers %v; want none", in.Clients, in.Timers)
		}
	})
}

// Lone Conns in testing/synctest bubbles that run at once, of a server
// each or of none, are each watched and given heartbeats by a group in
// their own bubble: a group shared across bubbles would end a stream from
// another bubble (a fatal error) or wait for a timer of a bubble that
// ended.
func TestSoloParallelBubbles(t *testing.T) {
	for i := range 40 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				base := context.Background()
				if i%2 == 0 {
					base = serving()
				}
				ctx, leave := context.WithCancel(base)
				w := &blockingWriter{h: http.Header{}}
				conn := upgradeLone(t, ctx, w, time.Second)
				defer conn.Close()
				returned := make(chan struct{})
				go func() { <-conn.Done(); close(returned) }()
				time.Sleep(time.Duration(i+1)*time.Second + 500*time.Millisecond)
				leave()
				time.Sleep(fanout.PollEvery)
				synctest.Wait()
				select {
				case <-returned:
				default:
					t.Fatalf("still open %v after the client left", fanout.PollEvery)
				}
				w.mu.Lock()
				got := strings.Count(string(w.body), ": keep-alive\n\n")
				w.mu.Unlock()
				if got != i+1 {
					t.Errorf("%d heartbeats, want %d", got, i+1)
				}
			})
		})
	}
}

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
