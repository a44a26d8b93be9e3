package main

import (
	"net/http"
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
		s := h.subscribe(t, "topic=urn:compat:resume&Last-Event-ID="+first, nil)
		if got := s.res.Header.Get("Last-Event-ID"); got != first {
			t.Errorf("got Last-Event-ID %q, want %q", got, first)
		}
		if got, want := s.next(), ev(second, "2"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
}

func TestCompatOff(t *testing.T) {
	h := startHub(t, nil, "-anonymous")
	t.Run("Compat/OffByDefault", func(t *testing.T) {
		code, _, res := h.get(t, "topic=x", nil)
		checkStatus(t, "topic=", code, res, http.StatusBadRequest, challengeInvalidRequest)
		code, _, res = h.publish(t, legacyToken(t, []string{"*"}, nil), form("topic", "x"))
		checkStatus(t, "legacy token", code, res, http.StatusUnauthorized, challengeInvalidToken)
		code, _, res = h.publish(t, h.admin(t), form("topic", "a", "topic", "b"))
		checkStatus(t, "two topics", code, res, http.StatusBadRequest, challengeInvalidRequest)
	})
}
