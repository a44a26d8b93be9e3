package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// browser starts headless Chromium for the test and returns a context
// driving one of its tabs; it fails the test when Chromium is missing.
func browser(t *testing.T) context.Context {
	t.Helper()
	bin := os.Getenv("CHROMIUM")
	if bin == "" {
		for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if p, err := exec.LookPath(name); err == nil {
				bin = p
				break
			}
		}
	}
	if bin == "" {
		t.Fatal("no Chromium found: install it (Debian: apt-get update && apt-get install -y chromium) or set CHROMIUM to its path")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-sync", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	tab, cancelTab := chromedp.NewContext(actx)
	// The first call starts the browser, which lives as long as its
	// context: no timeout on that one, a bound on everything after.
	if err := chromedp.Do(tab); err != nil {
		cancelTab()
		cancelAlloc()
		t.Fatalf("starting %s: %v", bin, err)
	}
	ctx, cancelTime := context.WithTimeout(tab, 60*time.Second)
	t.Cleanup(func() {
		cancelTime()
		cancelTab()
		cancelAlloc()
	})
	return ctx
}

var pollLimit = chromedp.WithPollingTimeout(10 * time.Second)

// seenEvent is what an EventSource listener records.
type seenEvent struct {
	Data        string `json:"data"`
	LastEventID string `json:"lastEventId"`
}

// openSource opens an EventSource named name on path in the page, its
// events recorded in window.seen[name], and waits until it is open.
func openSource(t *testing.T, ctx context.Context, name, path string) {
	t.Helper()
	js := fmt.Sprintf(`(() => {
		window.seen = window.seen || {};
		window.opened = window.opened || {};
		const list = window.seen[%[1]q] = [];
		const es = new EventSource(%[2]q);
		es.onopen = () => { window.opened[%[1]q] = true; };
		es.onmessage = e => list.push({data: e.data, lastEventId: e.lastEventId});
		return true;
	})()`, name, path)
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](js),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`window.opened[%q] === true`, name), pollLimit)); err != nil {
		t.Fatalf("opening %s: %v", path, err)
	}
}

// waitSeen waits until the source name saw n events and returns them.
func waitSeen(t *testing.T, ctx context.Context, name string, n int) []seenEvent {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Poll[string](fmt.Sprintf(`window.seen[%q].length >= %d && JSON.stringify(window.seen[%[1]q])`, name, n), pollLimit))
	if err != nil {
		now, _ := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`JSON.stringify(window.seen[%q])`, name)))
		t.Fatalf("waiting for %d events on %s: %v; seen %s", n, name, err, now)
	}
	var out []seenEvent
	json.Unmarshal([]byte(s), &out)
	return out
}

