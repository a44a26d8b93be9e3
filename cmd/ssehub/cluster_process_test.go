package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// envRedisBroker returns a -broker value on the Redis of REDIS_URL
// (default redis://127.0.0.1:6379/0) with a key prefix of the test's
// own, whose keys are deleted when the test ends. A missing Redis fails
// the test.
func envRedisBroker(t *testing.T) string {
	t.Helper()
	raw := os.Getenv("REDIS_URL")
	if raw == "" {
		raw = "redis://" + redisAddr + "/0"
	}
	opts, err := redis.ParseURL(raw)
	if err != nil {
		t.Fatalf("REDIS_URL %q: %v", raw, err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("Redis at %s (REDIS_URL): %v; start it with: %s", raw, err, startRedis)
	}
	prefix := "ssehubtest:" + randomName() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := rdb.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
	})
	u, _ := url.Parse(raw)
	q := u.Query()
	q.Set("prefix", prefix)
	u.RawQuery = q.Encode()
	return u.String()
}

// envNATSBroker returns a -broker value on the NATS of NATS_URL (default
// nats://127.0.0.1:4222) with a stream and subjects of the test's own,
// the stream deleted when the test ends. A missing NATS fails the test.
func envNATSBroker(t *testing.T) string {
	t.Helper()
	raw := os.Getenv("NATS_URL")
	if raw == "" {
		raw = natsURL
	}
	nc, err := nats.Connect(raw, nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("NATS at %s (NATS_URL): %v; start it with: %s", raw, err, startNATS)
	}
	t.Cleanup(nc.Close)
	name := randomName()
	stream := "SSEHUBTEST_" + strings.ToUpper(name)
	t.Cleanup(func() {
		if js, err := jetstream.New(nc); err == nil {
			js.DeleteStream(context.Background(), stream)
		}
	})
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("NATS_URL %q: %v", raw, err)
	}
	q := u.Query()
	q.Set("stream", stream)
	q.Set("subject", "ssehubtest."+name)
	u.RawQuery = q.Encode()
	return u.String()
}

// buildHub builds the ssehub command into dir with the go command of the
// toolchain running the test.
func buildHub(t *testing.T, dir string) string {
	t.Helper()
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goCmd); err != nil {
		goCmd = "go"
	}
	bin := filepath.Join(dir, "ssehub")
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, goCmd, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// hubProcess is a hub running as a process of its own.
type hubProcess struct {
	*testHub
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process was waited for
}

// startProcess starts bin with -addr 127.0.0.1:0, the test key and args,
// and kills it when the test ends.
func startProcess(t *testing.T, bin string, args ...string) *hubProcess {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0", "-jwt-key", testSecret}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SSEHUB_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	p := &hubProcess{testHub: &testHub{}, cmd: cmd, exited: make(chan struct{})}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	ready := make(chan string, 1)
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			p.mu.Unlock()
			if _, rest, ok := strings.Cut(line, "ssehub: listening\" url="); ok && !sent {
				ready <- strings.Fields(rest)[0]
				sent = true
			}
		}
		if !sent {
			close(ready)
		}
		cmd.Wait()
	}()
	select {
	case u, ok := <-ready:
		if !ok {
			<-p.exited
			t.Fatalf("hub process did not start (%v):\n%s", cmd.ProcessState, p.logs())
		}
		p.url = u
		p.base = strings.TrimSuffix(u, "/.well-known/mercure")
		p.resource = u
	case <-time.After(10 * time.Second):
		t.Fatalf("hub process did not start within 10s:\n%s", p.logs())
	}
	return p
}

// kill ends the process with SIGKILL: no graceful shutdown, no
// subscription event.
func (p *hubProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill: %v", err)
	}
	<-p.exited
}

// listing returns the body of GET path on h with an admin token, failing
// the test unless it answers 200.
func (h *testHub) listing(t *testing.T, path string) (body, lastEventID string) {
	t.Helper()
	code, body, res := do(t, mustRequest("GET", h.base+path, h.admin(t)))
	if code != http.StatusOK {
		t.Fatalf("GET %s: got %d %q, want 200", path, code, body)
	}
	_, rest, _ := strings.Cut(res.Header.Get("Link"), `last-event-id="`)
	last, _, _ := strings.Cut(rest, `"`)
	return body, last
}

// collection is the body of the subscription collection path holding
// docs, as the hub writes it.
func collection(path string, docs ...string) string {
	sort.Slice(docs, func(i, j int) bool {
		var a, b struct{ ID string }
		json.Unmarshal([]byte(docs[i]), &a)
		json.Unmarshal([]byte(docs[j]), &b)
		return a.ID < b.ID
	})
	return `{"id":"` + path + `","subscriptions":[` + strings.Join(docs, ",") + `],"type":"subscriptions"}` + "\n"
}

