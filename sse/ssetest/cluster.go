package ssetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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

// ClusterOptions sizes [TestCluster]. The zero value is sized for CI.
type ClusterOptions struct {
	// Events is how many events the chaos run publishes; zero means
	// 2000.
	Events int

	// Clients is how many clients the chaos run moves between nodes;
	// zero means 9.
	Clients int
}

// TestCluster proves that [sse.Server] nodes sharing one backend behave
// as one server. newNode returns the broker of a new node; every broker
// it returns must share topics with the others (a MemoryBroker shared by
// all nodes does, as does a network broker on one backend), and the
// caller closes them (in t.Cleanup, say). Limits must retain every event
// the test publishes.
//
// FanOutAndFailover: three nodes; events published on A reach clients
// on B and C once, in order; B stops and its clients, resuming on C with
// their Last-Event-ID, miss nothing and repeat nothing. Chaos: clients
// following one or two of three topics move between nodes at random
// while events are published on any node, connections are cut by
// clients and by servers, and one node is replaced mid-run: every
// client ends with every event of its topics, in order, exactly once.
func TestCluster(t *testing.T, newNode func(t *testing.T) sse.Broker, opts *ClusterOptions) {
	t.Helper()
	if opts == nil {
		opts = &ClusterOptions{}
	}
	t.Run("FanOutAndFailover", func(t *testing.T) { testFailover(t, newNode) })
	t.Run("Chaos", func(t *testing.T) { testChaos(t, newNode, opts) })
}

// node is one server of a cluster.
type node struct {
	name string
	srv  *sse.Server
	hs   *httptest.Server
}

func startNode(t testing.TB, name string, b sse.Broker) *node {
	srv := &sse.Server{
		Broker:  b,
		Options: sse.Options{Heartbeat: -1},
		Topics: func(r *http.Request) ([]string, error) {
			if ts := r.URL.Query()["topic"]; len(ts) > 0 {
				return ts, nil
			}
			return nil, errors.New("no topic")
		},
	}
	n := &node{name: name, srv: srv, hs: httptest.NewServer(srv)}
	t.Cleanup(n.stop)
	return n
}

// stop ends the node's streams and closes its listener.
func (n *node) stop() {
	n.srv.Close()
	n.hs.CloseClientConnections()
	n.hs.Close()
}

// open connects to n following topics, resuming after lastID when set.
// It returns the response of an open stream, its opening comment read.
func (n *node) open(ctx context.Context, topics []string, lastID string) (*http.Response, error) {
	q := url.Values{"topic": topics}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.hs.URL+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := n.hs.Client().Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	buf := make([]byte, len(": connected\n\n"))
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != ": connected\n\n" {
		resp.Body.Close()
		return nil, fmt.Errorf("opening: got %q, %v", buf, err)
	}
	return resp, nil
}

// follower is a client of the cluster that checks what it receives:
// per topic, events "topic/0", "topic/1", ... in order, once each.
type follower struct {
	topics []string
	lastID string
	got    map[string]int // events received per topic
	trail  []string       // the last events received, for failures
}

func newFollower(topics ...string) *follower {
	return &follower{topics: topics, got: make(map[string]int)}
}

// read reads events from r until it ends or stop reports true, checking
// each; it returns the first wrong event as an error.
func (f *follower) read(r io.Reader, stop func() bool) error {
	rd := sse.NewReader(r)
	for !stop() {
		ev, err := rd.Next()
		if err != nil {
			return nil // the connection ended: resume later
		}
		if ev.Type == sse.GapEventType {
			return fmt.Errorf("got a gap event %q after %q, want none", ev.Data, f.lastID)
		}
		topic, n, ok := strings.Cut(ev.Data, "/")
		i, err := strconv.Atoi(n)
		if !ok || err != nil || !contains(f.topics, topic) {
			return fmt.Errorf("got event %q, want one of topics %q", ev.Data, f.topics)
		}
		if i != f.got[topic] {
			return fmt.Errorf("got %q after %d events of %q (last ID %q), want %s/%d: each event once, in order; before: %q", ev.Data, f.got[topic], topic, f.lastID, topic, f.got[topic], f.trail)
		}
		f.got[topic]++
		f.lastID = ev.ID
		f.note(ev.Data + " " + ev.ID)
	}
	return nil
}

// note keeps s among the last things the follower saw.
func (f *follower) note(s string) {
	if len(f.trail) == 8 {
		f.trail = f.trail[1:]
	}
	f.trail = append(f.trail, s)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func testFailover(t *testing.T, newNode func(t *testing.T) sse.Broker) {
	a := startNode(t, "A", newNode(t))
	b := startNode(t, "B", newNode(t))
	c := startNode(t, "C", newNode(t))
	const half = 50
	type conn struct {
		f    *follower
		resp *http.Response
		on   *node
	}
	var conns []*conn
	for _, n := range []*node{b, b, c, c} {
		topics := []string{"news"}
		if len(conns)%2 == 1 {
			topics = append(topics, "sport") // a cursor of two topics
		}
		f := newFollower(topics...)
		resp, err := n.open(t.Context(), f.topics, "")
		if err != nil {
			t.Fatalf("connecting to %s: %v", n.name, err)
		}
		defer resp.Body.Close()
		conns = append(conns, &conn{f, resp, n})
	}
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			for _, topic := range []string{"news", "sport"} {
				if _, err := a.srv.Publish(t.Context(), topic, sse.NewEvent(fmt.Sprintf("%s/%d", topic, i))); err != nil {
					t.Fatalf("Publish on A: %v", err)
				}
			}
		}
	}
	readAll := func(cn *conn, want int) {
		t.Helper()
		err := cn.f.read(cn.resp.Body, func() bool {
			for _, topic := range cn.f.topics {
				if cn.f.got[topic] < want {
					return false
				}
			}
			return true
		})
		if err != nil {
			t.Fatalf("client on %s: %v", cn.on.name, err)
		}
		for _, topic := range cn.f.topics {
			if cn.f.got[topic] != want {
				t.Fatalf("client on %s: got %d events of %s, want %d", cn.on.name, cn.f.got[topic], topic, want)
			}
		}
	}
	publish(0, half)
	for _, cn := range conns {
		readAll(cn, half)
	}
	b.stop()
	publish(half, 2*half) // while B's clients are away
	for _, cn := range conns {
		if cn.on != b {
			continue
		}
		cn.resp.Body.Close()
		resp, err := c.open(t.Context(), cn.f.topics, cn.f.lastID)
		if err != nil {
			t.Fatalf("resuming on C: %v", err)
		}
		defer resp.Body.Close()
		cn.resp, cn.on = resp, c
	}
	publish(2*half, 3*half)
	for _, cn := range conns {
		readAll(cn, 3*half)
	}
}