func TestBrowser(t *testing.T) {
	h := startHub(t, nil, "-anonymous")
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(h.base+"/")); err != nil {
		t.Fatal(err)
	}

	t.Run("EventSource/PublicNotPrivateAnonymously", func(t *testing.T) {
		openSource(t, ctx, "anon", "/.well-known/mercure?match=urn:browser:1")
		h.mustPublish(t, form("topic", "urn:browser:1", "data", "secret", "private", "on"))
		id := h.mustPublish(t, form("topic", "urn:browser:1", "data", "public"))
		if got, want := fmt.Sprint(waitSeen(t, ctx, "anon", 1)), fmt.Sprint([]seenEvent{{"public", id}}); got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})

	t.Run("EventSource/PrivateWithCookie", func(t *testing.T) {
		reader := sign(t, h.claims(detail("subscribe", "urn:browser:2")))
		httpOnly := true
		_, err := chromedp.Run(ctx, func(ctx context.Context, tg *chromedp.Target) (cdp.Empty, error) {
			return cdp.Call(ctx, tg, network.SetCookie, network.SetCookieParams{
				Name: "mercureAccessToken", Value: reader, URL: h.base + "/", HTTPOnly: &httpOnly})
		})
		if err != nil {
			t.Fatal(err)
		}
		openSource(t, ctx, "cookie", "/.well-known/mercure?match=urn:browser:2")
		id := h.mustPublish(t, form("topic", "urn:browser:2", "data", "for your eyes", "private", "on"))
		if got, want := fmt.Sprint(waitSeen(t, ctx, "cookie", 1)), fmt.Sprint([]seenEvent{{"for your eyes", id}}); got != want {
			t.Errorf("got %s, want %s", got, want)
		}
		chromedp.Run(ctx, func(ctx context.Context, tg *chromedp.Target) (cdp.Empty, error) {
			return cdp.Call(ctx, tg, network.ClearBrowserCookies, cdp.Empty{})
		})
	})

	t.Run("EventSource/ResumeWithLastEventID", func(t *testing.T) {
		first := h.mustPublish(t, form("topic", "urn:browser:3", "data", "one"))
		second := h.mustPublish(t, form("topic", "urn:browser:3", "data", "two"))
		openSource(t, ctx, "resume", "/.well-known/mercure?match=urn:browser:3&lastEventID="+first)
		third := h.mustPublish(t, form("topic", "urn:browser:3", "data", "three"))
		if got, want := fmt.Sprint(waitSeen(t, ctx, "resume", 2)), fmt.Sprint([]seenEvent{{"two", second}, {"three", third}}); got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})

	t.Run("DemoPage/SubscribePublishSee", func(t *testing.T) {
		err := chromedp.Do(ctx,
			chromedp.Navigate(h.base+"/"),
			chromedp.SetValue(chromedp.CSS("#token"), h.admin(t)),
			chromedp.SetValue(chromedp.CSS("#matchers"), "urn:demo:1"),
			chromedp.Click(chromedp.CSS("#subscribe")),
			chromedp.Poll[chromedp.Void](`document.getElementById("status").textContent === "subscribed"`, pollLimit),
			chromedp.SetValue(chromedp.CSS(`#publish [name="topic"]`), "urn:demo:1"),
			chromedp.SetValue(chromedp.CSS(`#publish [name="data"]`), "hello from the demo"),
			chromedp.Click(chromedp.CSS(`#publish [name="private"]`)),
			chromedp.Click(chromedp.CSS(`#publish button`)),
			chromedp.Poll[chromedp.Void](`document.querySelectorAll("#events li").length === 1`, pollLimit),
		)
		if err != nil {
			t.Fatal(err)
		}
		published, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS("#published")))
		if err != nil {
			t.Fatal(err)
		}
		events, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS("#events li")))
		if err != nil {
			t.Fatal(err)
		}
		id, ok := strings.CutPrefix(published, "published ")
		if !ok || !uuidV7URN.MatchString(id) {
			t.Fatalf("got %q, want \"published <id>\"", published)
		}
		if want := "id: " + id + "\ntype: message\ndata: hello from the demo"; events != want {
			t.Errorf("got event %q, want %q", events, want)
		}
	})

	t.Run("DemoPage/RefusedPublishShowsStatus", func(t *testing.T) {
		err := chromedp.Do(ctx,
			chromedp.Evaluate[chromedp.Void](`document.getElementById("token").value = ""`),
			chromedp.Click(chromedp.CSS(`#publish button`)),
			chromedp.Poll[chromedp.Void](`document.getElementById("published").textContent.startsWith("401")`, pollLimit),
		)
		if err != nil {
			t.Fatal(err)
		}
		published, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS("#published")))
		if err != nil {
			t.Fatal(err)
		}
		if want := "401 an access token is required\n"; published != want {
			t.Errorf("got %q, want %q", published, want)
		}
	})
}

func TestBrowserDemoDevMode(t *testing.T) {
	h := startRun(t, nil, []string{"-addr", "127.0.0.1:0"})
	ctx := browser(t)
	t.Run("DemoPage/WorksOutOfTheBox", func(t *testing.T) {
		err := chromedp.Do(ctx,
			chromedp.Navigate(h.base+"/"),
			chromedp.SetValue(chromedp.CSS("#matchers"), "*"),
			chromedp.Click(chromedp.CSS("#subscribe")),
			chromedp.Poll[chromedp.Void](`document.getElementById("status").textContent === "subscribed"`, pollLimit),
			chromedp.Click(chromedp.CSS(`#publish button`)),
			chromedp.Poll[chromedp.Void](`document.querySelectorAll("#events li").length === 1`, pollLimit),
		)
		if err != nil {
			t.Fatal(err)
		}
		events, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS("#events li")))
		if err != nil {
			t.Fatal(err)
		}
		if want := "type: message\ndata: {\"title\": \"Hello\"}"; !strings.HasSuffix(events, want) {
			t.Errorf("got event %q, want it to end with %q", events, want)
		}
	})
}
