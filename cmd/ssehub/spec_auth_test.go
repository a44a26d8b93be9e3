package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestSpecAuthorization(t *testing.T) {
	h := startHub(t, nil, "-anonymous")
	topic := "https://example.com/auth/1"

	t.Run("Authorization/ErrorResponses/NoToken", func(t *testing.T) {
		code, _, res := h.publish(t, "", form("topic", topic))
		checkStatus(t, "publish", code, res, http.StatusUnauthorized, challengeNoToken)
		if got, want := res.Header.Get("WWW-Authenticate"), `Bearer resource_metadata="`+h.base+`/.well-known/oauth-protected-resource/.well-known/mercure"`; got != want {
			t.Errorf("got WWW-Authenticate %q, want %q", got, want)
		}
	})

	t.Run("Authorization/ErrorResponses/MalformedHeader", func(t *testing.T) {
		for _, v := range []string{"Basic abc", "Bearer", "Bearer a b", "bearer"} {
			req, _ := http.NewRequest("POST", h.url, strings.NewReader("topic=x"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", v)
			code, _, res := do(t, req)
			checkStatus(t, v, code, res, http.StatusBadRequest, challengeInvalidRequest)
		}
	})

	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good := func() jwt.MapClaims { return h.claims(detail("publish", "*")) }
	with := func(k string, v any) jwt.MapClaims { c := good(); c[k] = v; return c }
	without := func(k string) jwt.MapClaims { c := good(); delete(c, k); return c }
	invalid := []struct {
		name  string
		token string
	}{
		{"BadSignature", signWith(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32)), "at+jwt", good())},
		{"TypJWT", signWith(t, jwt.SigningMethodHS256, []byte(testSecret), "JWT", good())},
		{"TypMissing", signWith(t, jwt.SigningMethodHS256, []byte(testSecret), "", good())},
		{"AlgNone", signWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "at+jwt", good())},
		{"AlgNotAllowed", signWith(t, jwt.SigningMethodHS512, []byte(testSecret), "at+jwt", good())},
		{"AlgKeyMismatch", signWith(t, jwt.SigningMethodES256, ecKey, "at+jwt", good())},
		{"Expired", sign(t, with("exp", time.Now().Add(-time.Minute).Unix()))},
		{"ExpMissing", sign(t, without("exp"))},
		{"NotYetValid", sign(t, with("nbf", time.Now().Add(time.Minute).Unix()))},
		{"AudMissing", sign(t, without("aud"))},
		{"AudOtherHub", sign(t, with("aud", "https://other.example/.well-known/mercure"))},
		{"AudArrayWithout", sign(t, with("aud", []string{"a", "b"}))},
		{"IssMissing", sign(t, without("iss"))},
		{"Garbage", "not.a.token"},
		{"CritExtensionUnknown", func() string { // RFC 7515 section 4.1.11
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, good())
			tok.Header["typ"], tok.Header["crit"], tok.Header["urn:example:ext"] = "at+jwt", []string{"urn:example:ext"}, true
			s, _ := tok.SignedString([]byte(testSecret))
			return s
		}()},
	}
	for _, c := range invalid {
		t.Run("Authorization/TokenValidation/"+c.name, func(t *testing.T) {
			code, _, res := h.publish(t, c.token, form("topic", topic))
			checkStatus(t, "publish", code, res, http.StatusUnauthorized, challengeInvalidToken)
			code, _, res = h.get(t, "match=x", http.Header{"Authorization": {"Bearer " + c.token}})
			checkStatus(t, "subscribe", code, res, http.StatusUnauthorized, challengeInvalidToken)
			code, _, res = h.get(t, "match=x", http.Header{"Cookie": {"__Secure-mercure_access_token=" + c.token}})
			checkStatus(t, "subscribe with the cookie", code, res, http.StatusUnauthorized, challengeInvalidToken)
		})
	}

	t.Run("Authorization/TokenValidation/AudArray", func(t *testing.T) {
		tok := sign(t, with("aud", []string{"https://other.example", h.resource}))
		if code, body, _ := h.publish(t, tok, form("topic", topic)); code != http.StatusOK {
			t.Errorf("got %d %q, want 200", code, body)
		}
	})

	t.Run("Authorization/TokenValidation/TypMediaType", func(t *testing.T) {
		tok := signWith(t, jwt.SigningMethodHS256, []byte(testSecret), "application/at+jwt", good())
		if code, body, _ := h.publish(t, tok, form("topic", topic)); code != http.StatusOK {
			t.Errorf("got %d %q, want 200", code, body)
		}
	})

	badDetails := []struct {
		name    string
		details any
	}{
		{"NotArray", map[string]any{"type": detailType}},
		{"EntryNotObject", []any{"mercure"}},
		{"ActionsMissing", []any{map[string]any{"type": detailType, "topics": []any{map[string]any{"match": "*"}}}}},
		{"ActionsEmpty", []any{map[string]any{"type": detailType, "actions": []any{}, "topics": []any{map[string]any{"match": "*"}}}}},
		{"ActionNotAString", []any{map[string]any{"type": detailType, "actions": []any{"publish", 1}, "topics": []any{map[string]any{"match": "*"}}}}},
		{"ActionNull", []any{map[string]any{"type": detailType, "actions": []any{"publish", nil}, "topics": []any{map[string]any{"match": "*"}}}}},
		{"TopicsMissing", []any{map[string]any{"type": detailType, "actions": []any{"publish"}}}},
		{"TopicsEmpty", []any{map[string]any{"type": detailType, "actions": []any{"publish"}, "topics": []any{}}}},
		{"TopicNotObject", []any{map[string]any{"type": detailType, "actions": []any{"publish"}, "topics": []any{"*"}}}},
		{"MatchTypeUnknown", []any{map[string]any{"type": detailType, "actions": []any{"publish"}, "topics": []any{map[string]any{"match": "*", "match_type": "regex"}}}}},
		{"MatchTypeCaseSensitive", []any{map[string]any{"type": detailType, "actions": []any{"publish"}, "topics": []any{map[string]any{"match": "x", "match_type": "Exact"}}}}},
		{"MatchTypeNull", []any{map[string]any{"type": detailType, "actions": []any{"publish"}, "topics": []any{map[string]any{"match": "*", "match_type": nil}}}}},
		{"MatchNotAString", []any{map[string]any{"type": detailType, "actions": []any{"publish"}, "topics": []any{map[string]any{"match": 1}}}}},
		{"URLPatternInvalid", []any{map[string]any{"type": detailType, "actions": []any{"publish"}, "topics": []any{map[string]any{"match": "https://x/(", "match_type": "urlpattern"}}}}},
		{"PayloadNotObject", []any{map[string]any{"type": detailType, "actions": []any{"subscribe"}, "topics": []any{map[string]any{"match": "*"}}, "payload": "x"}}},
		{"OneBadAmongGood", []any{detail("publish", "*"), map[string]any{"type": detailType, "actions": []any{"publish"}, "topics": []any{}}}},
		{"TooManyTopics", []any{detail("publish", strings.Split(strings.Repeat("x,", 129), ",")...)}},
	}
	for _, c := range badDetails {
		t.Run("Authorization/AuthorizationDetails/"+c.name, func(t *testing.T) {
			tok := sign(t, with("authorization_details", c.details))
			code, _, res := h.publish(t, tok, form("topic", topic))
			checkStatus(t, "publish", code, res, http.StatusUnauthorized, challengeInvalidToken)
		})
	}

	t.Run("Authorization/AuthorizationDetails/OtherTypesIgnored", func(t *testing.T) {
		tok := sign(t, with("authorization_details", []any{map[string]any{"type": "payment", "x": 1}, detail("publish", topic)}))
		if code, body, _ := h.publish(t, tok, form("topic", topic)); code != http.StatusOK {
			t.Errorf("got %d %q, want 200", code, body)
		}
		// The type is compared byte by byte: "mercure" (an earlier
		// draft's) is another type, which grants nothing.
		tok = sign(t, with("authorization_details", []any{map[string]any{"type": "mercure", "actions": []string{"publish"}, "topics": []any{map[string]any{"match": "*"}}}}))
		code, _, res := h.publish(t, tok, form("topic", topic))
		checkStatus(t, "type mercure", code, res, http.StatusForbidden, challengeScope)
	})

	t.Run("Authorization/AuthorizationDetails/UnknownActionsIgnored", func(t *testing.T) {
		tok := sign(t, with("authorization_details", []any{
			map[string]any{"type": detailType, "actions": []any{"admin"}, "topics": []any{map[string]any{"match": "*"}}},
			map[string]any{"type": detailType, "actions": []any{"publish", "admin"}, "topics": []any{map[string]any{"match": topic}}},
		}))
		if code, body, _ := h.publish(t, tok, form("topic", topic)); code != http.StatusOK {
			t.Errorf("known action beside an unknown one: got %d %q, want 200", code, body)
		}
		code, _, res := h.publish(t, tok, form("topic", "https://example.com/auth/other"))
		checkStatus(t, "unknown action only", code, res, http.StatusForbidden, challengeScope)
	})

	t.Run("Authorization/TopicMatcherList/Wildcard", func(t *testing.T) {
		for _, mt := range []any{nil, "exact", "urlpattern"} {
			m := map[string]any{"match": "*"}
			if mt != nil {
				m["match_type"] = mt
			}
			tok := sign(t, with("authorization_details", []any{map[string]any{"type": detailType, "actions": []any{"publish"}, "topics": []any{m}}}))
			for _, tp := range []string{topic, "urn:any", "relative/topic"} {
				if code, body, _ := h.publish(t, tok, form("topic", tp)); code != http.StatusOK {
					t.Errorf("match_type %v, topic %q: got %d %q, want 200", mt, tp, code, body)
				}
			}
		}
	})

	t.Run("Authorization/TopicMatcherList/ExactByDefault", func(t *testing.T) {
		tok := sign(t, with("authorization_details", []any{map[string]any{"type": detailType, "actions": []any{"publish"}, "topics": []any{map[string]any{"match": "https://example.com/auth/:id"}}}}))
		code, _, res := h.publish(t, tok, form("topic", topic))
		checkStatus(t, "pattern without match_type", code, res, http.StatusForbidden, challengeScope)
		if code, body, _ := h.publish(t, tok, form("topic", "https://example.com/auth/:id")); code != http.StatusOK {
			t.Errorf("the same string: got %d %q, want 200", code, body)
		}
	})

	t.Run("Authorization/Publishers", func(t *testing.T) {
		cases := map[string]string{
			"NoMercureDetail":  sign(t, h.claims()),
			"OtherTopic":       sign(t, h.claims(detail("publish", "https://example.com/auth/2"))),
			"SubscribeOnly":    sign(t, h.claims(detail("subscribe", "*"))),
			"PatternMismatch":  sign(t, h.claims(map[string]any{"type": detailType, "actions": []string{"publish"}, "topics": []any{map[string]any{"match": "https://example.com/other/:id", "match_type": "urlpattern"}}})),
			"ExactIsNotPrefix": sign(t, h.claims(detail("publish", "https://example.com/auth"))),
		}
		for name, tok := range cases {
			code, _, res := h.publish(t, tok, form("topic", topic))
			checkStatus(t, name, code, res, http.StatusForbidden, challengeScope)
		}
		pattern := sign(t, h.claims(map[string]any{"type": detailType, "actions": []string{"publish"}, "topics": []any{map[string]any{"match": "https://example.com/auth/:id", "match_type": "urlpattern"}}}))
		if code, body, _ := h.publish(t, pattern, form("topic", topic)); code != http.StatusOK {
			t.Errorf("URL pattern grant: got %d %q, want 200", code, body)
		}
	})

	t.Run("Authorization/Publishers/EveryTopic", func(t *testing.T) {
		s := h.subscribe(t, "match=*", nil)
		tok := sign(t, h.claims(detail("publish", topic)))
		code, _, res := h.publish(t, tok, form("topic", topic, "topic", "https://example.com/auth/alternate", "data", "half"))
		checkStatus(t, "alternate not granted", code, res, http.StatusForbidden, challengeScope)
		tok = sign(t, h.claims(detail("publish", topic, "https://example.com/auth/alternate")))
		id := h.mustPublishWith(t, tok, form("topic", topic, "topic", "https://example.com/auth/alternate", "data", "whole"))
		if got, want := s.next(), ev(id, "whole"); got != want {
			t.Errorf("got %q, want %q (the refused update must not be dispatched)", got, want)
		}
	})

	t.Run("Authorization/Subscribers", func(t *testing.T) {
		reader := sign(t, h.claims(detail("subscribe", "https://example.com/books/1", "https://example.com/books/7")))
		s := h.subscribe(t, "match_urlpattern=https://example.com/books/:id", http.Header{"Authorization": {"Bearer " + reader}})
		h.mustPublish(t, form("topic", "https://example.com/books/2", "data", "no", "private", "on"))
		id1 := h.mustPublish(t, form("topic", "https://example.com/books/1", "data", "yes", "private", "on"))
		id2 := h.mustPublish(t, form("topic", "https://example.com/books/2", "data", "public"))
		for i, want := range []string{ev(id1, "yes"), ev(id2, "public")} {
			if got := s.next(); got != want {
				t.Errorf("event %d: got %q, want %q", i, got, want)
			}
		}
	})

	t.Run("Authorization/Subscribers/AlternateTopicGrants", func(t *testing.T) {
		reader := sign(t, h.claims(map[string]any{"type": detailType, "actions": []string{"subscribe"},
			"topics": []any{map[string]any{"match": "https://example.com/users/42/*", "match_type": "urlpattern"}}}))
		s := h.subscribe(t, "match_urlpattern=https://example.com/books/:id", http.Header{"Authorization": {"Bearer " + reader}})
		h.mustPublish(t, form("topic", "https://example.com/books/1", "topic", "https://example.com/users/7/books/1", "data", "not 42's", "private", "on"))
		id := h.mustPublish(t, form("topic", "https://example.com/books/1", "topic", "https://example.com/users/42/books/1", "data", "42's", "private", "on"))
		if got, want := s.next(), ev(id, "42's"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("Authorization/PresentingTheAccessToken/Precedence", func(t *testing.T) {
		tp := "https://example.com/auth/precedence"
		reader := sign(t, h.claims(detail("subscribe", tp)))
		nobody := sign(t, h.claims(detail("subscribe", "https://example.com/none")))
		cases := []struct {
			name     string
			query    string
			header   http.Header
			getsPriv bool
		}{
			{"HeaderOverCookie", "", http.Header{"Authorization": {"Bearer " + nobody}, "Cookie": {"__Secure-mercure_access_token=" + reader}}, false},
			{"Header", "", http.Header{"Authorization": {"Bearer " + reader}}, true},
			{"QueryParameterNotAccepted", "access_token=" + reader, nil, false},
			{"QueryParameterNotAcceptedCookieUsed", "access_token=" + nobody, http.Header{"Cookie": {"__Secure-mercure_access_token=" + reader}}, true},
			{"Cookie", "", http.Header{"Cookie": {"__Secure-mercure_access_token=" + reader}}, true},
			{"OtherCookieName", "", http.Header{"Cookie": {"mercureAccessToken=" + reader}}, false},
		}
		for _, c := range cases {
			q := "match=" + tp
			if c.query != "" {
				q += "&" + c.query
			}
			s := h.subscribe(t, q, c.header)
			priv := h.mustPublish(t, form("topic", tp, "data", "private", "private", ""))
			pub := h.mustPublish(t, form("topic", tp, "data", "public"))
			want := ev(pub, "public")
			if c.getsPriv {
				want = ev(priv, "private")
			}
			if got := s.next(); got != want {
				t.Errorf("%s: got %q, want %q", c.name, got, want)
			}
			s.res.Body.Close()
		}
	})

	t.Run("Authorization/Cookie/CSRF", func(t *testing.T) {
		tok := h.admin(t)
		cases := []struct {
			name   string
			header http.Header
			want   int
		}{
			{"NoOrigin", nil, http.StatusForbidden},
			{"OtherOrigin", http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
			{"OtherReferer", http.Header{"Referer": {"https://evil.example/page"}}, http.StatusForbidden},
			{"SameOrigin", http.Header{"Origin": {h.base}}, http.StatusOK},
			{"SameReferer", http.Header{"Referer": {h.base + "/page"}}, http.StatusOK},
		}
		for _, c := range cases {
			req, _ := http.NewRequest("POST", h.url, strings.NewReader("topic=https://example.com/csrf"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Cookie", "__Secure-mercure_access_token="+tok)
			for k, v := range c.header {
				req.Header[k] = v
			}
			if code, body, _ := do(t, req); code != c.want {
				t.Errorf("%s: got %d %q, want %d", c.name, code, body, c.want)
			}
		}
	})

	t.Run("Authorization/Subscribers/ClosedAtExp", func(t *testing.T) {
		exp := time.Now().Add(1500 * time.Millisecond).Truncate(time.Second).Add(time.Second)
		c := h.claims(detail("subscribe", "*"))
		c["exp"] = exp.Unix()
		s := h.subscribe(t, "match=*", http.Header{"Authorization": {"Bearer " + sign(t, c)}})
		s.expectEnd()
		if late := time.Since(exp); late > 2*time.Second {
			t.Errorf("stream ended %v after exp, want at exp", late)
		}
	})
}

func TestSpecAuthorizationNoAnonymous(t *testing.T) {
	h := startHub(t, nil)
	t.Run("Authorization/AnonymousRefused", func(t *testing.T) {
		code, _, res := h.get(t, "match=*", nil)
		checkStatus(t, "subscribe", code, res, http.StatusUnauthorized, challengeNoToken)
		h.subscribe(t, "match=*", http.Header{"Authorization": {"Bearer " + sign(t, h.claims(detail("subscribe", "x")))}})
	})
}

func TestSpecAuthorizationIssuerAndPEM(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	path := filepath.Join(t.TempDir(), "pub.pem")
	os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	h := startHub(t, nil, "-jwt-key", path, "-issuer", "https://auth.example")
	c := h.claims(detail("publish", "*"))
	c["iss"] = "https://auth.example"
	t.Run("Authorization/TokenValidation/IssuerAndKey", func(t *testing.T) {
		if code, body, _ := h.publish(t, signWith(t, jwt.SigningMethodES256, key, "at+jwt", c), form("topic", "x")); code != http.StatusOK {
			t.Errorf("good token: got %d %q, want 200", code, body)
		}
		c["iss"] = "https://other.example"
		code, _, res := h.publish(t, signWith(t, jwt.SigningMethodES256, key, "at+jwt", c), form("topic", "x"))
		checkStatus(t, "other issuer", code, res, http.StatusUnauthorized, challengeInvalidToken)
		delete(c, "iss")
		code, _, res = h.publish(t, signWith(t, jwt.SigningMethodES256, key, "at+jwt", c), form("topic", "x"))
		checkStatus(t, "no issuer", code, res, http.StatusUnauthorized, challengeInvalidToken)
		c["iss"] = "https://auth.example/"
		code, _, res = h.publish(t, signWith(t, jwt.SigningMethodES256, key, "at+jwt", c), form("topic", "x"))
		checkStatus(t, "issuer not exactly the same", code, res, http.StatusUnauthorized, challengeInvalidToken)
		c["iss"] = "https://auth.example"
		code, _, res = h.publish(t, signWith(t, jwt.SigningMethodHS256, der, "at+jwt", c), form("topic", "x"))
		checkStatus(t, "HS256 with the public key as secret", code, res, http.StatusUnauthorized, challengeInvalidToken)
	})
}

func TestMaxLifetime(t *testing.T) {
	h := startHub(t, nil, "-anonymous", "-max-lifetime", "300ms")
	t.Run("Authorization/Subscribers/MaximumConnectionLifetime", func(t *testing.T) {
		start := time.Now()
		s := h.subscribe(t, "match=x", nil)
		s.expectEnd()
		if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
			t.Errorf("stream ended after %v, want about 300ms", d)
		}
	})
}

func TestSpecHostHeaderIgnored(t *testing.T) {
	h := startHub(t, nil, "-anonymous")
	t.Run("MatcherTypes/URLPattern/BaseIsTheHubURL", func(t *testing.T) {
		// A relative grant means topics of the hub's own URL: a client
		// naming another host in its Host header must not widen it.
		grant := sign(t, h.claims(map[string]any{"type": detailType, "actions": []string{"subscribe"},
			"topics": []any{map[string]any{"match": "/books/:id", "match_type": "urlpattern"}}}))
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", h.url+"?match=*", nil)
		req.Host = "example.com"
		req.Header.Set("Authorization", "Bearer "+grant)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		s := &stream{t: t, res: res, br: bufio.NewReader(res.Body)}
		s.block(true)
		h.mustPublish(t, form("topic", "http://example.com/books/1", "data", "not yours", "private", "on"))
		own := h.mustPublish(t, form("topic", h.base+"/books/2", "data", "yours", "private", "on"))
		if got, want := s.next(), ev(own, "yours"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
}

func TestCookiePublishBehindProxy(t *testing.T) {
	// Behind a proxy ending TLS, the hub sees http:// requests; its own
	// origin is that of its resource identifier.
	h := startHub(t, nil, "-resource-identifier", "https://hub.example/.well-known/mercure")
	h.resource = "https://hub.example/.well-known/mercure"
	t.Run("Authorization/Cookie/CSRF/HubOrigin", func(t *testing.T) {
		for origin, want := range map[string]int{"https://hub.example": http.StatusOK, "https://evil.example": http.StatusForbidden} {
			req, _ := http.NewRequest("POST", h.url, strings.NewReader("topic=https://example.com/proxied"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Cookie", "__Secure-mercure_access_token="+h.admin(t))
			req.Header.Set("Origin", origin)
			req.Host = "hub.example"
			if code, body, _ := do(t, req); code != want {
				t.Errorf("Origin %s: got %d %q, want %d", origin, code, body, want)
			}
		}
	})
}
