package sse_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coregx/stream/sse"
)

// TestClientBackoffSchedule checks the browser-like schedule: a
// connection that delivered an event resets the delay to the base; only
// consecutive failures double it.
func TestClientBackoffSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newPipeTransport()
		var log reconnectLog
		c := &sse.Client{HTTPClient: &http.Client{Transport: tr}, OnReconnect: log.add}
		results := subscribe(t.Context(), c)
		var attempts []time.Time
		next := func() *pipeConn {
			conn := <-tr.conns
			attempts = append(attempts, conn.at)
			return conn
		}
		eventThenCut := func() {
			w := next().open()
			io.WriteString(w, "data: e\n\n")
			<-results
			time.Sleep(2 * time.Second)
			w.Close()
		}
		eventThenCut()          // 3s
		eventThenCut()          // 3s again
		next().fail(errNetwork) // 6s
		next().fail(errNetwork) // 12s
		w := next().open()      // opened, but no event: 24s
		io.WriteString(w, ": only a comment\n\ndata: cut off\n")
		w.Close()
		eventThenCut()          // 3s
		next().fail(errNetwork) // 6s
		next().status(http.StatusNoContent)
		for r := range results {
			t.Errorf("unexpected result %v", r)
		}
		bases := []time.Duration{3, 3, 6, 12, 24, 3, 6}
		entries := log.get()
		if len(entries) != len(bases) {
			t.Fatalf("%d reconnections, want %d", len(entries), len(bases))
		}
		for i, e := range entries {
			checkDelay(t, i, e.delay, bases[i]*time.Second)
		}
		// The wait starts when the connection ends.
		for i, e := range entries {
			ended := attempts[i]
			if i == 0 || i == 1 || i == 5 {
				ended = ended.Add(2 * time.Second)
			}
			if got := attempts[i+1].Sub(ended); got != e.delay {
				t.Errorf("reconnection %d: waited %v, want the reported %v", i, got, e.delay)
			}
		}
	})
}

// TestClientRetryFloor checks how the server's retry field is bounded
// below by RetryFloor.
func TestClientRetryFloor(t *testing.T) {
	tests := []struct {
		name  string
		floor time.Duration
		retry string
		want  time.Duration
	}{
		{"zero raised to default floor", 0, "0", 100 * time.Millisecond},
		{"default floor keeps larger retry", 0, "250", 250 * time.Millisecond},
		{"no floor honours zero", -1, "0", 0},
		{"no floor honours 5ms", -1, "5", 5 * time.Millisecond},
		{"custom floor", time.Second, "500", time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := newPipeTransport()
				var log reconnectLog
				c := &sse.Client{HTTPClient: &http.Client{Transport: tr}, RetryFloor: tt.floor, OnReconnect: log.add}
				results := subscribe(t.Context(), c)
				w := (<-tr.conns).open()
				io.WriteString(w, "retry: "+tt.retry+"\ndata: x\n\n")
				w.Close()
				(<-tr.conns).status(http.StatusNoContent)
				onlyEvents(t, results)
				e := log.want(t, 1)
				checkDelay(t, 0, e[0].delay, tt.want)
			})
		})
	}
}

// TestClientRetryZeroStorm has a server ask for "retry: 0" and close each
// connection after one event: by default the client makes at most one
// connection per 100 ms, and loses nothing.
func TestClientRetryZeroStorm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newPipeTransport()
		var log reconnectLog
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		c := &sse.Client{HTTPClient: &http.Client{Transport: tr}, OnReconnect: log.add}
		results := subscribe(ctx, c)
		go func() {
			for n := 1; ; n++ {
				var conn *pipeConn
				select {
				case conn = <-tr.conns:
				case <-ctx.Done():
					return
				}
				if last := conn.req.Header.Get("Last-Event-ID"); last != fmt.Sprint(n-1) && n > 1 {
					t.Errorf("connection %d: Last-Event-ID %q, want %d", n, last, n-1)
				}
				w := conn.open()
				fmt.Fprintf(w, "retry: 0\nid: %d\ndata: %d\n\n", n, n)
				w.Close()
			}
		}()
		got := 0
		for r := range results {
			if ev, ok := r.(sse.Event); ok {
				if got++; ev.Data != fmt.Sprint(got) {
					t.Fatalf("event %q, want %d", ev.Data, got)
				}
			}
		}
		// Each wait lasts between 100 and 120 ms.
		if got < 10000/120 || got > 10000/100+1 {
			t.Errorf("%d connections in 10 s, want between %d and %d", got, 10000/120, 10000/100+1)
		}
		for i, e := range log.get() {
			checkDelay(t, i, e.delay, 100*time.Millisecond)
		}
	})
}
