package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natstest "github.com/nats-io/nats-server/v2/test"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// The services the cluster tests share with the machine, and how to
// start them when they are missing.
const (
	redisAddr  = "127.0.0.1:6379"
	startRedis = `redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log`
	natsURL    = "nats://127.0.0.1:4222"
	startNATS  = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log"
)

func randomName() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// redisBroker returns a -broker value on the machine's Redis with a key
// prefix of the test's own, whose keys are deleted when the test ends.
// A missing Redis fails the test.
func redisBroker(t *testing.T) string {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	t.Cleanup(func() { rdb.Close() })
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("Redis at %s: %v; start it with: %s", redisAddr, err, startRedis)
	}
	prefix := "ssehubtest:" + randomName() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := rdb.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
	})
	return "redis://" + redisAddr + "/0?prefix=" + prefix
}

// natsBroker returns a -broker value on the machine's NATS with a stream
// of the test's own, deleted when the test ends. A missing NATS fails
// the test.
func natsBroker(t *testing.T) string {
	t.Helper()
	nc, err := nats.Connect(natsURL, nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("NATS at %s: %v; start it with: %s", natsURL, err, startNATS)
	}
	t.Cleanup(nc.Close)
	name := randomName()
	stream := "SSEHUBTEST_" + strings.ToUpper(name)
	t.Cleanup(func() {
		if js, err := jetstream.New(nc); err == nil {
			js.DeleteStream(context.Background(), stream)
		}
	})
	return natsURL + "?stream=" + stream + "&subject=ssehubtest." + name
}

func TestCluster(t *testing.T) {
	for _, c := range []struct {
		name   string
		broker func(*testing.T) string
	}{
		{"Redis", redisBroker},
		{"NATS", natsBroker},
	} {
		t.Run(c.name, func(t *testing.T) {
			broker := c.broker(t)
			var hubs [3]*testHub
			for i := range hubs {
				hubs[i] = startHub(t, nil, "-anonymous", "-broker", broker)
			}
			a, b, c := hubs[0], hubs[1], hubs[2]
			for _, h := range hubs {
				code, body, _ := do(t, mustRequest("GET", h.base+"/readyz", ""))
				if code != http.StatusOK || body != "ready\n" {
					t.Errorf("readyz: got %d %q, want 200 ready", code, body)
				}
			}
			const topic = "https://example.com/cluster"
			onB := b.subscribe(t, "match="+topic, nil)
			onC := c.subscribe(t, "match="+topic, nil)
			var want []string
			for i := range 3 {
				d := "before " + strconv.Itoa(i)
				want = append(want, ev(a.mustPublish(t, form("topic", topic, "data", d)), d))
			}
			for i, w := range want {
				for name, s := range map[string]*stream{"B": onB, "C": onC} {
					if got := s.next(); got != w {
						t.Fatalf("%s, event %d: got %q, want %q", name, i, got, w)
					}
				}
			}
			lastSeen := strings.TrimPrefix(strings.SplitN(want[2], "\n", 2)[0], "id: ")

			// C stops: its subscriber resumes on B, with nothing lost
			// of what A published meanwhile and nothing repeated.
			if err := c.stop(); err != nil {
				t.Fatalf("stopping C: %v", err)
			}
			onC.expectEnd()
			var missed []string
			for i := range 3 {
				d := "while away " + strconv.Itoa(i)
				missed = append(missed, ev(a.mustPublish(t, form("topic", topic, "data", d)), d))
			}
			for name, resumed := range map[string]*stream{
				"Last-Event-ID": b.subscribe(t, "match="+topic, http.Header{"Last-Event-Id": {lastSeen}}),
				"last_event_id": b.subscribe(t, "match="+topic+"&last_event_id="+lastSeen, nil),
			} {
				if got := resumed.res.Header.Get("Mercure-Last-Event-ID"); got != lastSeen {
					t.Errorf("%s: got Mercure-Last-Event-ID %q, want %q", name, got, lastSeen)
				}
				for i, w := range missed {
					if got := resumed.next(); got != w {
						t.Errorf("%s, missed event %d: got %q, want %q", name, i, got, w)
					}
				}
			}
			live := a.mustPublish(t, form("topic", topic, "data", "live"))
			for i, w := range missed {
				if got := onB.next(); got != w {
					t.Errorf("B, event %d: got %q, want %q", i, got, w)
				}
			}
			if got, want := onB.next(), ev(live, "live"); got != want {
				t.Errorf("B: got %q, want %q", got, want)
			}
		})
	}
}

// embeddedNATS runs a NATS server with JetStream in this process, its
// store in dir, on port (-1: any), until the test ends.
func embeddedNATS(t *testing.T, dir string, port int) *server.Server {
	t.Helper()
	opts := natstest.DefaultTestOptions
	opts.Port, opts.JetStream, opts.StoreDir = port, true, dir
	s := natstest.RunServer(&opts)
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func TestReadyzFollowsTheBroker(t *testing.T) {
	dir := t.TempDir()
	ns := embeddedNATS(t, dir, -1)
	port := ns.Addr().(*net.TCPAddr).Port
	h := startHub(t, nil, "-anonymous", "-broker", ns.ClientURL())
	ready := func() int {
		code, _, _ := do(t, mustRequest("GET", h.base+"/readyz", ""))
		return code
	}
	waitFor := func(want int) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for got := ready(); got != want; got = ready() {
			if time.Now().After(deadline) {
				t.Fatalf("readyz: got %d, want %d within 15s", got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor(http.StatusOK)
	ns.Shutdown()
	ns.WaitForShutdown()
	waitFor(http.StatusServiceUnavailable)
	if code, _, _ := do(t, mustRequest("GET", h.base+"/healthz", "")); code != http.StatusOK {
		t.Errorf("healthz during the outage: got %d, want 200", code)
	}
	code, body, res := h.publish(t, h.admin(t), form("topic", "urn:during", "data", "x"))
	if code != http.StatusServiceUnavailable || res.Header.Get("Retry-After") != "5" {
		t.Errorf("publish during the outage: got %d %q Retry-After %q, want 503 with Retry-After 5", code, body, res.Header.Get("Retry-After"))
	}
	embeddedNATS(t, dir, port)
	waitFor(http.StatusOK)
	s := h.subscribe(t, "match=urn:after", nil)
	id := h.mustPublish(t, form("topic", "urn:after", "data", "x"))
	if id == "" {
		t.Error("publish after the outage: got no id")
	}
	if got, want := s.next(), ev(id, "x"); got != want {
		t.Errorf("update published after the outage: got %q, want %q", got, want)
	}
}
