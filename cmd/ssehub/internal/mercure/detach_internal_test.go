package mercure

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// held returns what h holds for streams: admitted streams, clients
// counted, active subscriptions.
func held(h *Hub) (streams, clients, subs int) {
	h.mu.Lock()
	streams, clients = h.streams, len(h.byClient)
	h.mu.Unlock()
	h.subs.mu.Lock()
	subs = len(h.subs.active)
	h.subs.mu.Unlock()
	return streams, clients, subs
}

// subscriptionStates returns the active field of each subscription
// event the engine's broker holds, in order.
func subscriptionStates(t *testing.T, e *Engine) []bool {
	t.Helper()
	hist, err := e.broker.History(context.Background(), allTopic, "")
	if err != nil {
		t.Fatal(err)
	}
	var out []bool
	for _, m := range hist.Messages {
		if m.Event.Type != subscriptionEventType {
			continue
		}
		var d struct {
			Active bool `json:"active"`
		}
		if err := json.Unmarshal([]byte(m.Event.Data), &d); err != nil {
			t.Fatal(err)
		}
		out = append(out, d.Active)
	}
	return out
}

func TestSubscribeDetached(t *testing.T) {
	e := NewEngine(EngineConfig{})
	defer e.Shutdown(context.Background())
	h := NewHub(Config{Engine: e, Anonymous: true, Subscriptions: true, MaxConnections: 1})
	mux := http.NewServeMux()
	h.Register(mux)
	returned := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r)
		returned <- struct{}{}
	}))
	defer srv.Close()

	res, br := openStream(t, srv.URL+Path+"?match=urn:a")
	// The handler returns while the stream goes on, still holding its
	// slot and its subscription.
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not return within 10s of the stream opening")
	}
	if s, c, subs := held(h); s != 1 || c != 1 || subs != 1 {
		t.Fatalf("open stream: hub holds %d streams, %d clients, %d subscriptions; want 1, 1, 1", s, c, subs)
	}
	if err := e.Publish(context.Background(), &Update{Topics: []string{"urn:a"}, ID: "u1", Data: "after"}); err != nil {
		t.Fatal(err)
	}
	if got, want := readBlock(t, br), "id: u1\ndata: after\n\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}

	// Once the client left, everything is released, once.
	res.Body.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if s, _, _ := held(h); s != 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("10s after the client left, its stream is still counted")
		}
	}
	if s, c, subs := held(h); s != 0 || c != 0 || subs != 0 {
		t.Errorf("after the end: hub holds %d streams, %d clients, %d subscriptions; want none", s, c, subs)
	}
	if got := subscriptionStates(t, e); len(got) != 2 || !got[0] || got[1] {
		t.Errorf("got subscription events %v, want [true false]", got)
	}
}

func TestSubscribeRefusedReleases(t *testing.T) {
	e := NewEngine(EngineConfig{})
	h := NewHub(Config{Engine: e, Anonymous: true, Subscriptions: true, MaxConnections: 1})
	mux := http.NewServeMux()
	h.Register(mux)
	e.Shutdown(context.Background())
	// The engine refuses the stream after the hub admitted it: the hub
	// releases it before the handler returns.
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("GET", Path+"?match=urn:a", nil))
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("got %d, want 503", w.Code)
	}
	if s, c, subs := held(h); s != 0 || c != 0 || subs != 0 {
		t.Errorf("hub holds %d streams, %d clients, %d subscriptions; want none", s, c, subs)
	}
}

// openStream subscribes at url, within 20 s, and checks that the stream
// opens: status 200 and the ": connected" comment. The body is closed at
// the end of the test.
func openStream(t *testing.T, url string) (*http.Response, *bufio.Reader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	br := bufio.NewReader(res.Body)
	if got := readBlock(t, br); res.StatusCode != http.StatusOK || got != ": connected\n\n" {
		t.Fatalf("got %d %q, want 200 %q", res.StatusCode, got, ": connected\n\n")
	}
	return res, br
}

// readBlock reads lines up to and including a blank one.
func readBlock(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	var b []byte
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading after %q: %v", b, err)
		}
		b = append(b, line...)
		if line == "\n" {
			return string(b)
		}
	}
}
