package sse_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coregx/stream/sse"
)

// TestClientRestart forces reconnections while connected, while waiting
// for a response and while waiting to reconnect: each reconnects at once
// with the last event ID and a fresh OnConnect, without OnReconnect or an
// error.
func TestClientRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newPipeTransport()
		var log reconnectLog
		token := "t1"
		var tokenMu sync.Mutex
		setToken := func(v string) {
			tokenMu.Lock()
			defer tokenMu.Unlock()
			token = v
		}
		c := &sse.Client{
			HTTPClient:  &http.Client{Transport: tr},
			OnReconnect: log.add,
			OnConnect: func(req *http.Request) error {
				tokenMu.Lock()
				defer tokenMu.Unlock()
				req.Header.Set("Authorization", token)
				return nil
			},
		}
		results := subscribe(t.Context(), c)
		type request struct {
			auth, last string
			at         time.Duration
		}
		start := time.Now()
		var reqs []request
		next := func() *pipeConn {
			conn := <-tr.conns
			reqs = append(reqs, request{conn.req.Header.Get("Authorization"), conn.req.Header.Get("Last-Event-ID"), conn.at.Sub(start)})
			return conn
		}

		// 1: connected; the token rotates after 5 s.
		w := next().open()
		io.WriteString(w, "id: 1\ndata: a\n\nid: 2\ndata: b\n\ndata: cut off")
		if ev := (<-results).(sse.Event); ev.Data != "a" {
			t.Fatalf("first event %+v", ev)
		}
		if ev := (<-results).(sse.Event); ev.Data != "b" {
			t.Fatalf("second event %+v", ev)
		}
		time.Sleep(5 * time.Second)
		setToken("t2")
		c.Restart()

		// 2: Restart while the request waits for its response.
		next()
		time.Sleep(2 * time.Second)
		setToken("t3")
		c.Restart()

		// 3: fails; Restart during the 3 s wait that follows.
		next().fail(errNetwork)
		time.Sleep(time.Second)
		c.Restart()

		// 4: ends the stream.
		next().status(http.StatusNoContent)
		for r := range results {
			t.Errorf("unexpected result %v", r)
		}
		if _, err := w.Write([]byte("\n\n")); err == nil {
			t.Error("first connection still open after Restart")
		}
		want := []request{
			{"t1", "", 0},
			{"t2", "2", 5 * time.Second},
			{"t3", "2", 7 * time.Second},
			{"t3", "2", 8 * time.Second},
		}
		if fmt.Sprint(reqs) != fmt.Sprint(want) {
			t.Errorf("requests (auth, Last-Event-ID, time):\n got  %v\n want %v", reqs, want)
		}
		if e := log.get(); len(e) != 1 || !errors.Is(e[0].err, errNetwork) {
			t.Errorf("OnReconnect calls %+v, want one, for the network error", e)
		}
	})
}

// TestClientRestartScope checks that Restart affects every running
// stream of the Client, none of another Client, and no later stream;
// and that it can be called from the loop body.
func TestClientRestartScope(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newPipeTransport()
		c := &sse.Client{HTTPClient: &http.Client{Transport: tr}}
		other := &sse.Client{HTTPClient: &http.Client{Transport: tr}}
		c.Restart() // no stream yet: nothing to do

		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var paths syncList
		go func() {
			for conn := range tr.conns {
				paths.add(conn.req.URL.Path)
				w := conn.open()
				go io.WriteString(w, "data: x\n\n")
			}
		}()
		var wg sync.WaitGroup
		restarted := false
		for _, p := range []struct {
			c    *sse.Client
			path string
		}{{c, "/a"}, {c, "/b"}, {other, "/other"}} {
			wg.Go(func() {
				for _, err := range p.c.Events(ctx, "http://stream.test"+p.path) {
					if err != nil {
						return
					}
					if p.path == "/a" && !restarted {
						restarted = true
						time.Sleep(time.Second)
						c.Restart() // from the loop body
					}
				}
			})
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		cancel()
		wg.Wait()
		close(tr.conns)
		count := map[string]int{}
		for _, p := range strings.Split(paths.String(), ",") {
			count[p]++
		}
		if count["/a"] != 2 || count["/b"] != 2 || count["/other"] != 1 {
			t.Errorf("connections %v, want two each for /a and /b, one for /other", paths.String())
		}
		c.Restart() // no stream left: nothing to do
	})
}

// TestClientRestartOnce checks that a Restart is used up by the
// reconnection it causes: the next end of a connection waits as usual.
func TestClientRestartOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newPipeTransport()
		var log reconnectLog
		c := &sse.Client{HTTPClient: &http.Client{Transport: tr}, OnReconnect: log.add}
		results := subscribe(t.Context(), c)
		w := (<-tr.conns).open()
		io.WriteString(w, "data: a\n\n")
		<-results
		c.Restart()
		conn := <-tr.conns
		w = conn.open()
		io.WriteString(w, "data: b\n\n")
		<-results
		w.Close()
		next := <-tr.conns
		e := log.want(t, 1)
		if waited := next.at.Sub(conn.at); waited != e[0].delay || waited < 3*time.Second {
			t.Errorf("reconnected after %v, want the reported delay %v of at least 3s", waited, e[0].delay)
		}
		next.status(http.StatusNoContent)
		onlyEvents(t, results)
	})
}
