package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// legacyToken signs a Mercure 0.x token: typ JWT, no aud, no exp.
func legacyToken(t *testing.T, publish, subscribe []string) string {
	t.Helper()
	return signWith(t, jwt.SigningMethodHS256, []byte(testSecret), "JWT",
		jwt.MapClaims{"mercure": map[string]any{"publish": publish, "subscribe": subscribe}})
}

func TestCompat(t *testing.T) {
	h := startHub(t, nil, "-compat", "-anonymous")
	pub := legacyToken(t, []string{"https://example.com/books/{id}"}, nil)

	t.Run("Compat/TopicSelectorsWithURITemplates", func(t *testing.T) {
		s := h.subscribe(t, "topic="+"https://example.com/books/{id}"+"&topic=urn:exact", nil)
		h.mustPublish(t, form("topic", "https://example.com/authors/1", "data", "no"))
		a := h.mustPublish(t, form("topic", "https://example.com/books/1", "data", "a"))
		b := h.mustPublish(t, form("topic", "urn:exact", "data", "b"))
		for i, want := range []string{ev(a, "a"), ev(b, "b")} {
			if got := s.next(); got != want {
				t.Errorf("event %d: got %q, want %q", i, got, want)
			}
		}
	})

	t.Run("Compat/AlternateTopics", func(t *testing.T) {
		s := h.subscribe(t, "topic=https://example.com/alternate", nil)
		id := h.mustPublish(t, form("topic", "https://example.com/canonical", "topic", "https://example.com/alternate", "data", "x"))
		if got, want := s.next(), ev(id, "x"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("Compat/MercureClaim", func(t *testing.T) {
		if code, body, _ := h.publish(t, pub, form("topic", "https://example.com/books/3", "data", "x")); code != http.StatusOK {
			t.Errorf("granted topic: got %d %q, want 200", code, body)
		}
		code, _, res := h.publish(t, pub, form("topic", "https://example.com/books/3", "topic", "https://example.com/other", "data", "x"))
		checkStatus(t, "one topic not granted", code, res, http.StatusForbidden, challengeScope)
		expired := signWith(t, jwt.SigningMethodHS256, []byte(testSecret), "JWT",
			jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix(), "mercure": map[string]any{"publish": []string{"*"}}})
		code, _, res = h.publish(t, expired, form("topic", "x"))
		checkStatus(t, "expired legacy token", code, res, http.StatusUnauthorized, challengeInvalidToken)
		wrongKey := signWith(t, jwt.SigningMethodHS256, []byte("another key of thirty-two bytes!"), "JWT",
			jwt.MapClaims{"mercure": map[string]any{"publish": []string{"*"}}})
		code, _, res = h.publish(t, wrongKey, form("topic", "x"))
		checkStatus(t, "bad signature", code, res, http.StatusUnauthorized, challengeInvalidToken)
		crit := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"mercure": map[string]any{"publish": []string{"*"}}})
		crit.Header["crit"], crit.Header["urn:example:ext"] = []string{"urn:example:ext"}, true
		critToken, _ := crit.SignedString([]byte(testSecret))
		code, _, res = h.publish(t, critToken, form("topic", "x"))
		checkStatus(t, "unknown crit extension", code, res, http.StatusUnauthorized, challengeInvalidToken)
	})

	t.Run("Compat/MercureAuthorizationCookie", func(t *testing.T) {
		reader := legacyToken(t, nil, []string{"https://example.com/private/{id}"})
		s := h.subscribe(t, "topic=https://example.com/private/{id}", http.Header{"Cookie": {"mercureAuthorization=" + reader}})
		h.mustPublish(t, form("topic", "https://example.com/private/1", "topic", "https://example.com/hidden", "data", "alt", "private", "on"))
		id := h.mustPublish(t, form("topic", "https://example.com/private/2", "data", "secret", "private", "on"))
		first := s.next()
		if want := "data: alt\n\n"; first[len(first)-len(want):] != want {
			t.Errorf("got %q, want the private update granted through its canonical topic", first)
		}
		if got, want := s.next(), ev(id, "secret"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("Compat/LastEventIDQuery", func(t *testing.T) {
		first := h.mustPublish(t, form("topic", "urn:compat:resume", "data", "1"))
		second := h.mustPublish(t, form("topic", "urn:compat:resume", "data", "2"))
		for _, name := range []string{"lastEventID", "Last-Event-ID"} {
			s := h.subscribe(t, "topic=urn:compat:resume&"+name+"="+first, nil)
			for _, k := range []string{"Last-Event-ID", "Mercure-Last-Event-ID"} {
				if got := s.res.Header.Get(k); got != first {
					t.Errorf("%s: got %s %q, want %q", name, k, got, first)
				}
			}
			if got, want := s.next(), ev(second, "2"); got != want {
				t.Errorf("%s: got %q, want %q", name, got, want)
			}
			s.res.Body.Close()
		}
	})
}

func TestCompatOff(t *testing.T) {
	h := startHub(t, nil, "-anonymous")
	t.Run("Compat/OffByDefault", func(t *testing.T) {
		code, _, res := h.get(t, "topic=x", nil)
		checkStatus(t, "topic= is no matcher", code, res, http.StatusBadRequest, noChallenge)
		code, _, res = h.publish(t, legacyToken(t, []string{"*"}, nil), form("topic", "x"))
		checkStatus(t, "legacy token", code, res, http.StatusUnauthorized, challengeInvalidToken)
		reader := legacyToken(t, nil, []string{"*"})
		code, _, res = h.get(t, "match=x", http.Header{"Cookie": {"mercureAuthorization=" + reader}})
		if code != http.StatusOK {
			t.Errorf("legacy cookie: got %d, want 200 (ignored: anonymous)", code)
		}
		res.Body.Close()
	})
}

func TestCompatSubscriptionAPI(t *testing.T) {
	h := startHub(t, nil, "-compat", "-anonymous", "-subscriptions")
	t.Run("Compat/SubscriptionAPI", func(t *testing.T) {
		h.subscribe(t, "topic=urn:compat:api", nil)
		get := func(path string) (int, string) {
			req, _ := http.NewRequest("GET", h.url+path, nil)
			req.Header.Set("Authorization", "Bearer "+h.admin(t))
			code, body, _ := do(t, req)
			return code, body
		}
		code, body := get("/subscriptions")
		var list struct {
			Subscriptions []struct {
				ID         string `json:"id"`
				Subscriber string `json:"subscriber"`
			} `json:"subscriptions"`
		}
		if err := json.Unmarshal([]byte(body), &list); code != http.StatusOK || err != nil || len(list.Subscriptions) != 1 {
			t.Fatalf("got %d %q, want 200 and one subscription", code, body)
		}
		s := list.Subscriptions[0]
		want := subscriptionDoc("uritemplate", "urn:compat:api", s.Subscriber, true, nil) + "\n"
		if code, body := get(strings.TrimPrefix(s.ID, "/.well-known/mercure")); code != http.StatusOK || body != want {
			t.Errorf("the subscription listed: got %d %q, want 200 %q", code, body, want)
		}
		want = `{"id":"/.well-known/mercure/subscriptions/uritemplate/urn%3Acompat%3Aapi","subscriptions":[` + strings.TrimSuffix(want, "\n") + `],"type":"subscriptions"}` + "\n"
		if code, body := get("/subscriptions/uritemplate/urn%3Acompat%3Aapi"); code != http.StatusOK || body != want {
			t.Errorf("its matcher's collection: got %d %q, want 200 %q", code, body, want)
		}
	})
}
