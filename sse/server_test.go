package sse_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coregx/stream/sse"
)

// queryTopics follows the topics named by the "topic" query parameters,
// "main" when there is none.
func queryTopics(r *http.Request) ([]string, error) {
	if ts := r.URL.Query()["topic"]; len(ts) > 0 {
		return ts, nil
	}
	return []string{"main"}, nil
}

// topicServer serves s on loopback; s is closed before the listener.
func topicServer(t *testing.T, s *sse.Server) *httptest.Server {
	t.Helper()
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	t.Cleanup(func() { s.Close() })
	return hs
}

func mustPublish(t *testing.T, s *sse.Server, topic, data string) string {
	t.Helper()
	id, err := s.Publish(t.Context(), topic, sse.NewEvent(data))
	if err != nil {
		t.Fatalf("Publish(%q, %q): got %v, want nil", topic, data, err)
	}
	return id
}

func TestServerLiveSingleTopic(t *testing.T) {
	s := &sse.Server{Options: sse.Options{Heartbeat: -1}}
	hs := topicServer(t, s)
	st := get(t, hs.Client(), hs.URL)
	st.expect(": connected\n\n")
	if got := mustPublish(t, s, "", "a"); got != "1" {
		t.Errorf("Publish: got ID %q, want %q", got, "1")
	}
	id, err := s.Publish(t.Context(), "", &sse.Event{Type: "t", ID: "own-7", Data: "b\nc"})
	if err != nil || id != "own-7" {
		t.Errorf("Publish with ID: got %q, %v, want %q, nil", id, err, "own-7")
	}
	st.expect("id: 1\ndata: a\n\nevent: t\nid: own-7\ndata: b\ndata: c\n\n")
	if _, err := s.Publish(t.Context(), "", sse.NewEvent("x").WithID("a\nb")); !errors.Is(err, sse.ErrInvalidEvent) {
		t.Errorf("Publish(bad ID): got %v, want ErrInvalidEvent", err)
	}
	mustPublish(t, s, "", "d")
	st.expect("id: 2\ndata: d\n\n")
}

func TestServerResumeSingleTopic(t *testing.T) {
	// The history keeps 4 events: e2..e5 are retained, e1 is pruned.
	const gap = "event: sse-gap\ndata: 2\n\n" + "id: 2\ndata: e2\n\nid: 3\ndata: e3\n\nid: 4\ndata: e4\n\nid: 5\ndata: e5\n\n"
	for _, tc := range []struct {
		name   string
		lastID string
		query  bool // send it as the lastEventId query parameter
		want   string
	}{
		{"after 3", "3", false, "id: 4\ndata: e4\n\nid: 5\ndata: e5\n\n"},
		{"after 4 by query", "4", true, "id: 5\ndata: e5\n\n"},
		{"up to date", "5", false, ""},
		{"oldest retained", "2", false, "id: 3\ndata: e3\n\nid: 4\ndata: e4\n\nid: 5\ndata: e5\n\n"},
		{"newest pruned", "1", false, "id: 2\ndata: e2\n\nid: 3\ndata: e3\n\nid: 4\ndata: e4\n\nid: 5\ndata: e5\n\n"},
		{"garbage", "garbage", false, gap},
		{"negative", "-1", false, gap},
		{"leading zeros", "0004", false, gap},
		{"huge number", strings.Repeat("9", 30), false, gap},
		{"huge", strings.Repeat("x", 100<<10), false, gap},
		{"other topic", "6", false, gap},
		{"cursor", "main=4&other=6", false, gap},
	} {
		t.Run(tc.name, func(t *testing.T) {
			broker := sse.NewMemoryBroker(sse.HistoryLimits{MaxEvents: 4})
			t.Cleanup(func() { broker.Close() })
			s := &sse.Server{Broker: broker, Topics: queryTopics, Options: sse.Options{Heartbeat: -1}}
			hs := topicServer(t, s)
			for i := 1; i <= 5; i++ {
				mustPublish(t, s, "main", fmt.Sprintf("e%d", i))
			}
			mustPublish(t, s, "other", "o6")
			var st *stream
			if tc.query {
				st = get(t, hs.Client(), hs.URL+"?lastEventId="+tc.lastID)
			} else {
				st = get(t, hs.Client(), hs.URL, "Last-Event-ID", tc.lastID)
			}
			st.expect(": connected\n\n" + tc.want)
			mustPublish(t, s, "main", "live")
			st.expect("id: 7\ndata: live\n\n")
		})
	}
}

