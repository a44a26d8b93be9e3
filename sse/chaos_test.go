package sse_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

var chaosFull = flag.Bool("chaos.full", false, "run TestChaosResume at full size (100 000 events, 50 clients)")

var errCut = errors.New("chaos: cut by client")

// cutTransport cancels each request after a random number of bytes of
// its response, as a client going away does.
type cutTransport struct {
	base     http.RoundTripper
	maxBytes int
	stop     *atomic.Bool
	cuts     *atomic.Int64
}

func (c *cutTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	resp, err := c.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cutBody{rc: resp.Body, left: 1 + rand.IntN(c.maxBytes), cancel: cancel, t: c}
	return resp, nil
}

type cutBody struct {
	rc     io.ReadCloser
	left   int
	cancel context.CancelFunc
	t      *cutTransport
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left <= 0 && !b.t.stop.Load() {
		b.cancel()
		b.t.cuts.Add(1)
		return 0, errCut
	}
	n, err := b.rc.Read(p)
	b.left -= n
	return n, err
}

func (b *cutBody) Close() error {
	b.cancel()
	return b.rc.Close()
}

// connTracker records the server's open connections so that some can be
// closed at random.
type connTracker struct {
	mu    sync.Mutex
	conns map[net.Conn]bool
}

func (ct *connTracker) state(c net.Conn, s http.ConnState) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	switch s {
	case http.StateActive:
		ct.conns[c] = true
	case http.StateClosed, http.StateHijacked:
		delete(ct.conns, c)
	}
}

func (ct *connTracker) closeRandom() bool {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	for c := range ct.conns { // map order is random enough
		c.Close()
		delete(ct.conns, c)
		return true
	}
	return false
}

// TestChaosResume publishes over several topics while connections are
// cut from both sides; every client, reconnecting with Last-Event-ID
// through sse.Client, must end with every event of its topics, in order,
// exactly once.
func TestChaosResume(t *testing.T) {
	events, clients, timeout := 5000, 16, time.Minute
	if *chaosFull {
		events, clients, timeout = 100_000, 50, 5*time.Minute
	}
	if testing.Short() {
		events, clients, timeout = 1000, 8, 10*time.Second
	}
	topics := []string{"t0", "t1", "t2", "t3"}
	broker := sse.NewMemoryBroker(sse.HistoryLimits{MaxEvents: events + len(topics), MaxBytes: -1, MaxAge: -1})
	defer broker.Close()
	s := &sse.Server{
		Broker:  broker,
		Topics:  queryTopics,
		Options: sse.Options{Heartbeat: -1},
	}
	ct := &connTracker{conns: make(map[net.Conn]bool)}
	hs := httptest.NewUnstartedServer(s)
	hs.Config.ConnState = ct.state
	hs.Start()
	defer hs.Close()
	defer s.Close()

	// A first event per topic gives every client a position to start
	// from, so that even its first connection resumes.
	start := make(map[string]string)
	for _, tp := range topics {
		start[tp] = mustPublish(t, s, tp, tp+":start")
	}

	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var stop atomic.Bool
	var clientCuts, serverCuts, reconnects, gaps atomic.Int64
	tr := &cutTransport{base: hs.Client().Transport, maxBytes: 8 << 10, stop: &stop, cuts: &clientCuts}
	httpClient := &http.Client{Transport: tr}

	// Each client follows one or two topics.
	follow := make([][]string, clients)
	for i := range follow {
		follow[i] = []string{topics[i%len(topics)]}
		if i%3 == 0 {
			follow[i] = append(follow[i], topics[(i+1)%len(topics)])
		}
	}
	// The publisher decides the topic of each event up front, so that
	// every client knows how many events to wait for.
	plan := make([]int, events)
	perTopic := make(map[string]int)
	for i := range plan {
		plan[i] = rand.IntN(len(topics))
		perTopic[topics[plan[i]]]++
	}

	type result struct {
		got map[string][]int // per topic, the indices received
		err error
	}
	results := make([]result, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			res := result{got: make(map[string][]int)}
			defer func() { results[i] = res }()
			q := url.Values{"topic": follow[i]}
			want := 0
			var lastID string
			for _, tp := range follow[i] {
				want += perTopic[tp]
				if len(follow[i]) == 1 {
					lastID = start[tp]
				}
			}
			if len(follow[i]) > 1 {
				cur := url.Values{}
				for _, tp := range follow[i] {
					cur.Set(tp, start[tp])
				}
				lastID = cur.Encode()
			}
			header := http.Header{}
			header.Set("Last-Event-ID", lastID)
			c := &sse.Client{
				HTTPClient: httpClient,
				Header:     header,
				MinRetry:   time.Millisecond,
				MaxRetry:   5 * time.Millisecond,
				OnReconnect: func(error, time.Duration) {
					reconnects.Add(1)
				},
			}
			n := 0
			for ev, err := range c.Events(ctx, hs.URL+"?"+q.Encode()) {
				if err != nil {
					res.err = err
					return
				}
				if ev.Type == sse.GapEventType {
					gaps.Add(1)
					res.err = fmt.Errorf("gap event %q", ev.Data)
					return
				}
				tp, idx, ok := strings.Cut(ev.Data, ":")
				k, err := strconv.Atoi(idx)
				if !ok || err != nil {
					res.err = fmt.Errorf("event %q: not from the publisher", ev.Data)
					return
				}
				res.got[tp] = append(res.got[tp], k)
				if n++; n == want {
					return
				}
			}
		})
	}

	// Cut server-side connections at random while the clients run.
	cutterDone := make(chan struct{})
	go func() {
		defer close(cutterDone)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for !stop.Load() {
			<-tick.C
			if rand.IntN(2) == 0 && ct.closeRandom() {
				serverCuts.Add(1)
			}
		}
	}()

	began := time.Now()
	next := make(map[string]int)
	for i, k := range plan {
		tp := topics[k]
		if _, err := s.Publish(ctx, tp, sse.NewEvent(fmt.Sprintf("%s:%d", tp, next[tp]))); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		next[tp]++
		if i%25 == 24 {
			time.Sleep(time.Millisecond) // let cuts land while publishing
		}
	}
	published := time.Since(began)
	wg.Wait()
	stop.Store(true)
	<-cutterDone

	for i, r := range results {
		if r.err != nil {
			t.Errorf("client %d %v: %v (got %d events)", i, follow[i], r.err, len(r.got[follow[i][0]]))
			continue
		}
		for _, tp := range follow[i] {
			got := r.got[tp]
			if len(got) != perTopic[tp] {
				t.Errorf("client %d topic %s: got %d events, want %d", i, tp, len(got), perTopic[tp])
				continue
			}
			for k, x := range got {
				if x != k {
					t.Errorf("client %d topic %s: event %d is #%d, want #%d (in order, once)", i, tp, k, x, k)
					break
				}
			}
		}
	}
	st := s.Stats()
	t.Logf("events %d over %d topics, clients %d: published in %v, all delivered in %v", events, len(topics), clients, published, time.Since(began))
	t.Logf("cuts: client side %d, server side %d; reconnections %d; gaps %d", clientCuts.Load(), serverCuts.Load(), reconnects.Load(), gaps.Load())
	t.Logf("server: delivered %d, replayed %d, slow disconnects %d, client disconnects %d",
		st.Delivered, st.Replayed, st.SlowDisconnects, st.ClientDisconnects)
	if clientCuts.Load() == 0 || serverCuts.Load() == 0 {
		t.Errorf("cuts: got %d client side and %d server side, want some of each", clientCuts.Load(), serverCuts.Load())
	}
}
