package redisbroker_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/coregx/stream/redisbroker"
	"github.com/coregx/stream/sse"
	"github.com/coregx/stream/sse/ssetest"
	"github.com/redis/go-redis/v9"
)

const startRedis = `redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log`

// redisOptions returns the options of the Redis the tests use, REDIS_URL
// or redis://127.0.0.1:6379, failing the test when it does not answer.
func redisOptions(t testing.TB) *redis.Options {
	t.Helper()
	u := os.Getenv("REDIS_URL")
	if u == "" {
		u = "redis://127.0.0.1:6379"
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("REDIS_URL %q: %v", u, err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s does not answer (%v); start it with:\n\t%s", u, err, startRedis)
	}
	return opts
}

// client returns a client of the test Redis, closed after the test.
func client(t testing.TB, addr string) *redis.Client {
	opts := redisOptions(t)
	if addr != "" {
		opts.Addr = addr
		opts.MaxRetries = -1
		opts.DialTimeout = 200 * time.Millisecond
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

// prefix returns a key prefix of its own for a test, whose keys are
// deleted after it.
func prefix(t testing.TB) string {
	p := "ssetest:" + rand.Text()[:12] + ":"
	t.Cleanup(func() {
		c := redis.NewClient(redisOptions(t))
		defer c.Close()
		ctx := context.Background()
		iter := c.Scan(ctx, 0, p+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
	return p
}

func TestConformance(t *testing.T) {
	rdb := client(t, "")
	ssetest.TestBroker(t, func(t *testing.T, l sse.HistoryLimits) sse.Broker {
		return redisbroker.New(rdb, &redisbroker.Options{Prefix: prefix(t), Limits: l})
	})
}

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"news/sport:1", "news/sport:1"},
		{"a b*{c}?[d]%", "a%20b%2A%7Bc%7D%3F%5Bd%5D%25"},
		{"é\x00", "%C3%A9%00"},
	} {
		got := redisbroker.Escape(tc.in)
		if got != tc.want {
			t.Errorf("Escape(%q): got %q, want %q", tc.in, got, tc.want)
		}
		if back, err := url.PathUnescape(got); err != nil || back != tc.in {
			t.Errorf("PathUnescape(Escape(%q)): got %q, %v, want it back", tc.in, back, err)
		}
	}
}

// TestBoundedConnections follows 300 topics with 3 subscriptions each:
// the broker holds one connection for them all, besides the pool's.
func TestBoundedConnections(t *testing.T) {
	rdb := client(t, "")
	b := redisbroker.New(rdb, &redisbroker.Options{Prefix: prefix(t)})
	defer b.Close()
	var mu sync.Mutex
	got := 0
	all := make(chan struct{}) // closed at the 900th delivery
	for i := range 300 {
		for range 3 {
			sub, err := b.Subscribe(t.Context(), fmt.Sprint("t", i), sse.Newest, func(sse.Message) {
				mu.Lock()
				got++
				if got == 900 {
					close(all)
				}
				mu.Unlock()
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
		}
	}
	for i := range 300 {
		if _, err := b.Publish(t.Context(), fmt.Sprint("t", i), sse.NewEvent("x"), nil); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-all:
	case <-time.After(10 * time.Second):
	}
	// One blocked reader, plus what the pool opened for the commands.
	if n := rdb.PoolStats().TotalConns; n > 3 {
		t.Errorf("connections for 300 topics × 3 subscriptions: got %d, want at most 3", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if got != 900 {
		t.Fatalf("deliveries: got %d, want 900", got)
	}
}

// proxy forwards TCP connections to Redis until cut.
type proxy struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: target}
	p.start("127.0.0.1:0")
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) start(addr string) {
	var ln net.Listener
	var err error
	for range 100 { // the port of a cut proxy may take a moment to free
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			p.wg.Go(func() { io.Copy(up, c); up.Close() })
			p.wg.Go(func() { io.Copy(c, up); c.Close() })
		}
	})
}

// cut closes the listener and every connection: Redis is unreachable.
func (p *proxy) cut() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// TestOutage cuts the broker's connections to Redis, through a proxy, and
// restores them.
func TestOutage(t *testing.T) {
	var p *proxy
	ssetest.TestOutage(t, func(t *testing.T) sse.Broker {
		p = newProxy(t, redisOptions(t).Addr)
		b := redisbroker.New(client(t, p.addr), &redisbroker.Options{Prefix: prefix(t)})
		t.Cleanup(func() { b.Close() })
		return b
	}, func(*testing.T) { p.cut() }, func(*testing.T) { p.start(p.addr) })
}

// TestRestartedEmpty checks that after Redis lost its data, a client
// resuming from an ID it held gets a gap, not silence.
func TestRestartedEmpty(t *testing.T) {
	rdb := client(t, "")
	p := prefix(t)
	b := redisbroker.New(rdb, &redisbroker.Options{Prefix: p})
	defer b.Close()
	ctx := t.Context()
	old, err := b.Publish(ctx, "t", sse.NewEvent("old"), nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := rdb.Keys(ctx, p+"*").Result()
	if len(keys) == 0 || rdb.Del(ctx, keys...).Err() != nil {
		t.Fatalf("deleting %v failed", keys)
	}
	for _, tc := range []struct {
		name   string
		events []string
	}{{"nothing since", nil}, {"new events since", []string{"new"}}} {
		var want []sse.Message
		for _, d := range tc.events {
			m, err := b.Publish(ctx, "t", sse.NewEvent(d), nil)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, m)
		}
		h, err := b.History(ctx, "t", old.Event.ID)
		if err != nil || !h.Gap || len(h.Messages) != len(want) {
			t.Errorf("%s: History(ID before the loss): got %+v, %v, want a gap and %d events", tc.name, h, err, len(want))
		}
	}
}
