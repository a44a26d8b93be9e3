package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

// The hub releases what a stream holds (its admission slot, its
// subscriptions) when the stream ends, which may be long after its
// handler returned: over HTTP/1.1 the core keeps the stream once open
// (sse.Options.Detach). Over HTTP/2 the handler keeps it. These tests go
// through each transport.

// transport is a way for the tests' clients to reach a hub.
type transport struct {
	name  string
	tls   bool
	h2    bool
	proto int // the ProtoMajor of the responses
}

var transports = []transport{
	{name: "HTTP1", proto: 1},
	{name: "HTTP1TLS", tls: true, proto: 1},
	{name: "HTTP2", tls: true, h2: true, proto: 2},
}

// start starts a hub with args, served over tr, and returns it with a
// client of tr.
func (tr transport) start(t *testing.T, args ...string) (*testHub, *http.Client) {
	t.Helper()
	if !tr.tls {
		return startHub(t, nil, args...), &http.Client{Transport: &http.Transport{}}
	}
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	h := startHub(t, nil, append([]string{"-tls-cert", certFile, "-tls-key", keyFile}, args...)...)
	// A Transport with its own TLS config speaks HTTP/1.1 unless told
	// to try HTTP/2.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: tr.h2}}
	t.Cleanup(c.CloseIdleConnections)
	return h, c
}

// openStream opens a stream on h with c, query and token (none when
// empty), failing the test unless it answers 200 over tr; closing it
// ends it.
func (tr transport) openStream(t *testing.T, h *testHub, c *http.Client, query, token string) (s *stream, closeIt func()) {
	t.Helper()
	code, s, closeIt := tr.tryStream(t, h, c, query, token)
	if code != http.StatusOK {
		t.Fatalf("subscribe %q: got %d, want 200", query, code)
	}
	return s, closeIt
}

// tryStream asks h for a stream with c, query and token (none when
// empty): it returns the status, and, for 200, the stream opened over tr
// and what closes it.
func (tr transport) tryStream(t *testing.T, h *testHub, c *http.Client, query, token string) (code int, s *stream, closeIt func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", h.url+"?"+query, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	closeIt = func() {
		cancel()
		res.Body.Close()
	}
	if res.StatusCode != http.StatusOK {
		io.Copy(io.Discard, res.Body)
		closeIt()
		return res.StatusCode, nil, nil
	}
	t.Cleanup(closeIt)
	if res.ProtoMajor != tr.proto {
		t.Fatalf("subscribe %q: got HTTP/%d, want HTTP/%d", query, res.ProtoMajor, tr.proto)
	}
	s = &stream{t: t, res: res, br: bufio.NewReader(res.Body)}
	if got := s.block(true); got != ": connected\n\n" {
		t.Fatalf("stream opened with %q, want %q", got, ": connected\n\n")
	}
	return http.StatusOK, s, closeIt
}

// status returns the status of a subscription request with c, query and
// token (none when empty); a stream it opens is closed at once.
func status(t *testing.T, h *testHub, c *http.Client, query, token string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", h.url+"?"+query, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// subscriberOf returns the subscriber of a subscription event, checking
// that its document is that of the exact matcher match, active or not.
func subscriberOf(t *testing.T, block, match string, active bool) string {
	t.Helper()
	_, data := subscriptionEvent(t, block)
	var d map[string]any
	json.Unmarshal([]byte(data), &d)
	sub, _ := d["subscriber"].(string)
	if want := subscriptionDoc("exact", match, sub, active, nil); data != want || !uuidURN.MatchString(sub) {
		t.Fatalf("got %s, want %s", data, want)
	}
	return sub
}

// watchSubscriptions opens a stream receiving h's subscription events.
func (tr transport) watchSubscriptions(t *testing.T, h *testHub, c *http.Client) *stream {
	t.Helper()
	s, _ := tr.openStream(t, h, c, "match_urlpattern=/.well-known/mercure/subscriptions/:type/:match/:subscriber", h.admin(t))
	return s
}

// admitted opens a stream with c, query and token once h lets it in,
// waiting at most 10s: the hub notices a client leaving asynchronously.
func admitted(t *testing.T, h *testHub, tr transport, c *http.Client, query, token string) (*stream, func()) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		code, s, closeIt := tr.tryStream(t, h, c, query, token)
		switch {
		case code == http.StatusOK:
			return s, closeIt
		case code != http.StatusTooManyRequests:
			t.Fatalf("subscribe %q: got %d, want 429 or 200", query, code)
		case time.Now().After(deadline):
			t.Fatalf("subscribe %q: still 429 10s after a stream ended, want 200", query)
		}
	}
}

func TestStreamEndReleases(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			// Two streams at most: the watcher and one subscriber.
			h, c := tr.start(t, "-anonymous", "-subscriptions", "-max-connections", "2")
			watch := tr.watchSubscriptions(t, h, c)

			_, leave := tr.openStream(t, h, c, "match=urn:a", "")
			first := subscriberOf(t, watch.next(), "urn:a", true)
			if code := status(t, h, c, "match=urn:b", ""); code != http.StatusTooManyRequests {
				t.Fatalf("a third stream: got %d, want 429", code)
			}
			leave()
			if got := subscriberOf(t, watch.next(), "urn:a", false); got != first {
				t.Errorf("the end of %s, want of %s", got, first)
			}
			// Its slot is free again. The first stream ended once: its
			// end came once, and the slot is taken again by one stream,
			// not two.
			_, leave = admitted(t, h, tr, c, "match=urn:c", "")
			second := subscriberOf(t, watch.next(), "urn:c", true)
			if code := status(t, h, c, "match=urn:d", ""); code != http.StatusTooManyRequests {
				t.Errorf("a third stream after one left: got %d, want 429", code)
			}
			leave()
			if got := subscriberOf(t, watch.next(), "urn:c", false); got != second {
				t.Errorf("the end of %s, want of %s", got, second)
			}
		})
	}
}

func TestStreamEndsAtTokenExpiry(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			h, c := tr.start(t, "-subscriptions", "-max-connections", "2")
			watch := tr.watchSubscriptions(t, h, c)
			// exp has whole seconds: the token expires between one and
			// two seconds from now.
			exp := time.Unix(time.Now().Add(2*time.Second).Unix(), 0)
			claims := h.claims(detail("subscribe", "urn:a"))
			claims["exp"] = exp.Unix()
			s, _ := tr.openStream(t, h, c, "match=urn:a", sign(t, claims))
			sub := subscriberOf(t, watch.next(), "urn:a", true)
			s.expectEnd()
			if now := time.Now(); now.Before(exp) || now.After(exp.Add(5*time.Second)) {
				t.Errorf("stream ended %v after its token's expiry, want within 5s after it", now.Sub(exp))
			}
			if got := subscriberOf(t, watch.next(), "urn:a", false); got != sub {
				t.Errorf("the end of %s, want of %s", got, sub)
			}
			// Its slot is free again.
			admitted(t, h, tr, c, "match=urn:b", h.admin(t))
		})
	}
}