func testChaos(t *testing.T, newNode func(t *testing.T) sse.Broker, opts *ClusterOptions) {
	events, clients := opts.Events, opts.Clients
	if events <= 0 {
		events = 2000
	}
	if clients <= 0 {
		clients = 9
	}
	topics := []string{"t0", "t1", "t2"}
	var mu sync.Mutex // guards nodes
	nodes := []*node{startNode(t, "A", newNode(t)), startNode(t, "B", newNode(t)), startNode(t, "C", newNode(t))}
	pick := func() *node {
		mu.Lock()
		defer mu.Unlock()
		return nodes[rand.IntN(len(nodes))]
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// A client without Last-Event-ID gets only what is published after
	// it connects: every client starts after a first event per topic.
	var published [3]atomic.Int64
	seeds := make(map[string]string)
	for k, topic := range topics {
		id, err := nodes[k].srv.Publish(ctx, topic, sse.NewEvent(topic+"/0"))
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		seeds[topic] = id
		published[k].Store(1)
	}
	var done atomic.Bool
	var opened, refused atomic.Int64
	var wg sync.WaitGroup
	var restarted atomic.Bool
	wg.Go(func() { // the publisher, on any node
		defer done.Store(true)
		for i := 0; i < events; i++ {
			k := i % len(topics)
			data := fmt.Sprintf("%s/%d", topics[k], published[k].Load())
			for {
				_, err := pick().srv.Publish(ctx, topics[k], sse.NewEvent(data))
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					return
				}
				// A node closing: publish on another.
			}
			published[k].Add(1)
			if i == events/2 {
				mu.Lock()
				old := nodes[2]
				mu.Unlock()
				old.stop()
				n := startNode(t, old.name+"'", newNode(t))
				mu.Lock()
				nodes[2] = n
				mu.Unlock()
				restarted.Store(true)
			}
			if i%(events/10+1) == 1 { // servers cut their connections
				pick().hs.CloseClientConnections()
			}
		}
	})
	errs := make(chan error, clients)
	fs := make([]*follower, clients)
	for i := range clients {
		f := newFollower(topics[i%3])
		if i%2 == 1 {
			f = newFollower(topics[i%3], topics[(i+1)%3])
		}
		fs[i] = f
		if len(f.topics) == 1 {
			f.lastID = seeds[f.topics[0]]
		} else {
			f.lastID = url.Values{f.topics[0]: {seeds[f.topics[0]]}, f.topics[1]: {seeds[f.topics[1]]}}.Encode()
		}
		for _, topic := range f.topics {
			f.got[topic] = 1
		}
		wg.Go(func() {
			complete := func() bool {
				if !done.Load() {
					return false
				}
				for j, topic := range topics {
					if contains(f.topics, topic) && int64(f.got[topic]) < published[j].Load() {
						return false
					}
				}
				return true
			}
			for !complete() {
				if ctx.Err() != nil {
					errs <- fmt.Errorf("client %d on %q: got %v when the time ran out, want every event", i, f.topics, f.got)
					return
				}
				// Each connection lives a random while and reads a
				// random number of events: clients cut too.
				cctx, ccancel := context.WithTimeout(ctx, time.Duration(20+rand.IntN(200))*time.Millisecond)
				resp, err := pick().open(cctx, f.topics, f.lastID)
				if err != nil {
					ccancel()
					refused.Add(1)
					continue // node down or restarting: try another
				}
				opened.Add(1)
				f.note("connected, last ID " + f.lastID)
				limit := rand.IntN(300)
				n := 0
				err = f.read(resp.Body, func() bool { n++; return n > limit || complete() })
				resp.Body.Close()
				ccancel()
				if err != nil {
					errs <- fmt.Errorf("client %d on %q: %v", i, f.topics, err)
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d events on 3 topics, %d clients: %d connections, %d refused or failed", events, clients, opened.Load(), refused.Load())
	if !restarted.Load() {
		t.Error("no node was restarted")
	}
	total := int64(0)
	for k := range published {
		total += published[k].Load()
	}
	if want := int64(events + len(topics)); total != want {
		t.Errorf("published: got %d events, want %d (the publisher gave up when the time ran out)", total, want)
	}
	for i, f := range fs {
		for j, topic := range topics {
			if contains(f.topics, topic) && int64(f.got[topic]) != published[j].Load() {
				t.Errorf("client %d: got %d events of %s, want %d", i, f.got[topic], topic, published[j].Load())
			}
		}
	}
}
