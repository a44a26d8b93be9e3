package redisbroker_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coregx/stream/redisbroker"
	"github.com/coregx/stream/sse"
)

// TestServerOutage checks what clients of an sse.Server see when Redis
// goes away and comes back: open streams end, new ones get 503 with
// Retry-After, and a client resuming afterwards misses nothing.
func TestServerOutage(t *testing.T) {
	p := newProxy(t, redisOptions(t).Addr)
	rdb := client(t, p.addr)
	b := redisbroker.New(rdb, &redisbroker.Options{Prefix: prefix(t)})
	defer b.Close()
	srv := &sse.Server{Broker: b, Heartbeat: -1}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Close()
	ctx := t.Context()

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL, nil)
	resp, err := hs.Client().Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: got %v, %v, want 200", resp, err)
	}
	defer resp.Body.Close()
	first, err := srv.Publish(ctx, "", sse.NewEvent("one"))
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	want := ": connected\n\nid: " + first + "\ndata: one\n\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != want {
		t.Fatalf("stream: got %q, %v, want %q", got, err, want)
	}

	p.cut()
	ended := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, br); ended <- err }()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("open stream still running 10s after Redis went away")
	}
	if _, err := srv.Publish(ctx, "", sse.NewEvent("lost?")); err == nil {
		t.Error("Publish while Redis is away: got nil error, want ErrBrokerUnavailable")
	}
	down, err := hs.Client().Get(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(down.Body)
	down.Body.Close()
	if down.StatusCode != http.StatusServiceUnavailable || down.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "broker unavailable") {
		t.Errorf("new stream while Redis is away: got %d Retry-After %q %q, want 503 with Retry-After", down.StatusCode, down.Header.Get("Retry-After"), body)
	}

	p.start(p.addr)
	var second string
	deadline := time.Now().Add(10 * time.Second)
	for {
		if second, err = srv.Publish(ctx, "", sse.NewEvent("two")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Publish 10s after Redis came back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ = http.NewRequestWithContext(rctx, http.MethodGet, hs.URL, nil)
	req.Header.Set("Last-Event-ID", first)
	resp2, err := hs.Client().Do(req)
	if err != nil || resp2.StatusCode != http.StatusOK {
		t.Fatalf("resuming: got %v, %v, want 200", resp2, err)
	}
	defer resp2.Body.Close()
	want = ": connected\n\nid: " + second + "\ndata: two\n\n"
	got = make([]byte, len(want))
	if _, err := io.ReadFull(resp2.Body, got); err != nil || string(got) != want {
		t.Errorf("resuming after the outage: got %q, %v, want %q (no gap, nothing lost)", got, err, want)
	}
}
