package sse_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coregx/stream/sse"
)

// status requests url and returns the status, the Retry-After header
// and the body of a refused request.
func status(t *testing.T, c *http.Client, url string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, "", ""
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(body)
}

func TestServerTopicNameCap(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limit  int
		length int
		code   int
		body   string
	}{
		{"default fits", 0, 1024, http.StatusOK, ""},
		{"default over", 0, 1025, http.StatusBadRequest, "sse: topic name of 1025 bytes is longer than the 1024 allowed\n"},
		{"set fits", 10, 10, http.StatusOK, ""},
		{"set over", 10, 11, http.StatusBadRequest, "sse: topic name of 11 bytes is longer than the 10 allowed\n"},
		{"unbounded", -1, 64 << 10, http.StatusOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &sse.Server{Topics: queryTopics, MaxTopicLen: tc.limit, Options: sse.Options{Heartbeat: -1}}
			hs := topicServer(t, s)
			u := hs.URL + "?topic=ok&topic=" + strings.Repeat("x", tc.length)
			code, _, body := status(t, hs.Client(), u)
			if code != tc.code || body != tc.body {
				t.Errorf("got %d %q, want %d %q", code, body, tc.code, tc.body)
			}
		})
	}
}

func TestServerMaxTopics(t *testing.T) {
	s := &sse.Server{Topics: queryTopics, MaxTopics: 2, Options: sse.Options{Heartbeat: -1}}
	hs := topicServer(t, s)
	c := hs.Client()
	get(t, c, hs.URL+"?topic=a").expect(": connected\n\n")
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL+"?topic=b", nil)
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("stream on b: got %v %v, want 200", resp, err)
	}
	get(t, c, hs.URL+"?topic=a").expect(": connected\n\n") // a topic already followed
	const refused = "sse: too many topics followed, retry later\n"
	for _, u := range []string{"?topic=c", "?topic=a&topic=c"} {
		code, retry, body := status(t, c, hs.URL+u)
		if code != http.StatusServiceUnavailable || retry != "5" || body != refused {
			t.Errorf("%s beyond the cap: got %d Retry-After %q %q, want 503, \"5\", %q", u, code, retry, body, refused)
		}
	}
	// The refused request left nothing: a topic freed is one to take.
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _, body := status(t, c, hs.URL+"?topic=c")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after b was left: got %d %q for c, want 200", code, body)
		}
		time.Sleep(10 * time.Millisecond) // b is left when its handler returns
	}
}

// downBroker is a broker whose service is unreachable.
type downBroker struct{ sse.MemoryBroker }

func (*downBroker) Subscribe(context.Context, string, uint64, func(sse.Message)) (sse.Subscription, error) {
	return nil, fmt.Errorf("%w: dial tcp: connection refused", sse.ErrBrokerUnavailable)
}

func TestServerBrokerUnavailable(t *testing.T) {
	s := &sse.Server{Broker: &downBroker{}, Options: sse.Options{Heartbeat: -1}}
	hs := topicServer(t, s)
	code, retry, body := status(t, hs.Client(), hs.URL)
	const want = "sse: broker unavailable, retry later\n"
	if code != http.StatusServiceUnavailable || retry != "5" || body != want {
		t.Errorf("got %d Retry-After %q %q, want 503, \"5\", %q", code, retry, body, want)
	}
}

// liveHeap returns the bytes of live heap after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// openedWriter is a flushing ResponseWriter that tells when the stream
// opened, and keeps nothing it is sent.
type openedWriter struct {
	header http.Header
	once   sync.Once
	opened chan struct{}
}

func (w *openedWriter) Header() http.Header { return w.header }
func (w *openedWriter) WriteHeader(int)     {}
func (w *openedWriter) Flush()              {}
func (w *openedWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.opened) })
	return len(p), nil
}