func TestServerResumeSeveralTopics(t *testing.T) {
	s := &sse.Server{Topics: queryTopics, Options: sse.Options{Heartbeat: -1}}
	hs := topicServer(t, s)
	url := hs.URL + "?topic=b&topic=a&topic=a"
	st := get(t, hs.Client(), url)
	st.expect(": connected\n\n")
	mustPublish(t, s, "a", "a1") // ID 1
	mustPublish(t, s, "b", "b1") // ID 2
	mustPublish(t, s, "a", "a2") // ID 3
	st.expect("id: a=1&b=\ndata: a1\n\nid: a=1&b=2\ndata: b1\n\nid: a=3&b=2\ndata: a2\n\n")

	for _, tc := range []struct {
		name, lastID, want string
	}{
		{"after a1", "a=1&b=",
			"id: a=3&b=\ndata: a2\n\nid: a=3&b=2\ndata: b1\n\n"},
		{"up to date", "a=3&b=2", ""},
		{"after b1 only", "b=2&a=1", "id: a=3&b=2\ndata: a2\n\n"},
		{"malformed", "a=1&b=%zz",
			"event: sse-gap\ndata: a=1\n\nevent: sse-gap\ndata: b=2\n\n" +
				"id: a=1&b=\ndata: a1\n\nid: a=3&b=\ndata: a2\n\nid: a=3&b=2\ndata: b1\n\n"},
		{"topic missing", "a=3",
			"event: sse-gap\ndata: b=2\n\nid: a=3&b=2\ndata: b1\n\n"},
		{"plain ID", "3",
			"event: sse-gap\ndata: a=1\n\nevent: sse-gap\ndata: b=2\n\n" +
				"id: a=1&b=\ndata: a1\n\nid: a=3&b=\ndata: a2\n\nid: a=3&b=2\ndata: b1\n\n"},
		{"unknown IDs", "a=99&b=x",
			"event: sse-gap\ndata: a=1\n\nevent: sse-gap\ndata: b=2\n\n" +
				"id: a=1&b=\ndata: a1\n\nid: a=3&b=\ndata: a2\n\nid: a=3&b=2\ndata: b1\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := get(t, hs.Client(), url, "Last-Event-ID", tc.lastID)
			st.expect(": connected\n\n" + tc.want)
		})
	}
	// Live events after a replay carry the heads of both topics.
	st2 := get(t, hs.Client(), url, "Last-Event-ID", "a=1&b=")
	st2.expect(": connected\n\nid: a=3&b=\ndata: a2\n\nid: a=3&b=2\ndata: b1\n\n")
	mustPublish(t, s, "b", "b2") // ID 4
	st.expect("id: a=3&b=4\ndata: b2\n\n")
	st2.expect("id: a=3&b=4\ndata: b2\n\n")
	if got := s.Stats().Topics; got != 2 {
		t.Errorf("Stats().Topics: got %d, want 2", got)
	}
}

func TestServerTopicsRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		topics func(*http.Request) ([]string, error)
		status int
		body   string
	}{
		{"status error", func(*http.Request) ([]string, error) {
			return nil, &sse.StatusError{Code: http.StatusForbidden, Err: errors.New("not yours")}
		}, http.StatusForbidden, "not yours\n"},
		{"status only", func(*http.Request) ([]string, error) {
			return nil, &sse.StatusError{Code: http.StatusUnauthorized}
		}, http.StatusUnauthorized, "Unauthorized\n"},
		{"plain error", func(*http.Request) ([]string, error) {
			return nil, errors.New("bad topic")
		}, http.StatusBadRequest, "bad topic\n"},
		{"no topics", func(*http.Request) ([]string, error) {
			return nil, nil
		}, http.StatusBadRequest, "sse: no topics\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &sse.Server{Topics: tc.topics}
			defer s.Close()
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
			if rec.Code != tc.status || rec.Body.String() != tc.body {
				t.Errorf("got %d %q, want %d %q", rec.Code, rec.Body.String(), tc.status, tc.body)
			}
			if got := s.Clients(); got != 0 {
				t.Errorf("Clients: got %d, want 0", got)
			}
		})
	}
}