// subscribersOf returns the subscribers of the subscriptions a
// collection body lists, by the match of each.
func subscribersOf(t *testing.T, body string) map[string][]string {
	t.Helper()
	var c struct {
		Subscriptions []struct{ Match, Subscriber string }
	}
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		t.Fatalf("listing %q: %v", body, err)
	}
	out := map[string][]string{}
	for _, s := range c.Subscriptions {
		out[s.Match] = append(out[s.Match], s.Subscriber)
	}
	return out
}

// TestClusterProcesses runs three ssehub processes on one broker: an
// update published on one reaches the subscribers of the two others;
// once one process is killed, its subscriber resumes on another with
// every update published meanwhile, once, and the subscriptions API of
// every hub lists the subscriptions of the cluster, those of the killed
// hub until -subscriptions-ttl passes.
func TestClusterProcesses(t *testing.T) {
	bin := buildHub(t, t.TempDir())
	for _, c := range []struct {
		name   string
		broker func(*testing.T) string
	}{
		{"Redis", envRedisBroker},
		{"NATS", envNATSBroker},
	} {
		t.Run(c.name, func(t *testing.T) {
			const ttl = 1500 * time.Millisecond
			broker := c.broker(t)
			var hubs [3]*hubProcess
			for i := range hubs {
				hubs[i] = startProcess(t, bin, "-anonymous", "-subscriptions", "-subscriptions-ttl", ttl.String(), "-broker", broker)
			}
			a, b, c := hubs[0], hubs[1], hubs[2]
			for _, h := range hubs {
				code, body, _ := do(t, mustRequest("GET", h.base+"/readyz", ""))
				if code != http.StatusOK || body != "ready\n" {
					t.Fatalf("readyz: got %d %q, want 200 ready", code, body)
				}
			}
			const topic = "https://example.com/cluster"
			// Opened first: the creation of its own subscription is all
			// the others know of it.
			everything := a.subscribe(t, "match=*", http.Header{"Authorization": {"Bearer " + a.admin(t)}})
			onB := b.subscribe(t, "match="+topic+"&match=urn:node:b", nil)
			onC := c.subscribe(t, "match="+topic+"&match=urn:node:c", nil)
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

			// Every hub lists the four subscriptions of B and C.
			const all = "/.well-known/mercure/subscriptions"
			listed, _ := a.listing(t, all)
			subs := subscribersOf(t, listed)
			if len(subs["*"]) != 1 || len(subs["urn:node:b"]) != 1 || len(subs["urn:node:c"]) != 1 {
				t.Fatalf("A lists %s, want one subscriber on each of *, urn:node:b and urn:node:c", listed)
			}
			sb, sc := subs["urn:node:b"][0], subs["urn:node:c"][0]
			docsB := []string{subscriptionDoc("exact", topic, sb, true, nil), subscriptionDoc("exact", "urn:node:b", sb, true, nil)}
			docsC := []string{subscriptionDoc("exact", topic, sc, true, nil), subscriptionDoc("exact", "urn:node:c", sc, true, nil)}
			docsA := []string{subscriptionDoc("exact", "*", subs["*"][0], true, nil)}
			wantAll := collection(all, slices.Concat(docsA, docsB, docsC)...)
			for name, h := range map[string]*hubProcess{"A": a, "B": b, "C": c} {
				if got, _ := h.listing(t, all); got != wantAll {
					t.Errorf("%s lists %s, want %s", name, got, wantAll)
				}
			}

			// C is killed: its subscriber resumes on B, with nothing lost
			// of what A published meanwhile and nothing repeated.
			c.kill(t)
			onC.expectEnd()
			var missed []string
			for i := range 3 {
				d := "while away " + strconv.Itoa(i)
				missed = append(missed, ev(a.mustPublish(t, form("topic", topic, "data", d)), d))
			}
			resumed := map[string]*stream{
				"Last-Event-ID": b.subscribe(t, "match="+topic, http.Header{"Last-Event-Id": {lastSeen}}),
				"last_event_id": b.subscribe(t, "match="+topic+"&last_event_id="+lastSeen, nil),
			}
			for name, s := range resumed {
				if got := s.res.Header.Get("Mercure-Last-Event-ID"); got != lastSeen {
					t.Errorf("%s: got Mercure-Last-Event-ID %q, want %q", name, got, lastSeen)
				}
				for i, w := range missed {
					if got := s.next(); got != w {
						t.Errorf("%s, missed event %d: got %q, want %q", name, i, got, w)
					}
				}
			}
			live := ev(a.mustPublish(t, form("topic", topic, "data", "live")), "live")
			for name, s := range resumed {
				if got := s.next(); got != live {
					t.Errorf("%s: got %q, want %q", name, got, live)
				}
			}
			for i, w := range append(missed, live) {
				if got := onB.next(); got != w {
					t.Errorf("B, event %d: got %q, want %q", i, got, w)
				}
			}

			// The subscriptions of C, which never ended them, stop being
			// listed once the TTL passes; those of B stay.
			listed, _ = b.listing(t, all)
			wantAfter := slices.Concat(docsA, docsB)
			for _, s := range subscribersOf(t, listed)[topic] {
				if s != sb && s != sc {
					wantAfter = append(wantAfter, subscriptionDoc("exact", topic, s, true, nil))
				}
			}
			if len(wantAfter) != 5 {
				t.Fatalf("B lists %s, want its own four subscriptions (and C's until the TTL passes)", listed)
			}
			wantList := collection(all, wantAfter...)
			deadline := time.Now().Add(4 * ttl)
			for name, h := range map[string]*hubProcess{"A": a, "B": b} {
				for {
					got, _ := h.listing(t, all)
					if got == wantList {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s lists %s %s after C was killed, want %s", name, got, 4*ttl, wantList)
					}
					time.Sleep(100 * time.Millisecond)
				}
			}

			// Meanwhile B published heartbeats, which reach nobody: the
			// wildcard subscriber got subscription events and updates.
			end := a.mustPublish(t, form("topic", "urn:end", "data", "end"))
			for {
				got := everything.next()
				if got == ev(end, "end") {
					break
				}
				if !strings.HasPrefix(got, "event: mercure\nid: ") && !strings.HasPrefix(got, "id: ") ||
					!strings.Contains(got, "\ndata: {\"active\":") && !strings.Contains(got, "\ndata: before ") &&
						!strings.Contains(got, "\ndata: while away ") && !strings.Contains(got, "\ndata: live\n") {
					t.Fatalf("the wildcard subscriber got %q, want subscription events and updates", got)
				}
			}
		})
	}
}

