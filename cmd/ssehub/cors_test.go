package main

import (
	"net/http"
	"testing"
	"time"
)

func TestCORS(t *testing.T) {
	listed := startHub(t, nil, "-anonymous", "-cors-origins", "https://app.example")
	star := startHub(t, nil, "-anonymous", "-cors-origins", "*")
	both := startHub(t, nil, "-anonymous", "-cors-origins", "https://app.example,*")
	cases := []struct {
		name, method, origin string
		h                    *testHub
		wantOrigin, wantCred string
		wantCode             int
	}{
		{"Listed", "GET", "https://app.example", listed, "https://app.example", "true", 200},
		{"Unlisted", "GET", "https://evil.example", listed, "", "", 200},
		{"ListedPreflight", "OPTIONS", "https://app.example", listed, "https://app.example", "true", 204},
		{"StarNoCredentials", "GET", "https://any.example", star, "*", "", 200},
		{"StarPreflight", "OPTIONS", "https://any.example", star, "*", "", 204},
		{"UnlistedPreflight", "OPTIONS", "https://evil.example", listed, "", "", 405},
		{"BothListed", "GET", "https://app.example", both, "https://app.example", "true", 200},
		{"BothListedPreflight", "OPTIONS", "https://app.example", both, "https://app.example", "true", 204},
		{"BothOther", "GET", "https://any.example", both, "*", "", 200},
		{"BothOtherPreflight", "OPTIONS", "https://any.example", both, "*", "", 204},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, c.h.base+"/healthz", nil)
			req.Header.Set("Origin", c.origin)
			if c.method == "OPTIONS" {
				req.Header.Set("Access-Control-Request-Method", "POST")
			}
			code, _, res := do(t, req)
			if code != c.wantCode {
				t.Errorf("got status %d, want %d", code, c.wantCode)
			}
			if got := res.Header.Get("Access-Control-Allow-Origin"); got != c.wantOrigin {
				t.Errorf("got Allow-Origin %q, want %q", got, c.wantOrigin)
			}
			if got := res.Header.Get("Access-Control-Allow-Credentials"); got != c.wantCred {
				t.Errorf("got Allow-Credentials %q, want %q", got, c.wantCred)
			}
			wantExpose := ""
			if c.wantOrigin != "" {
				// The subscription API's Link and the reconciliation
				// field must be readable cross-origin.
				wantExpose = "Link, Mercure-Last-Event-ID, Last-Event-ID"
			}
			if got := res.Header.Get("Access-Control-Expose-Headers"); got != wantExpose {
				t.Errorf("got Expose-Headers %q, want %q", got, wantExpose)
			}
			if c.method == "OPTIONS" {
				want := ""
				if c.wantOrigin != "" {
					want = "GET, POST, QUERY"
				}
				if got := res.Header.Get("Access-Control-Allow-Methods"); got != want {
					t.Errorf("got Allow-Methods %q, want %q", got, want)
				}
			}
		})
	}
}

func TestConnectionsPerClient(t *testing.T) {
	h := startHub(t, nil, "-anonymous", "-max-connections-per-client", "2")
	h.subscribe(t, "match=a", nil)
	s := h.subscribe(t, "match=b", nil)
	if code, _, _ := h.get(t, "match=c", nil); code != http.StatusTooManyRequests {
		t.Errorf("third stream: got %d, want 429", code)
	}
	s.res.Body.Close()
	// The slot frees once the hub sees the stream end; a new stream
	// then gets in (the hub notices the close asynchronously, so retry
	// until it does, for at most 10s).
	for deadline := time.Now().Add(10 * time.Second); ; {
		code, _, _ := h.get(t, "match=d", nil)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after a close: got %d, want 200", code)
		}
	}
}
