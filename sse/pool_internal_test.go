package sse

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"testing/synctest"
	"time"
)

// A hub runs baseWorkers writers while no write stalls, however many
// clients wait and whatever GOMAXPROCS: writers that outnumber the
// fan-out's walk keep pace with it and write each event on its own.
func TestWritersIgnoreGOMAXPROCS(t *testing.T) {
	for _, tc := range []struct{ procs, want int }{{1, 4}, {2, 4}, {8, 4}, {16, 4}, {64, 4}} {
		t.Run(fmt.Sprint("GOMAXPROCS=", tc.procs), func(t *testing.T) {
			prev := runtime.GOMAXPROCS(tc.procs)
			defer runtime.GOMAXPROCS(prev)
			synctest.Test(t, func(t *testing.T) {
				hub := NewHubWithOptions[string](&Options{Heartbeat: -1})
				defer hub.Close()
				const n = 100
				recs := make([]*httptest.ResponseRecorder, n)
				conns := make([]*Conn, n)
				for i := range conns {
					recs[i] = httptest.NewRecorder()
					conn, err := UpgradeWithOptions(t.Context(), recs[i], httptest.NewRequest(http.MethodGet, "/", nil),
						&UpgradeOptions{WriteTimeout: time.Hour})
					if err != nil {
						t.Fatal(err)
					}
					defer conn.Close()
					if err := hub.Register(conn); err != nil {
						t.Fatal(err)
					}
					// Every client has a write in progress: a
					// worker that takes it waits for it.
					conn.lockWrite()
					conns[i] = conn
				}
				if err := hub.Broadcast("e"); err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
				p := &hub.core.pool
				p.mu.Lock()
				workers, waiting := p.workers, len(p.ready)-p.head
				p.mu.Unlock()
				if workers != tc.want || waiting != n-tc.want {
					t.Errorf("%d workers with %d clients waiting, want %d with %d", workers, waiting, tc.want, n-tc.want)
				}
				for _, c := range conns {
					c.unlockWrite()
				}
				synctest.Wait()
				for i, rec := range recs {
					if got, want := rec.Body.String(), connectedComment+"data: e\n\n"; got != want {
						t.Fatalf("client %d got %q, want %q", i, got, want)
					}
				}
				if got := hub.Stats().Delivered; got != n {
					t.Fatalf("Delivered = %d, want %d", got, n)
				}
			})
		})
	}
}
