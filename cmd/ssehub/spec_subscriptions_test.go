package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// eventData returns the id and data of an event block with one data line.
func eventData(t *testing.T, block string) (id, data string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSuffix(block, "\n\n"), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		switch k {
		case "id":
			id = v
		case "data":
			data = v
		default:
			t.Fatalf("unexpected line %q in %q", line, block)
		}
	}
	return id, data
}

func TestSpecActiveSubscriptions(t *testing.T) {
	h := startHub(t, nil, "-anonymous", "-subscriptions")
	// Opened first, so that the other watcher does not see it.
	anonWatch := h.subscribe(t, "matchURLPattern=/.well-known/mercure/subscriptions/:type/:match/:subscriber&match=urn:marker", nil)
	watcher := sign(t, h.claims(detail("subscribe", "*")))
	watch := h.subscribe(t, "matchURLPattern=/.well-known/mercure/subscriptions/:type/:match/:subscriber",
		http.Header{"Authorization": {"Bearer " + watcher}})

	// A subscriber with a sub claim and a payload for its matcher.
	subTok := sign(t, func() map[string]any {
		c := h.claims(map[string]any{"type": "mercure", "actions": []string{"subscribe"},
			"topics":  []any{map[string]any{"match": "https://example.com/:selector", "matchType": "URLPattern"}},
			"payload": map[string]any{"foo": "bar"}})
		c["sub"] = "urn:uuid:bb3de268-05b0-4c65-b44e-8f9acefc29d6"
		return c
	}())
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", h.url+"?matchURLPattern=https://example.com/:selector", nil)
	req.Header.Set("Authorization", "Bearer "+subTok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	topic := "/.well-known/mercure/subscriptions/URLPattern/https%3A%2F%2Fexample.com%2F%3Aselector/urn%3Auuid%3Abb3de268-05b0-4c65-b44e-8f9acefc29d6"
	doc := func(active bool) string {
		b, _ := json.Marshal(map[string]any{"@context": "https://mercure.rocks/", "active": active, "id": topic,
			"match": "https://example.com/:selector", "matchType": "URLPattern", "payload": map[string]any{"foo": "bar"},
			"subscriber": "urn:uuid:bb3de268-05b0-4c65-b44e-8f9acefc29d6", "type": "Subscription"})
		return string(b)
	}
	var createdID string
	t.Run("ActiveSubscriptions/SubscriptionEvents/Created", func(t *testing.T) {
		id, data := eventData(t, watch.next())
		if data != doc(true) {
			t.Errorf("got %s, want %s", data, doc(true))
		}
		createdID = id
	})

	t.Run("ActiveSubscriptions/SubscriptionAPI", func(t *testing.T) {
		for _, c := range []struct {
			path string
			want string
		}{
			{"/.well-known/mercure/subscriptions", `{"@context":"https://mercure.rocks/","id":"/.well-known/mercure/subscriptions","lastEventID":"LAST","subscriptions":[DOC],"type":"Subscriptions"}`},
			{"/.well-known/mercure/subscriptions/URLPattern/https%3A%2F%2Fexample.com%2F%3Aselector", `{"@context":"https://mercure.rocks/","id":"/.well-known/mercure/subscriptions/URLPattern/https%3A%2F%2Fexample.com%2F%3Aselector","lastEventID":"LAST","subscriptions":[DOC],"type":"Subscriptions"}`},
			{topic, `DOCLAST`},
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
			one, _ := json.Marshal(func() map[string]any {
				var m map[string]any
				json.Unmarshal([]byte(doc(true)), &m)
				delete(m, "@context")
				return m
			}())
			want := strings.ReplaceAll(c.want, "LAST", createdID)
			want = strings.ReplaceAll(want, "DOC", string(one))
			if c.want == "DOCLAST" {
				var m map[string]any
				json.Unmarshal([]byte(doc(true)), &m)
				m["lastEventID"] = createdID
				b, _ := json.Marshal(m)
				want = string(b)
			}
			if code != http.StatusOK || string(gotJSON) != want {
				t.Errorf("%s: got %d %s, want 200 %s", c.path, code, gotJSON, want)
			}
			if got := res.Header.Get("Content-Type"); got != "application/ld+json" {
				t.Errorf("%s: got Content-Type %q, want application/ld+json", c.path, got)
			}
			if got, want := res.Header.Get("Link"), "<"+h.url+`>; rel="mercure"`; got != want {
				t.Errorf("%s: got Link %q, want %q", c.path, got, want)
			}
		}
	})

	t.Run("ActiveSubscriptions/SubscriptionAPI/Authorization", func(t *testing.T) {
		code, _, res := do(t, mustRequest("GET", h.base+"/.well-known/mercure/subscriptions", ""))
		checkStatus(t, "no token", code, res, http.StatusUnauthorized,
			`Bearer resource_metadata="`+h.base+`/.well-known/oauth-protected-resource/.well-known/mercure"`)
		other := sign(t, h.claims(detail("subscribe", "/.well-known/mercure/subscriptions/Exact/x")))
		req := mustRequest("GET", h.base+"/.well-known/mercure/subscriptions", other)
		code, _, res = do(t, req)
		checkStatus(t, "other matcher", code, res, http.StatusForbidden, challengeScope)
		exact := sign(t, h.claims(detail("subscribe", "/.well-known/mercure/subscriptions")))
		if code, body, _ := do(t, mustRequest("GET", h.base+"/.well-known/mercure/subscriptions", exact)); code != http.StatusOK {
			t.Errorf("exact grant: got %d %q, want 200", code, body)
		}
		if code, body, _ := do(t, mustRequest("GET", h.base+topic+"x", watcher)); code != http.StatusNotFound {
			t.Errorf("unknown subscription: got %d %q, want 404", code, body)
		}
	})

	t.Run("ActiveSubscriptions/SubscriptionEvents/Terminated", func(t *testing.T) {
		cancel()
		io.Copy(io.Discard, res.Body)
		_, data := eventData(t, watch.next())
		if data != doc(false) {
			t.Errorf("got %s, want %s", data, doc(false))
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

	t.Run("ActiveSubscriptions/SubscriptionEvents/AnonymousSubscriber", func(t *testing.T) {
		s := h.subscribe(t, "match=urn:x:anon", nil)
		_, data := eventData(t, watch.next())
		var d map[string]any
		json.Unmarshal([]byte(data), &d)
		sub, _ := d["subscriber"].(string)
		if !strings.HasPrefix(sub, "urn:uuid:") || d["id"] != "/.well-known/mercure/subscriptions/Exact/urn%3Ax%3Aanon/"+strings.ReplaceAll(sub, ":", "%3A") {
			t.Errorf("got %s, want a generated urn:uuid subscriber in the id", data)
		}
		s.res.Body.Close()
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
		code, body, _ := do(t, mustRequest("GET", h.base+"/.well-known/mercure/subscriptions", h.admin(t)))
		want := `{"@context":"https://mercure.rocks/","id":"/.well-known/mercure/subscriptions","lastEventID":"earliest","subscriptions":[],"type":"Subscriptions"}` + "\n"
		if code != http.StatusOK || body != want {
			t.Errorf("got %d %s, want 200 %s", code, body, want)
		}
	})
}

func TestSpecSubscriberUnique(t *testing.T) {
	h := startHub(t, nil, "-subscriptions")
	watch := h.subscribe(t, "matchURLPattern=/.well-known/mercure/subscriptions/:type/:match/:subscriber",
		http.Header{"Authorization": {"Bearer " + h.admin(t)}})
	c := h.claims(detail("subscribe", "*"))
	c["sub"] = "urn:user:1"
	tok := http.Header{"Authorization": {"Bearer " + sign(t, c)}}
	h.subscribe(t, "match=urn:tab", tok) // open for the whole test
	t.Run("ActiveSubscriptions/SubscriptionEvents/SubscriberFromSub", func(t *testing.T) {
		_, data := eventData(t, watch.next())
		var d map[string]any
		json.Unmarshal([]byte(data), &d)
		if d["subscriber"] != "urn:user:1" || d["id"] != "/.well-known/mercure/subscriptions/Exact/urn%3Atab/urn%3Auser%3A1" {
			t.Errorf("got %s, want the sub claim as subscriber", data)
		}
	})
	t.Run("ActiveSubscriptions/SubscriptionEvents/SubscriberUnique", func(t *testing.T) {
		h.subscribe(t, "match=urn:tab", tok) // a second tab of the same user
		_, data := eventData(t, watch.next())
		var d map[string]any
		json.Unmarshal([]byte(data), &d)
		if sub, _ := d["subscriber"].(string); !strings.HasPrefix(sub, "urn:uuid:") {
			t.Errorf("got %s, want a fresh urn:uuid subscriber (urn:user:1 is taken for this matcher)", data)
		}
	})
}
