package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// subscriptionEvent splits a subscription event block into its id and
// data, failing unless its type is mercure and it has one data line.
func subscriptionEvent(t *testing.T, block string) (id, data string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(block, "\n\n"), "\n")
	if len(lines) != 3 || lines[0] != "event: mercure" || !strings.HasPrefix(lines[1], "id: ") || !strings.HasPrefix(lines[2], "data: ") {
		t.Fatalf("got %q, want event: mercure, an id and one data line", block)
	}
	return strings.TrimPrefix(lines[1], "id: "), strings.TrimPrefix(lines[2], "data: ")
}

var uuidURN = regexp.MustCompile(`^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// subscriptionDoc is the document of a subscription, as the hub writes it.
func subscriptionDoc(matchType, match, subscriber string, active bool, payload any) string {
	m := map[string]any{
		"type":       "subscription",
		"match_type": matchType,
		"match":      match,
		"subscriber": subscriber,
		"active":     active,
	}
	m["id"] = "/.well-known/mercure/subscriptions/" + matchType + "/" + rfc6570(match) + "/" + rfc6570(subscriber)
	if payload != nil {
		m["payload"] = payload
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// rfc6570 percent-encodes every byte of s but the unreserved characters.
func rfc6570(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			b.WriteString("%" + strings.ToUpper(hex2(c)))
		}
	}
	return b.String()
}

func hex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&15]})
}

func TestSpecActiveSubscriptions(t *testing.T) {
	h := startHub(t, nil, "-anonymous", "-subscriptions")
	// Opened first, so that the other watcher does not see it.
	anonWatch := h.subscribe(t, "match_urlpattern=/.well-known/mercure/subscriptions/:type/:match/:subscriber&match=urn:marker", nil)
	watcher := sign(t, h.claims(detail("subscribe", "*")))
	watch := h.subscribe(t, "match_urlpattern=/.well-known/mercure/subscriptions/:type/:match/:subscriber",
		http.Header{"Authorization": {"Bearer " + watcher}})

	// A subscriber with a sub claim and a payload for its matcher.
	subTok := sign(t, func() map[string]any {
		c := h.claims(map[string]any{"type": detailType, "actions": []string{"subscribe"},
			"topics":  []any{map[string]any{"match": "https://example.com/:selector", "match_type": "urlpattern"}},
			"payload": map[string]any{"foo": "bar"}})
		c["sub"] = "urn:uuid:bb3de268-05b0-4c65-b44e-8f9acefc29d6"
		return c
	}())
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", h.url+"?match_urlpattern=https://example.com/:selector", nil)
	req.Header.Set("Authorization", "Bearer "+subTok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	payload := map[string]any{"foo": "bar"}
	var createdID, subscriber, topic string
	t.Run("ActiveSubscriptions/SubscriptionEvents/Created", func(t *testing.T) {
		var data string
		createdID, data = subscriptionEvent(t, watch.next())
		var d map[string]any
		json.Unmarshal([]byte(data), &d)
		subscriber, _ = d["subscriber"].(string)
		// A random identifier per connection, never the sub claim.
		if !uuidURN.MatchString(subscriber) || subscriber == "urn:uuid:bb3de268-05b0-4c65-b44e-8f9acefc29d6" {
			t.Fatalf("got subscriber %q, want a random urn:uuid", subscriber)
		}
		topic = "/.well-known/mercure/subscriptions/urlpattern/https%3A%2F%2Fexample.com%2F%3Aselector/" + rfc6570(subscriber)
		if want := subscriptionDoc("urlpattern", "https://example.com/:selector", subscriber, true, payload); data != want {
			t.Errorf("got %s, want %s", data, want)
		}
	})
	if subscriber == "" {
		t.FailNow()
	}

	t.Run("ActiveSubscriptions/SubscriptionAPI", func(t *testing.T) {
		one := subscriptionDoc("urlpattern", "https://example.com/:selector", subscriber, true, payload)
		for _, c := range []struct {
			path string
			want string
		}{
			{"/.well-known/mercure/subscriptions", `{"id":"/.well-known/mercure/subscriptions","subscriptions":[DOC],"type":"subscriptions"}`},
			{"/.well-known/mercure/subscriptions/urlpattern/https%3A%2F%2Fexample.com%2F%3Aselector", `{"id":"/.well-known/mercure/subscriptions/urlpattern/https%3A%2F%2Fexample.com%2F%3Aselector","subscriptions":[DOC],"type":"subscriptions"}`},
			{topic, `DOC`},
		} {
			req, _ := http.NewRequest("GET", h.base+c.path, nil)
			req.Header.Set("Authorization", "Bearer "+watcher)
			code, body, res := do(t, req)
			// The watchers' own subscriptions are listed too: keep the one
			// under test.
			var got map[string]any
			json.Unmarshal([]byte(body), &got)
			if subs, ok := got["subscriptions"].([]any); ok {
				var keep []any
				for _, s := range subs {
					if s.(map[string]any)["id"] == topic {
						keep = append(keep, s)
					}
				}
				got["subscriptions"] = keep
			}
			gotJSON, _ := json.Marshal(got)
			want := strings.ReplaceAll(c.want, "DOC", one)
			if code != http.StatusOK || string(gotJSON) != want {
				t.Errorf("%s: got %d %s, want 200 %s", c.path, code, gotJSON, want)
			}
			if got := res.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("%s: got Content-Type %q, want application/json", c.path, got)
			}
			wantLink := "<" + h.url + `>; rel="mercure"; last-event-id="` + createdID + `"; type="mercure"; content-type="application/json"`
			if got := res.Header.Get("Link"); got != wantLink {
				t.Errorf("%s: got Link %q, want %q", c.path, got, wantLink)
			}
		}
	})

	t.Run("ActiveSubscriptions/SubscriptionAPI/Authorization", func(t *testing.T) {
		code, _, res := do(t, mustRequest("GET", h.base+"/.well-known/mercure/subscriptions", ""))
		checkStatus(t, "no token", code, res, http.StatusUnauthorized, challengeNoToken)
		other := sign(t, h.claims(detail("subscribe", "/.well-known/mercure/subscriptions/exact/x")))
		code, _, res = do(t, mustRequest("GET", h.base+"/.well-known/mercure/subscriptions", other))
		checkStatus(t, "other matcher", code, res, http.StatusForbidden, challengeScope)
		exact := sign(t, h.claims(detail("subscribe", "/.well-known/mercure/subscriptions")))
		if code, body, _ := do(t, mustRequest("GET", h.base+"/.well-known/mercure/subscriptions", exact)); code != http.StatusOK {
			t.Errorf("exact grant: got %d %q, want 200", code, body)
		}
		// The query is not part of the topic authorized.
		if code, body, _ := do(t, mustRequest("GET", h.base+"/.well-known/mercure/subscriptions?x=1", exact)); code != http.StatusOK {
			t.Errorf("exact grant, with a query: got %d %q, want 200", code, body)
		}
		pattern := sign(t, h.claims(map[string]any{"type": detailType, "actions": []string{"subscribe"},
			"topics": []any{map[string]any{"match": "/.well-known/mercure/subscriptions/:type/:match", "match_type": "urlpattern"}}}))
		if code, body, _ := do(t, mustRequest("GET", h.base+"/.well-known/mercure/subscriptions/urlpattern/https%3A%2F%2Fexample.com%2F%3Aselector", pattern)); code != http.StatusOK {
			t.Errorf("relative URL pattern grant: got %d %q, want 200", code, body)
		}
		if code, body, _ := do(t, mustRequest("GET", h.base+topic+"x", watcher)); code != http.StatusNotFound {
			t.Errorf("unknown subscription: got %d %q, want 404", code, body)
		}
	})

	t.Run("ActiveSubscriptions/SubscriptionEvents/Terminated", func(t *testing.T) {
		cancel()
		io.Copy(io.Discard, res.Body)
		_, data := subscriptionEvent(t, watch.next())
		if want := subscriptionDoc("urlpattern", "https://example.com/:selector", subscriber, false, payload); data != want {
			t.Errorf("got %s, want %s", data, want)
		}
	})

	t.Run("ActiveSubscriptions/SubscriptionEvents/Private", func(t *testing.T) {
		// The anonymous watcher saw none of the events above: the first
		// it gets is the public marker.
		id := h.mustPublish(t, form("topic", "urn:marker", "data", "marker"))
		if got, want := anonWatch.next(), ev(id, "marker"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("ActiveSubscriptions/SubscriptionEvents/OneConnectionOneSubscriber", func(t *testing.T) {
		s := h.subscribe(t, "match=urn:x:a&match_urlpattern="+url.QueryEscape("https://example.com/100%/:id")+"&match=urn:x:a", nil)
		_, a := subscriptionEvent(t, watch.next())
		_, b := subscriptionEvent(t, watch.next())
		var da, db map[string]any
		json.Unmarshal([]byte(a), &da)
		json.Unmarshal([]byte(b), &db)
		sub, _ := da["subscriber"].(string)
		if !uuidURN.MatchString(sub) || db["subscriber"] != sub {
			t.Fatalf("got subscribers %v and %v, want one urn:uuid", da["subscriber"], db["subscriber"])
		}
		if want := subscriptionDoc("exact", "urn:x:a", sub, true, nil); a != want {
			t.Errorf("got %s, want %s", a, want)
		}
		// Encoded once: the "%" of the matcher becomes %25.
		if want := subscriptionDoc("urlpattern", "https://example.com/100%/:id", sub, true, nil); b != want {
			t.Errorf("got %s, want %s", b, want)
		}
		s.res.Body.Close()
		for range 2 {
			subscriptionEvent(t, watch.next()) // the terminations
		}
	})
}

func mustRequest(method, url, token string) *http.Request {
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

func TestSpecSubscriptionAPIEmpty(t *testing.T) {
	h := startHub(t, nil, "-subscriptions")
	t.Run("ActiveSubscriptions/SubscriptionAPI/LastEventIDEarliest", func(t *testing.T) {
		code, body, res := do(t, mustRequest("GET", h.base+"/.well-known/mercure/subscriptions", h.admin(t)))
		want := `{"id":"/.well-known/mercure/subscriptions","subscriptions":[],"type":"subscriptions"}` + "\n"
		if code != http.StatusOK || body != want {
			t.Errorf("got %d %s, want 200 %s", code, body, want)
		}
		wantLink := "<" + h.url + `>; rel="mercure"; last-event-id="earliest"; type="mercure"; content-type="application/json"`
		if got := res.Header.Get("Link"); got != wantLink {
			t.Errorf("got Link %q, want %q", got, wantLink)
		}
	})
}

func TestSpecSubscriberUnique(t *testing.T) {
	h := startHub(t, nil, "-subscriptions")
	watch := h.subscribe(t, "match_urlpattern=/.well-known/mercure/subscriptions/:type/:match/:subscriber",
		http.Header{"Authorization": {"Bearer " + h.admin(t)}})
	c := h.claims(detail("subscribe", "*"))
	c["sub"] = "urn:user:1"
	tok := http.Header{"Authorization": {"Bearer " + sign(t, c)}}
	t.Run("ActiveSubscriptions/SubscriptionEvents/SubscriberUniquePerConnection", func(t *testing.T) {
		// Two tabs with one token: two subscribers, neither the sub.
		h.subscribe(t, "match=urn:tab", tok)
		h.subscribe(t, "match=urn:tab", tok)
		seen := map[string]bool{}
		for range 2 {
			_, data := subscriptionEvent(t, watch.next())
			var d map[string]any
			json.Unmarshal([]byte(data), &d)
			sub, _ := d["subscriber"].(string)
			if !uuidURN.MatchString(sub) || seen[sub] {
				t.Errorf("got subscriber %q after %v, want a fresh urn:uuid", sub, seen)
			}
			seen[sub] = true
		}
	})
}

func TestSpecPayloads(t *testing.T) {
	h := startHub(t, nil, "-subscriptions")
	watch := h.subscribe(t, "match_urlpattern=/.well-known/mercure/subscriptions/:type/:match/:subscriber",
		http.Header{"Authorization": {"Bearer " + h.admin(t)}})
	tok := sign(t, h.claims(
		map[string]any{"type": detailType, "actions": []string{"subscribe"},
			"topics": []any{map[string]any{"match": "https://example.com/foo"}}, "payload": map[string]any{"custom1": "foo"}},
		map[string]any{"type": detailType, "actions": []string{"subscribe"},
			"topics": []any{map[string]any{"match": "https://example.com/bar/:id", "match_type": "urlpattern"}}, "payload": map[string]any{"custom2": "bar"}},
		map[string]any{"type": detailType, "actions": []string{"subscribe"},
			"topics": []any{map[string]any{"match": "*"}}, "payload": map[string]any{"custom3": "default"}},
	))
	t.Run("Authorization/Payloads/FirstMatchingDetail", func(t *testing.T) {
		h.subscribe(t, "match=https://example.com/foo&match_urlpattern=https://example.com/bar/:id&match=https://example.com/baz", http.Header{"Authorization": {"Bearer " + tok}})
		for _, want := range []struct {
			matchType, match string
			payload          any
		}{
			{"exact", "https://example.com/foo", map[string]any{"custom1": "foo"}},
			{"urlpattern", "https://example.com/bar/:id", map[string]any{"custom2": "bar"}},
			{"exact", "https://example.com/baz", map[string]any{"custom3": "default"}},
		} {
			_, data := subscriptionEvent(t, watch.next())
			var d map[string]any
			json.Unmarshal([]byte(data), &d)
			sub, _ := d["subscriber"].(string)
			if w := subscriptionDoc(want.matchType, want.match, sub, true, want.payload); data != w {
				t.Errorf("got %s, want %s", data, w)
			}
		}
	})
}