func TestServerFilter(t *testing.T) {
	s := &sse.Server{
		Options: sse.Options{Heartbeat: -1},
		Filter: func(r *http.Request) func(*sse.Message) bool {
			if r.URL.Query().Get("all") != "" {
				return nil
			}
			return func(m *sse.Message) bool { return m.Event.Type != "private" }
		},
	}
	hs := topicServer(t, s)
	pub := func(typ, data string) {
		if _, err := s.Publish(t.Context(), "", &sse.Event{Type: typ, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	st := get(t, hs.Client(), hs.URL)
	st.expect(": connected\n\n")
	all := get(t, hs.Client(), hs.URL+"?all=1")
	all.expect(": connected\n\n")
	pub("private", "p1") // 1
	pub("", "x2")        // 2
	st.expect("id: 2\ndata: x2\n\n")
	all.expect("event: private\nid: 1\ndata: p1\n\nid: 2\ndata: x2\n\n")
	pub("private", "p3") // 3
	pub("", "x4")        // 4
	re := get(t, hs.Client(), hs.URL, "Last-Event-ID", "1")
	re.expect(": connected\n\nid: 2\ndata: x2\n\nid: 4\ndata: x4\n\n")
}

// serveFake runs s.ServeHTTP on a fake writer in the background; the
// returned channel is closed when it returns.
func serveFake(s http.Handler, w *fakeWriter, header ...string) <-chan struct{} {
	return serveIn(context.Background(), s, w, header...)
}

// serveIn runs s.ServeHTTP for w in the background with a GET request
// bound to ctx and carrying header (name, value pairs); the returned
// channel is closed when it returns.
func serveIn(ctx context.Context, s http.Handler, w http.ResponseWriter, header ...string) <-chan struct{} {
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ServeHTTP(w, r)
	}()
	return done
}

var retryRE = regexp.MustCompile(`^retry: (\d+)\n\n$`)

// checkRetry checks that tail is one retry field in [lo, hi) ms.
func checkRetry(t *testing.T, tail string, lo, hi int) {
	t.Helper()
	m := retryRE.FindStringSubmatch(tail)
	if m == nil {
		t.Fatalf("after the events: got %q, want one retry field", tail)
	}
	if n, _ := strconv.Atoi(m[1]); n < lo || n >= hi {
		t.Errorf("retry: got %d ms, want in [%d, %d)", n, lo, hi)
	}
}

func TestServerShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &sse.Server{Options: sse.Options{Heartbeat: -1, ShutdownRetry: 2 * time.Second, ShutdownJitter: 3 * time.Second}}
		ws := make([]*fakeWriter, 20)
		dones := make([]<-chan struct{}, len(ws))
		for i := range ws {
			ws[i] = newFakeWriter()
			dones[i] = serveFake(s, ws[i])
		}
		synctest.Wait()
		mustPublish(t, s, "", "x")
		start := time.Now()
		if err := s.Shutdown(t.Context()); err != nil {
			t.Fatalf("Shutdown: got %v, want nil", err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("Shutdown took %v, want no wait with clients that read", d)
		}
		seen := make(map[string]bool)
		for i, w := range ws {
			<-dones[i]
			body := w.Body()
			const events = ": connected\n\nid: 1\ndata: x\n\n"
			if !strings.HasPrefix(body, events) {
				t.Fatalf("client %d: got %q, want %q first", i, body, events)
			}
			checkRetry(t, body[len(events):], 2000, 5000)
			seen[body] = true
		}
		if len(seen) < 2 {
			t.Errorf("retry hints: got %d distinct among %d clients, want jitter", len(seen), len(ws))
		}
		if _, err := s.Publish(t.Context(), "", sse.NewEvent("late")); !errors.Is(err, sse.ErrServerClosed) {
			t.Errorf("Publish after Shutdown: got %v, want ErrServerClosed", err)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("request after Shutdown: got %d, want 503", rec.Code)
		}
		st := s.Stats()
		if st.Clients != 0 || st.ShutdownDisconnects != 20 || st.Delivered != 20 || st.Broadcasts != 1 {
			t.Errorf("Stats: got %+v, want 0 clients, 20 shutdown disconnects, 20 delivered, 1 broadcast", st)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close after Shutdown: got %v, want nil", err)
		}
	})
}

func TestServerShutdownDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &sse.Server{Options: sse.Options{Heartbeat: -1, WriteTimeout: time.Hour, ShutdownJitter: -1}}
		stuck, ok := newFakeWriter(), newFakeWriter()
		stuckDone, okDone := serveFake(s, stuck), serveFake(s, ok)
		synctest.Wait()
		release := stuck.setBlock()
		defer release()
		mustPublish(t, s, "", "x")
		synctest.Wait()
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		start := time.Now()
		if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown: got %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Errorf("Shutdown returned after %v, want 3s", d)
		}
		<-stuckDone
		<-okDone
		if got, want := ok.Body(), ": connected\n\nid: 1\ndata: x\n\nretry: 1000\n\n"; got != want {
			t.Errorf("reading client: got %q, want %q", got, want)
		}
		if got, want := stuck.Body(), ": connected\n\n"; got != want {
			t.Errorf("stuck client: got %q, want %q", got, want)
		}
	})
}

func TestServerHeartbeat(t *testing.T) {
	for _, tc := range []struct {
		name      string
		heartbeat time.Duration
		wait      time.Duration
		want      string
	}{
		{"default 15s", 0, 15 * time.Second, ": connected\n\n: keep-alive\n\n"},
		{"not before 15s", 0, 14 * time.Second, ": connected\n\n"},
		{"5s", 5 * time.Second, 10 * time.Second, ": connected\n\n: keep-alive\n\n: keep-alive\n\n"},
		{"disabled", -1, time.Hour, ": connected\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &sse.Server{Options: sse.Options{Heartbeat: tc.heartbeat}}
				w := newFakeWriter()
				done := serveFake(s, w)
				time.Sleep(tc.wait)
				synctest.Wait()
				if got := w.Body(); got != tc.want {
					t.Errorf("after %v: got %q, want %q", tc.wait, got, tc.want)
				}
				s.Close()
				<-done
			})
		})
	}
}

func TestServerClosed(t *testing.T) {
	s := &sse.Server{}
	hs := topicServer(t, s)
	st := get(t, hs.Client(), hs.URL)
	st.expect(": connected\n\n")
	s.Close()
	st.expectEOF()
	if _, err := s.Publish(t.Context(), "", sse.NewEvent("x")); !errors.Is(err, sse.ErrServerClosed) {
		t.Errorf("Publish after Close: got %v, want ErrServerClosed", err)
	}
	resp, err := hs.Client().Get(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || string(body) != "sse: server closed\n" {
		t.Errorf("after Close: got %d %q, want 503 %q", resp.StatusCode, body, "sse: server closed\n")
	}
}

func TestServerBrokerClosed(t *testing.T) {
	b := &sse.MemoryBroker{}
	s := &sse.Server{Broker: b, Options: sse.Options{Heartbeat: -1}}
	hs := topicServer(t, s)
	st := get(t, hs.Client(), hs.URL)
	st.expect(": connected\n\n")
	b.Close()
	// The subscription ends, so the clients are disconnected to resume.
	st.expectEOF()
	if _, err := s.Publish(t.Context(), "", sse.NewEvent("x")); !errors.Is(err, sse.ErrBrokerClosed) || !errors.Is(err, sse.ErrServerClosed) {
		t.Errorf("Publish to a closed broker: got %v, want ErrServerClosed and ErrBrokerClosed", err)
	}
}

// countingBroker counts the subscriptions open on a MemoryBroker.
type countingBroker struct {
	*sse.MemoryBroker
	open atomic.Int64
}

func (b *countingBroker) Subscribe(ctx context.Context, topic string, after uint64, fn func(sse.Message)) (sse.Subscription, error) {
	sub, err := b.MemoryBroker.Subscribe(ctx, topic, after, fn)
	if err != nil {
		return nil, err
	}
	b.open.Add(1)
	go func() {
		<-sub.Done()
		b.open.Add(-1)
	}()
	return sub, nil
}

// A topic's subscription ends with its last client, so topics that come
// and go (one per user) leave nothing behind; a later client subscribes
// again and resumes from history without loss.
func TestServerTopicSubscriptionEndsWithLastClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &countingBroker{MemoryBroker: sse.NewMemoryBroker(sse.HistoryLimits{})}
		defer b.Close()
		s := &sse.Server{
			Broker:  b,
			Options: sse.Options{Heartbeat: -1},
			Topics:  func(r *http.Request) ([]string, error) { return []string{r.URL.Query().Get("t")}, nil },
		}
		defer s.Close()
		serve := func(target string, header ...string) (*fakeWriter, context.CancelFunc, <-chan struct{}) {
			w := newFakeWriter()
			ctx, cancel := context.WithCancel(t.Context())
			r := httptest.NewRequestWithContext(ctx, http.MethodGet, target, nil)
			for i := 0; i+1 < len(header); i += 2 {
				r.Header.Set(header[i], header[i+1])
			}
			done := make(chan struct{})
			go func() { defer close(done); s.ServeHTTP(w, r) }()
			synctest.Wait()
			return w, cancel, done
		}

		_, cancel1, done1 := serve("/?t=user-1")
		_, cancel2, done2 := serve("/?t=user-1")
		_, cancel3, done3 := serve("/?t=user-2")
		if got := b.open.Load(); got != 2 {
			t.Fatalf("open subscriptions with 2 topics followed: got %d, want 2", got)
		}
		cancel1()
		<-done1
		synctest.Wait()
		if got := b.open.Load(); got != 2 {
			t.Fatalf("after one of two clients of user-1 left: got %d subscriptions, want 2", got)
		}
		cancel2()
		cancel3()
		<-done2
		<-done3
		synctest.Wait()
		if got := b.open.Load(); got != 0 {
			t.Fatalf("after every client left: got %d subscriptions, want 0", got)
		}

		// Published while nobody follows: a resuming client gets it.
		id1 := mustPublish(t, s, "user-1", "a")
		id2 := mustPublish(t, s, "user-1", "b")
		w, cancel, done := serve("/?t=user-1", "Last-Event-ID", id1)
		defer func() { cancel(); <-done }()
		id3 := mustPublish(t, s, "user-1", "c")
		synctest.Wait()
		want := ": connected\n\nid: " + id2 + "\ndata: b\n\nid: " + id3 + "\ndata: c\n\n"
		if got := w.Body(); got != want {
			t.Errorf("resumed client: got %q, want %q", got, want)
		}
		if got := b.open.Load(); got != 1 {
			t.Errorf("open subscriptions: got %d, want 1", got)
		}
	})
}

func TestServerRetryAndHeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &sse.Server{Options: sse.Options{
			Heartbeat: -1,
			Retry:     2500 * time.Millisecond,
			Header:    http.Header{"Access-Control-Allow-Origin": {"*"}},
		}}
		defer s.Close()
		w := newFakeWriter()
		done := serveFake(s, w)
		synctest.Wait()
		id := mustPublish(t, s, "", "x")
		synctest.Wait()
		if got, want := w.Body(), ": connected\n\nretry: 2500\n\nid: "+id+"\ndata: x\n\n"; got != want {
			t.Errorf("body: got %q, want %q", got, want)
		}
		for k, v := range map[string]string{"Access-Control-Allow-Origin": "*", "Content-Type": "text/event-stream"} {
			if got := w.Header().Get(k); got != v {
				t.Errorf("header %s: got %q, want %q", k, got, v)
			}
		}
		s.Close()
		<-done
	})
}

// Server.ServeHTTP watches the request's context from the handler itself,
// also while it resumes: a client that goes away is dropped at once.
func TestServerClientGoesAway(t *testing.T) {
	for _, lastID := range []string{"", "1"} {
		t.Run("Last-Event-ID="+lastID, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &sse.Server{Options: sse.Options{Heartbeat: -1}}
				defer s.Close()
				if _, err := s.Publish(t.Context(), "", sse.NewEvent("a")); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Publish(t.Context(), "", sse.NewEvent("b")); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				w := newFakeWriter()
				var done <-chan struct{}
				if lastID == "" {
					done = serveIn(ctx, s, w)
				} else {
					done = serveIn(ctx, s, w, "Last-Event-ID", lastID)
				}
				synctest.Wait()
				want := ": connected\n\n"
				if lastID != "" {
					want += "id: 2\ndata: b\n\n"
				}
				if got := w.Body(); got != want {
					t.Fatalf("body %q, want %q", got, want)
				}
				cancel()
				expectClientGone(t, done, s.Stats)
			})
		})
	}
}
