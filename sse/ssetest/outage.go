package ssetest

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// TestOutage checks how a broker backed by a service behaves when the
// service goes away and comes back, alone and behind an [sse.Server].
// newBroker returns a fresh broker (the caller closes it); down makes the
// service unreachable and up makes it reachable again with its data.
//
// Broker: while down, the subscription ends and Publish, Subscribe and
// History fail with [sse.ErrBrokerUnavailable]; once up, the broker works
// again by itself and nothing published before is lost. Server: while
// down, open streams end and new ones get 503 with a Retry-After header;
// once up, a client resuming with its Last-Event-ID gets what was
// published since, without a gap.
func TestOutage(t *testing.T, newBroker func(t *testing.T) sse.Broker, down, up func(t *testing.T)) {
	t.Helper()
	t.Run("Broker", func(t *testing.T) { testBrokerOutage(t, newBroker(t), down, up) })
	t.Run("Server", func(t *testing.T) { testServerOutage(t, newBroker(t), down, up) })
}

// retry calls f until it succeeds, for up to waitTimeout.
func retry(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %v after the service came back: got %v, want nil", what, waitTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testBrokerOutage(t *testing.T, b sse.Broker, down, up func(t *testing.T)) {
	ctx := t.Context()
	first := publish(t, b, "t", sse.NewEvent("before"))
	sub, err := b.Subscribe(ctx, "t", sse.Newest, func(sse.Message) {})
	if err != nil {
		t.Fatal(err)
	}
	down(t)
	select {
	case <-sub.Done():
	case <-time.After(waitTimeout):
		t.Fatalf("subscription still running %v after the service went away", waitTimeout)
	}
	if err := sub.Err(); !errors.Is(err, sse.ErrBrokerUnavailable) {
		t.Errorf("subscription Err: got %v, want ErrBrokerUnavailable", err)
	}
	if _, err := b.Publish(ctx, "t", sse.NewEvent("lost?"), nil); !errors.Is(err, sse.ErrBrokerUnavailable) {
		t.Errorf("Publish while down: got %v, want ErrBrokerUnavailable", err)
	}
	if _, err := b.Subscribe(ctx, "t", sse.Newest, func(sse.Message) {}); !errors.Is(err, sse.ErrBrokerUnavailable) {
		t.Errorf("Subscribe while down: got %v, want ErrBrokerUnavailable", err)
	}
	if _, err := b.History(ctx, "t", first.Event.ID); !errors.Is(err, sse.ErrBrokerUnavailable) {
		t.Errorf("History while down: got %v, want ErrBrokerUnavailable", err)
	}

	up(t)
	var second sse.Message
	retry(t, "Publish", func() (err error) {
		second, err = b.Publish(ctx, "t", sse.NewEvent("after"), nil)
		return err
	})
	h := history(t, b, "t", first.Event.ID)
	if h.Gap || summary(h.Messages) != summary([]sse.Message{second}) {
		t.Errorf("History after the outage: got gap %v %s, want no gap and %s", h.Gap, summary(h.Messages), summary([]sse.Message{second}))
	}
	if got := collect(t, b, "t", first.Seq, 1); summary(got) != summary([]sse.Message{second}) {
		t.Errorf("Subscribe after the outage: got %s, want %s", summary(got), summary([]sse.Message{second}))
	}
}

func testServerOutage(t *testing.T, b sse.Broker, down, up func(t *testing.T)) {
	srv := &sse.Server{Broker: b, Options: sse.Options{Heartbeat: -1}}
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

	down(t)
	ended := make(chan struct{})
	go func() { io.Copy(io.Discard, br); close(ended) }()
	select {
	case <-ended:
	case <-time.After(waitTimeout):
		t.Fatalf("open stream still running %v after the service went away", waitTimeout)
	}
	if _, err := srv.Publish(ctx, "", sse.NewEvent("lost?")); !errors.Is(err, sse.ErrBrokerUnavailable) {
		t.Errorf("Publish while down: got %v, want ErrBrokerUnavailable", err)
	}
	refused, err := hs.Client().Get(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(refused.Body)
	refused.Body.Close()
	if refused.StatusCode != http.StatusServiceUnavailable || refused.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "broker unavailable") {
		t.Errorf("new stream while down: got %d Retry-After %q %q, want 503 with Retry-After", refused.StatusCode, refused.Header.Get("Retry-After"), body)
	}

	up(t)
	var second string
	retry(t, "Server.Publish", func() (err error) {
		second, err = srv.Publish(ctx, "", sse.NewEvent("two"))
		return err
	})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ = http.NewRequestWithContext(rctx, http.MethodGet, hs.URL, nil)
	req.Header.Set("Last-Event-ID", first)
	again, err := hs.Client().Do(req)
	if err != nil || again.StatusCode != http.StatusOK {
		t.Fatalf("resuming: got %v, %v, want 200", again, err)
	}
	defer again.Body.Close()
	want = ": connected\n\nid: " + second + "\ndata: two\n\n"
	got = make([]byte, len(want))
	if _, err := io.ReadFull(again.Body, got); err != nil || string(got) != want {
		t.Errorf("resuming after the outage: got %q, %v, want %q (no gap, nothing lost)", got, err, want)
	}
}
