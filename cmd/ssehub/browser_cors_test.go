package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestBrowserCrossOrigin drives Chromium from a page on another origin
// than the hub's: the draft's CORS rules (credentials only for listed
// origins, the reconciliation field and the Link header readable).
func TestBrowserCrossOrigin(t *testing.T) {
	blank := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<!doctype html><title>page</title>")
	})
	listed, other := httptest.NewServer(blank), httptest.NewServer(blank)
	t.Cleanup(listed.Close)
	t.Cleanup(other.Close)
	h := startHub(t, nil, "-anonymous", "-subscriptions", "-cors-origins", listed.URL)
	ctx := browser(t)
	reader := sign(t, h.claims(detail("subscribe", "urn:cors:1", "/.well-known/mercure/subscriptions")))
	httpOnly, secure := true, true
	if _, err := chromedp.Run(ctx, func(ctx context.Context, tg *chromedp.Target) (cdp.Empty, error) {
		return cdp.Call(ctx, tg, network.SetCookie, network.SetCookieParams{
			Name: "__Secure-mercure_access_token", Value: reader, URL: h.base + "/", HTTPOnly: &httpOnly, Secure: &secure})
	}); err != nil {
		t.Fatal(err)
	}
	// source opens an EventSource with credentials on the hub and
	// records its events, or "error" when the browser refuses it.
	source := fmt.Sprintf(`(() => {
		window.seen = [];
		const es = new EventSource(%q, {withCredentials: true});
		es.onopen = () => window.seen.push("open");
		es.onerror = () => { window.seen.push("error"); es.close(); };
		es.onmessage = e => window.seen.push(e.data + " " + e.lastEventId);
		return true;
	})()`, h.url+"?match=urn:cors:1")

	t.Run("ListedOriginWithCookie", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.Navigate(listed.URL+"/"), chromedp.Evaluate[chromedp.Void](source),
			chromedp.Poll[chromedp.Void](`window.seen.length >= 1`, pollLimit)); err != nil {
			t.Fatal(err)
		}
		id := h.mustPublish(t, form("topic", "urn:cors:1", "data", "private", "private", "on"))
		got, err := chromedp.Run(ctx, chromedp.Poll[string](`window.seen.length >= 2 && window.seen.join("|")`, pollLimit))
		if want := "open|private " + id; err != nil || got != want {
			t.Errorf("got %q (%v), want %q", got, err, want)
		}
	})

	t.Run("ListedOriginReadsFields", func(t *testing.T) {
		js := fmt.Sprintf(`(async () => {
			const s = await fetch(%q, {headers: {Authorization: "Bearer %s", "Last-Event-ID": "earliest"}});
			s.body.cancel();
			const l = await fetch(%q, {credentials: "include"});
			return [s.status, s.headers.get("Mercure-Last-Event-ID"), l.status, l.headers.get("Link") !== null].join(" ");
		})()`, h.url+"?match=urn:cors:1", reader, h.url+"/subscriptions")
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
		if want := "200 earliest 200 true"; err != nil || got != want {
			t.Errorf("got %q (%v), want %q", got, err, want)
		}
	})

	t.Run("OtherOriginRefused", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.Navigate(other.URL+"/"), chromedp.Evaluate[chromedp.Void](source)); err != nil {
			t.Fatal(err)
		}
		got, err := chromedp.Run(ctx, chromedp.Poll[string](`window.seen.length >= 1 && window.seen.join("|")`, pollLimit))
		if want := "error"; err != nil || got != want {
			t.Errorf("got %q (%v), want %q", got, err, want)
		}
	})
}
