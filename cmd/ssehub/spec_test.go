package main

// TestSpec checks the hub against the rules of draft-dunglas-mercure-08,
// one subtest per rule, named after the draft's section.

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

const (
	challengeInvalidRequest = `Bearer error="invalid_request"`
	challengeInvalidToken   = `Bearer error="invalid_token"`
	challengeScope          = `Bearer error="insufficient_scope"`
)

// checkStatus fails unless res has code and the WWW-Authenticate value.
func checkStatus(t *testing.T, name string, code int, res *http.Response, wantCode int, wantChallenge string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("%s: got status %d, want %d", name, code, wantCode)
	}
	if got := res.Header.Get("WWW-Authenticate"); got != wantChallenge {
		t.Errorf("%s: got WWW-Authenticate %q, want %q", name, got, wantChallenge)
	}
}

func TestSpecSubscription(t *testing.T) {
	h := startHub(t, nil, "-anonymous")

	t.Run("Subscription/GETStreamsEvents", func(t *testing.T) {
		s := h.subscribe(t, "match=https://example.com/sub/1", nil)
		if got := s.res.Header.Get("Content-Type"); got != "text/event-stream" {
			t.Errorf("got Content-Type %q, want text/event-stream", got)
		}
		id := h.mustPublish(t, form("topic", "https://example.com/sub/1", "data", "hello"))
		if got, want := s.next(), ev(id, "hello"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("Subscription/GETOnly", func(t *testing.T) {
		for _, m := range []string{"HEAD", "PUT", "DELETE", "QUERY"} {
			req, _ := http.NewRequest(m, h.url+"?match=x", nil)
			code, _, _ := do(t, req)
			if code != http.StatusMethodNotAllowed {
				t.Errorf("%s: got %d, want 405", m, code)
			}
		}
	})

	t.Run("Subscription/ReservedMatchNamespace", func(t *testing.T) {
		for _, q := range []string{"matchFoo=x", "MATCH=x", "Match=x", "matchurlpattern=x", "matchexact=x", "match_exact=x", "matchURLPatterns=x"} {
			code, _, res := h.get(t, q, nil)
			checkStatus(t, q, code, res, http.StatusBadRequest, challengeInvalidRequest)
		}
	})

	t.Run("Subscription/MatcherCharacters", func(t *testing.T) {
		for _, q := range []string{"match=a%00b", "match=a%1Fb", "match=a%7Fb", "match=a%C2%80b", "match=a%C2%9Fb", "match=%FF", "matchURLPattern=/a%0A"} {
			code, _, res := h.get(t, q, nil)
			checkStatus(t, q, code, res, http.StatusBadRequest, challengeInvalidRequest)
		}
	})

	t.Run("Subscription/MatcherLimits", func(t *testing.T) {
		many := strings.Repeat("match=a&", 32) + "match=b"
		code, _, res := h.get(t, many, nil)
		checkStatus(t, "33 matchers", code, res, http.StatusBadRequest, challengeInvalidRequest)
		long := "match=" + strings.Repeat("a", 2049)
		code, _, res = h.get(t, long, nil)
		checkStatus(t, "2049-byte matcher", code, res, http.StatusBadRequest, challengeInvalidRequest)
		code, _, res = h.get(t, "", nil)
		checkStatus(t, "no matcher", code, res, http.StatusBadRequest, challengeInvalidRequest)
	})

	t.Run("Subscription/UnionOfMatchers", func(t *testing.T) {
		s := h.subscribe(t, "match=https://example.com/u/a&matchURLPattern=https://example.com/u/p/:id&matchExact=https://example.com/u/b", nil)
		h.mustPublish(t, form("topic", "https://example.com/u/other", "data", "no"))
		var want []string
		for _, tp := range []string{"https://example.com/u/a", "https://example.com/u/p/7", "https://example.com/u/b"} {
			want = append(want, ev(h.mustPublish(t, form("topic", tp, "data", tp)), tp))
		}
		for i, w := range want {
			if got := s.next(); got != w {
				t.Errorf("event %d: got %q, want %q", i, got, w)
			}
		}
	})

	t.Run("Subscription/PrivateNotToUnauthorized", func(t *testing.T) {
		s := h.subscribe(t, "match=https://example.com/priv/1", nil)
		h.mustPublish(t, form("topic", "https://example.com/priv/1", "data", "secret", "private", "on"))
		id := h.mustPublish(t, form("topic", "https://example.com/priv/1", "data", "public"))
		if got, want := s.next(), ev(id, "public"); got != want {
			t.Errorf("got %q, want %q (the private update must be skipped)", got, want)
		}
	})

	t.Run("Subscription/SSEProperties", func(t *testing.T) {
		s := h.subscribe(t, "match=https://example.com/props", nil)
		h.mustPublish(t, form("topic", "https://example.com/props", "data", "x", "id", "p-1", "type", "book-updated", "retry", "5000"))
		if got, want := s.next(), "event: book-updated\nid: p-1\nretry: 5000\ndata: x\n\n"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
}

func TestSpecMatcherTypes(t *testing.T) {
	h := startHub(t, nil, "-anonymous")

	cases := []struct {
		name, query string
		match       []string // topics that must be delivered
		skip        []string // topics that must not
	}{
		{"Wildcard", "match=*", []string{"https://example.com/w/1", "anything at all"}, nil},
		{"WildcardWhateverType", "matchURLPattern=*", []string{"urn:w:2"}, nil},
		{"ExactMatching/CaseSensitive", "match=https://example.com/Exact",
			[]string{"https://example.com/Exact"}, []string{"https://example.com/exact", "https://example.com/Exact/"}},
		{"ExactMatching/NoResolution", "match=/books/1",
			[]string{"/books/1"}, []string{h.base + "/books/1"}},
		{"ExactMatching/NoNormalization", "match=https://example.com/caf%C3%A9",
			[]string{"https://example.com/café"}, []string{"https://example.com/cafe\u0301", "https://example.com/caf%C3%A9"}},
		{"URLPattern/Absolute", "matchURLPattern=https://example.com/books/:id",
			[]string{"https://example.com/books/12"}, []string{"https://example.com/books/12/pages", "https://example.org/books/12"}},
		{"URLPattern/RelativeResolvedAgainstHub", "matchURLPattern=/rel/:id",
			[]string{h.base + "/rel/1", "/rel/2"}, []string{"https://example.com/rel/3"}},
		{"URLPattern/NoIgnoreCase", "matchURLPattern=https://example.com/Case/:id",
			[]string{"https://example.com/Case/1", "https://EXAMPLE.com/Case/2"}, []string{"https://example.com/case/1"}},
	}
	for _, c := range cases {
		t.Run("MatcherTypes/"+c.name, func(t *testing.T) {
			s := h.subscribe(t, c.query, nil)
			var want []string
			for _, tp := range c.skip {
				h.mustPublish(t, form("topic", tp, "data", "skip"))
			}
			for _, tp := range c.match {
				want = append(want, ev(h.mustPublish(t, form("topic", tp, "data", "take")), "take"))
			}
			for i, w := range want {
				if got := s.next(); got != w {
					t.Errorf("event %d (%s): got %q, want %q", i, c.match[i], got, w)
				}
			}
		})
	}

	t.Run("MatcherTypes/URLPattern/Invalid", func(t *testing.T) {
		code, _, res := h.get(t, "matchURLPattern="+url.QueryEscape("https://example.com/(unclosed"), nil)
		checkStatus(t, "bad pattern", code, res, http.StatusBadRequest, challengeInvalidRequest)
	})
}

var uuidV7URN = regexp.MustCompile(`^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestSpecPublication(t *testing.T) {
	h := startHub(t, nil, "-anonymous", "-max-body", "4096")
	admin := h.admin(t)

	t.Run("Publication/Success", func(t *testing.T) {
		s := h.subscribe(t, "match=https://example.com/pub/ok", nil)
		code, body, res := h.publish(t, admin, form("topic", "https://example.com/pub/ok", "data", "the content"))
		if code != http.StatusOK {
			t.Fatalf("got %d %q, want 200", code, body)
		}
		if got := res.Header.Get("Content-Type"); !strings.HasPrefix(got, "text/plain") {
			t.Errorf("got Content-Type %q, want text/plain", got)
		}
		if !uuidV7URN.MatchString(body) {
			t.Errorf("got id %q, want a UUIDv7 URN", body)
		}
		if got, want := s.next(), ev(body, "the content"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("Publication/ExactlyOneTopic", func(t *testing.T) {
		for name, f := range map[string]url.Values{
			"none": form("data", "x"),
			"two":  form("topic", "https://example.com/a", "topic", "https://example.com/b"),
		} {
			code, _, res := h.publish(t, admin, f)
			checkStatus(t, name, code, res, http.StatusBadRequest, challengeInvalidRequest)
		}
	})

	t.Run("Publication/TopicCharacters", func(t *testing.T) {
		for _, tp := range []string{"a\x00b", "a\nb", "a\rb", "a\x7fb", "a\u0085b", "a\xffb"} {
			code, _, res := h.publish(t, admin, form("topic", tp))
			checkStatus(t, strings.ToValidUTF8(tp, "?"), code, res, http.StatusBadRequest, challengeInvalidRequest)
		}
	})

	t.Run("Publication/ReservedNamespace", func(t *testing.T) {
		reserved := []string{
			"/.well-known/mercure",
			"/.well-known/mercure/subscriptions/Exact/x/y",
			h.base + "/.well-known/mercure/subscriptions",
			"https://other.example/.well-known/mercure",
			"/a/../.well-known/mercure/x",
			"/.well-known/%6Dercure/x",
			"mercure/subscriptions", // relative: resolves to /.well-known/mercure/subscriptions
		}
		for _, tp := range reserved {
			code, _, res := h.publish(t, admin, form("topic", tp))
			checkStatus(t, tp, code, res, http.StatusForbidden, "")
		}
		for _, tp := range []string{"/.well-known/mercurex", ".well-known/mercure/x", "https://example.com/.well-known/other", "urn:x:/.well-known/mercure-ish"} {
			if code, body, _ := h.publish(t, admin, form("topic", tp)); code != http.StatusOK {
				t.Errorf("%s: got %d %q, want 200", tp, code, body)
			}
		}
	})

	t.Run("Publication/DataLines", func(t *testing.T) {
		s := h.subscribe(t, "match=https://example.com/pub/lines", nil)
		id := h.mustPublish(t, form("topic", "https://example.com/pub/lines", "data", "a\rb\r\nc\nd\n"))
		if got, want := s.next(), "id: "+id+"\ndata: a\ndata: b\ndata: c\ndata: d\ndata: \n\n"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("Publication/PrivateByPresence", func(t *testing.T) {
		reader := sign(t, h.claims(detail("subscribe", "https://example.com/pub/private")))
		anon := h.subscribe(t, "match=https://example.com/pub/private", nil)
		auth := h.subscribe(t, "match=https://example.com/pub/private", http.Header{"Authorization": {"Bearer " + reader}})
		var want []string
		for _, v := range []string{"", "false", "0", "on"} {
			id := h.mustPublish(t, form("topic", "https://example.com/pub/private", "data", "p="+v, "private", v))
			want = append(want, ev(id, "p="+v))
		}
		last := h.mustPublish(t, form("topic", "https://example.com/pub/private", "data", "public"))
		if got, w := anon.next(), ev(last, "public"); got != w {
			t.Errorf("anonymous: got %q, want %q", got, w)
		}
		for i, w := range append(want, ev(last, "public")) {
			if got := auth.next(); got != w {
				t.Errorf("authorized event %d: got %q, want %q", i, got, w)
			}
		}
	})

	t.Run("Publication/ID", func(t *testing.T) {
		s := h.subscribe(t, "match=https://example.com/pub/id", nil)
		code, body, _ := h.publish(t, admin, form("topic", "https://example.com/pub/id", "id", "urn:isbn:1234", "data", "x"))
		if code != http.StatusOK || body != "urn:isbn:1234" {
			t.Errorf("custom id: got %d %q, want 200 %q", code, body, "urn:isbn:1234")
		}
		if got, want := s.next(), ev("urn:isbn:1234", "x"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		for _, id := range []string{"#frag", "a\nb", "a\rb", "a\x00b"} {
			code, _, res := h.publish(t, admin, form("topic", "https://example.com/pub/id", "id", id))
			checkStatus(t, "id "+strings.ToValidUTF8(id, "?"), code, res, http.StatusBadRequest, challengeInvalidRequest)
		}
	})

	t.Run("Publication/Type", func(t *testing.T) {
		for _, tp := range []string{"a\nb", "a\rb"} {
			code, _, res := h.publish(t, admin, form("topic", "https://example.com/pub/type", "type", tp))
			checkStatus(t, "type", code, res, http.StatusBadRequest, challengeInvalidRequest)
		}
	})

	t.Run("Publication/Retry", func(t *testing.T) {
		for _, r := range []string{"", "1.5", "-1", "+1", "1e3", " 1", "١"} {
			code, _, res := h.publish(t, admin, form("topic", "https://example.com/pub/retry", "retry", r))
			checkStatus(t, "retry "+r, code, res, http.StatusBadRequest, challengeInvalidRequest)
		}
	})

	t.Run("Publication/Limits", func(t *testing.T) {
		code, _, res := h.publish(t, admin, form("topic", "https://example.com/pub/big", "data", strings.Repeat("x", 5000)))
		checkStatus(t, "body", code, res, http.StatusRequestEntityTooLarge, "")
		code, _, res = h.publish(t, admin, form("topic", "https://example.com/"+strings.Repeat("t", 2048)))
		checkStatus(t, "topic", code, res, http.StatusRequestEntityTooLarge, "")
	})

	t.Run("Publication/FormEncoding", func(t *testing.T) {
		req, _ := http.NewRequest("POST", h.url, strings.NewReader(`{"topic":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+admin)
		code, _, res := do(t, req)
		checkStatus(t, "json", code, res, http.StatusUnsupportedMediaType, "")
	})
}