// TestClusterSubscriptions runs two hubs on one broker: a subscription
// opened on A is announced to, and listed by, B, until it ends.
func TestClusterSubscriptions(t *testing.T) {
	for _, c := range []struct {
		name   string
		broker func(*testing.T) string
	}{
		{"Redis", envRedisBroker},
		{"NATS", envNATSBroker},
	} {
		t.Run(c.name, func(t *testing.T) {
			broker := c.broker(t)
			// No heartbeat during the test: the cursors are exact.
			args := []string{"-anonymous", "-subscriptions", "-subscriptions-ttl", "1h", "-broker", broker}
			a, b := startHub(t, nil, args...), startHub(t, nil, args...)
			watch := b.subscribe(t, "match_urlpattern=/.well-known/mercure/subscriptions/exact/:match/:subscriber",
				http.Header{"Authorization": {"Bearer " + b.admin(t)}})
			const byMatch = "/.well-known/mercure/subscriptions/exact/urn%3Acluster"
			if got, _ := b.listing(t, byMatch); got != collection(byMatch) {
				t.Errorf("before: B lists %s, want none", got)
			}

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", a.url+"?match=urn:cluster", nil)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			createdID, data := subscriptionEvent(t, watch.next())
			var d struct{ Subscriber string }
			json.Unmarshal([]byte(data), &d)
			if !uuidURN.MatchString(d.Subscriber) {
				t.Fatalf("got subscriber %q, want a urn:uuid", d.Subscriber)
			}
			doc := subscriptionDoc("exact", "urn:cluster", d.Subscriber, true, nil)
			if data != doc {
				t.Errorf("created: got %s, want %s", data, doc)
			}
			one := byMatch + "/" + rfc6570(d.Subscriber)
			for path, want := range map[string]string{byMatch: collection(byMatch, doc), one: doc + "\n"} {
				for name, h := range map[string]*testHub{"A": a, "B": b} {
					got, last := h.listing(t, path)
					if got != want || last != createdID {
						t.Errorf("%s %s: got %s with last-event-id %q, want %s with %q", name, path, got, last, want, createdID)
					}
				}
			}

			cancel() // A's subscriber leaves
			endedID, data := subscriptionEvent(t, watch.next())
			if want := subscriptionDoc("exact", "urn:cluster", d.Subscriber, false, nil); data != want {
				t.Errorf("terminated: got %s, want %s", data, want)
			}
			for name, h := range map[string]*testHub{"A": a, "B": b} {
				if got, last := h.listing(t, byMatch); got != collection(byMatch) || last != endedID {
					t.Errorf("after: %s lists %s with last-event-id %q, want none with %q", name, got, last, endedID)
				}
				if code, body, _ := do(t, mustRequest("GET", h.base+one, h.admin(t))); code != http.StatusNotFound {
					t.Errorf("after: %s %s: got %d %q, want 404", name, one, code, body)
				}
			}
		})
	}
}