// TestServerTopicsComeAndGo opens 2,000 streams on distinct 100 KiB topic
// names (200 at a time) and ends them: once they are all gone, the
// server and its broker hold none of the 195 MiB of names. The streams
// are served in process, without sockets, to keep it fast.
func TestServerTopicsComeAndGo(t *testing.T) {
	const streams, batch, nameLen = 2000, 200, 100 << 10
	s := &sse.Server{
		Options:     sse.Options{Heartbeat: -1},
		MaxTopicLen: nameLen,
		Topics: func(r *http.Request) ([]string, error) {
			return []string{r.Header.Get("Topic")}, nil
		},
	}
	t.Cleanup(func() { s.Close() })
	base := liveHeap()
	for round := range streams / batch {
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		for i := range batch {
			n := round*batch + i
			name := fmt.Sprintf("%06d", n) + strings.Repeat("n", nameLen-6)
			r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
			r.Header.Set("Topic", name)
			w := &openedWriter{header: http.Header{}, opened: make(chan struct{})}
			wg.Go(func() { s.ServeHTTP(w, r) })
			select {
			case <-w.opened:
			case <-time.After(10 * time.Second):
				t.Fatalf("stream %d: not opened after 10s", n)
			}
		}
		if n := s.Clients(); n != batch {
			t.Fatalf("round %d: got %d clients, want %d", round, n, batch)
		}
		cancel()
		wg.Wait()
	}
	after := liveHeap()
	if after > base+16<<20 {
		t.Errorf("live heap after %d streams on %d KiB topic names ended: got %d MiB above baseline, want < 16 MiB (names: %d MiB)",
			streams, nameLen>>10, (after-base)>>20, streams*nameLen>>20)
	}
	t.Logf("live heap: baseline %.1f MiB, after %.1f MiB", float64(base)/(1<<20), float64(after)/(1<<20))
}

// aheadBroker is a broker whose History names positions its live feed
// never reaches: a node whose feed stays behind the cluster.
type aheadBroker struct{ sse.MemoryBroker }

func (b *aheadBroker) History(ctx context.Context, topic, afterID string) (sse.History, error) {
	return sse.History{After: sse.Position{Seq: 99, ID: afterID}, Head: sse.Position{Seq: 99, ID: afterID}}, nil
}

// TestServerResumeWaitsForFeed checks that a client resuming from a
// position this node's feed has not reached waits for it, and that the
// wait is bounded: after 10s the stream ends, for the client to retry.
func TestServerResumeWaitsForFeed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &sse.Server{Broker: &aheadBroker{}, Options: sse.Options{Heartbeat: -1}}
		defer s.Close()
		r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/", nil)
		r.Header.Set("Last-Event-ID", "seen-elsewhere")
		w := &openedWriter{header: http.Header{}, opened: make(chan struct{})}
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.ServeHTTP(w, r)
		}()
		time.Sleep(9 * time.Second)
		select {
		case <-done:
			t.Fatal("stream ended after 9s, want it waiting for the feed for 10s")
		default:
		}
		time.Sleep(2 * time.Second)
		select {
		case <-done:
		default:
			t.Fatal("stream still waiting after 11s, want it ended after 10s")
		}
	})
}

// outageBroker is a MemoryBroker whose subscriptions the test ends as
// if the broker had lost its service.
type outageBroker struct {
	*sse.MemoryBroker
	lost chan struct{} // closed by the test
}

type outageSub struct {
	sse.Subscription
	lost <-chan struct{}
}

func (s outageSub) Done() <-chan struct{} { return s.lost }
func (s outageSub) Err() error {
	select {
	case <-s.lost:
		return fmt.Errorf("%w: connection refused", sse.ErrBrokerUnavailable)
	default:
		return nil
	}
}

func (b *outageBroker) Subscribe(ctx context.Context, topic string, after uint64, fn func(sse.Message)) (sse.Subscription, error) {
	sub, err := b.MemoryBroker.Subscribe(ctx, topic, after, fn)
	if err != nil {
		return nil, err
	}
	return outageSub{sub, b.lost}, nil
}

// TestServerBrokerOutageEndsWithRetry checks that when the broker loses
// its service, an open stream gets what was queued for it, then a retry
// hint, and ends.
func TestServerBrokerOutageEndsWithRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &outageBroker{MemoryBroker: sse.NewMemoryBroker(sse.HistoryLimits{}), lost: make(chan struct{})}
		defer b.Close()
		s := &sse.Server{
			Broker:  b,
			Options: sse.Options{Heartbeat: -1, ShutdownRetry: 2 * time.Second, ShutdownJitter: -1},
		}
		defer s.Close()
		w := newFakeWriter()
		r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/", nil)
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.ServeHTTP(w, r)
		}()
		synctest.Wait()
		mustPublish(t, s, "", "a")
		synctest.Wait()
		close(b.lost)
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("the stream is still open after the broker's outage")
		}
		const want = ": connected\n\nid: 1\ndata: a\n\nretry: 2000\n\n"
		if got := w.Body(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
}
