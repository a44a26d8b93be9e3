package main

// TestSpec checks the hub against the rules of draft-dunglas-mercure-08,
// one subtest per rule, named after the draft's section.

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// The Bearer challenges, without their resource_metadata parameter
// (see checkStatus); noChallenge is a 400 for a request malformed
// independently of its token, which carries none.
const (
	challengeNoToken        = `Bearer`
	challengeInvalidRequest = `Bearer error="invalid_request"`
	challengeInvalidToken   = `Bearer error="invalid_token"`
	challengeScope          = `Bearer error="insufficient_scope"`
	noChallenge             = ""
)

// checkStatus fails unless res has code and the WWW-Authenticate value:
// wantChallenge followed by the resource_metadata parameter naming the
// hub's metadata, or none when wantChallenge is empty.
func checkStatus(t *testing.T, name string, code int, res *http.Response, wantCode int, wantChallenge string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("%s: got status %d, want %d", name, code, wantCode)
	}
	want := wantChallenge
	if want != "" {
		md := `resource_metadata="http://` + res.Request.URL.Host + `/.well-known/oauth-protected-resource/.well-known/mercure"`
		if want == challengeNoToken {
			want += " " + md
		} else {
			want += ", " + md
		}
	}
	if got := res.Header.Get("WWW-Authenticate"); got != want {
		t.Errorf("%s: got WWW-Authenticate %q, want %q", name, got, want)
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

	t.Run("Subscription/Methods", func(t *testing.T) {
		for _, m := range []string{"HEAD", "PUT", "DELETE"} {
			req, _ := http.NewRequest(m, h.url+"?match=x", nil)
			code, _, _ := do(t, req)
			if code != http.StatusMethodNotAllowed {
				t.Errorf("%s: got %d, want 405", m, code)
			}
		}
	})

	t.Run("Subscription/QUERYWithFormBody", func(t *testing.T) {
		// The union of the query and the body: a matcher in each.
		s := h.subscribeQuery(t, "match=https://example.com/q/a", "match_urlpattern="+url.QueryEscape("https://example.com/q/p/:id"), nil)
		var want []string
		for _, tp := range []string{"https://example.com/q/a", "https://example.com/q/p/1"} {
			want = append(want, ev(h.mustPublish(t, form("topic", tp, "data", tp)), tp))
		}
		for i, w := range want {
			if got := s.next(); got != w {
				t.Errorf("event %d: got %q, want %q", i, got, w)
			}
		}
		// No body: the query alone.
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		req0, _ := http.NewRequestWithContext(ctx, "QUERY", h.url+"?match=x", nil)
		res0, err := http.DefaultClient.Do(req0)
		if err != nil {
			t.Fatal(err)
		}
		res0.Body.Close()
		if res0.StatusCode != http.StatusOK || res0.Header.Get("Content-Type") != "text/event-stream" {
			t.Errorf("QUERY without a body: got %d %q, want 200 text/event-stream", res0.StatusCode, res0.Header.Get("Content-Type"))
		}
		// The body obeys the same rules as the query.
		for _, body := range []string{"matchFoo=x", "match=a%00b", ""} {
			req, _ := http.NewRequest("QUERY", h.url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			code, _, res := do(t, req)
			checkStatus(t, "QUERY body "+body, code, res, http.StatusBadRequest, noChallenge)
		}
		req, _ := http.NewRequest("QUERY", h.url, strings.NewReader(`{"match":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		code, _, res := do(t, req)
		checkStatus(t, "QUERY JSON body", code, res, http.StatusUnsupportedMediaType, noChallenge)
	})

	t.Run("Subscription/ReservedMatchNamespace", func(t *testing.T) {
		for _, q := range []string{"matchFoo=x", "MATCH=x", "Match=x", "match_foo=x", "match_Exact=x", "match_URLPattern=x", "matchURLPattern=x", "matchExact=x", "match_uritemplate=x", "match_exactx=x", "matches=x"} {
			code, _, res := h.get(t, q, nil)
			checkStatus(t, q, code, res, http.StatusBadRequest, noChallenge)
		}
		// Other parameters are ignored.
		h.subscribe(t, "match=x&foo=bar&topic=y&xmatch=z", nil)
	})

	t.Run("Subscription/MatcherCharacters", func(t *testing.T) {
		for _, q := range []string{"match=a%00b", "match=a%1Fb", "match=a%7Fb", "match=a%C2%80b", "match=a%C2%9Fb", "match=%FF", "match_urlpattern=/a%0A", "match=a%E2%80%8Bb", "match=a%E2%80%AEb"} {
			code, _, res := h.get(t, q, nil)
			checkStatus(t, q, code, res, http.StatusBadRequest, noChallenge)
		}
	})

	t.Run("Subscription/FormURLEncodedParsing", func(t *testing.T) {
		// "+" is a space, a stray "%" stays, ";" is data: as URLSearchParams.
		s := h.subscribe(t, "match=a+b%zz;c", nil)
		id := h.mustPublish(t, form("topic", "a b%zz;c", "data", "x"))
		if got, want := s.next(), ev(id, "x"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("Subscription/MatcherLimits", func(t *testing.T) {
		many := strings.Repeat("match=a&", 32) + "match=b"
		code, _, res := h.get(t, many, nil)
		checkStatus(t, "33 matchers", code, res, http.StatusBadRequest, noChallenge)
		long := "match=" + strings.Repeat("a", 2049)
		code, _, res = h.get(t, long, nil)
		checkStatus(t, "2049-byte matcher", code, res, http.StatusBadRequest, noChallenge)
		code, _, res = h.get(t, "", nil)
		checkStatus(t, "no matcher", code, res, http.StatusBadRequest, noChallenge)
	})

	t.Run("Subscription/UnionOfMatchers", func(t *testing.T) {
		s := h.subscribe(t, "match=https://example.com/u/a&match_urlpattern=https://example.com/u/p/:id&match_exact=https://example.com/u/b", nil)
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
		{"WildcardWhateverType", "match_urlpattern=*", []string{"urn:w:2"}, nil},
		{"WildcardExact", "match_exact=*", []string{"urn:w:3"}, nil},
		{"ExactMatching/ExplicitParameter", "match_exact=https://example.com/explicit",
			[]string{"https://example.com/explicit"}, []string{"https://example.com/explicit/1"}},
		{"ExactMatching/PatternSyntaxIsLiteral", "match=https://example.com/lit/:id",
			[]string{"https://example.com/lit/:id"}, []string{"https://example.com/lit/1"}},
		{"ExactMatching/CaseSensitive", "match=https://example.com/Exact",
			[]string{"https://example.com/Exact"}, []string{"https://example.com/exact", "https://example.com/Exact/"}},
		{"ExactMatching/NoResolution", "match=/books/1",
			[]string{"/books/1"}, []string{h.base + "/books/1"}},
		{"ExactMatching/NoNormalization", "match=https://example.com/caf%C3%A9",
			[]string{"https://example.com/café"}, []string{"https://example.com/cafe\u0301", "https://example.com/caf%C3%A9"}},
		{"URLPattern/Absolute", "match_urlpattern=https://example.com/books/:id",
			[]string{"https://example.com/books/12"}, []string{"https://example.com/books/12/pages", "https://example.org/books/12"}},
		{"URLPattern/RelativeResolvedAgainstHub", "match_urlpattern=/rel/:id",
			[]string{h.base + "/rel/1", "/rel/2"}, []string{"https://example.com/rel/3"}},
		{"URLPattern/NoIgnoreCase", "match_urlpattern=https://example.com/Case/:id",
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
		code, body, res := h.get(t, "match_urlpattern="+url.QueryEscape("https://example.com/(unclosed"), nil)
		checkStatus(t, "bad pattern", code, res, http.StatusBadRequest, noChallenge)
		// The parser's own message dumps its state, addresses included.
		if want := "match_urlpattern: invalid URL pattern \"https://example.com/(unclosed\": type error\n"; body != want {
			t.Errorf("got body %q, want %q", body, want)
		}
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
		if got, want := res.Header.Get("Content-Type"), "text/plain; charset=utf-8"; got != want {
			t.Errorf("got Content-Type %q, want %q", got, want)
		}
		if !uuidV7URN.MatchString(body) {
			t.Errorf("got id %q, want a UUIDv7 URN", body)
		}
		if got, want := s.next(), ev(body, "the content"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("Publication/TopicRequired", func(t *testing.T) {
		code, _, res := h.publish(t, admin, form("data", "x"))
		checkStatus(t, "no topic", code, res, http.StatusBadRequest, noChallenge)
	})

	t.Run("Publication/AlternateTopics", func(t *testing.T) {
		canonical := h.subscribe(t, "match=https://example.com/pub/canonical", nil)
		alternate := h.subscribe(t, "match=https://example.com/pub/alternate", nil)
		id := h.mustPublish(t, form("topic", "https://example.com/pub/canonical", "topic", "https://example.com/pub/alternate", "data", "both"))
		for name, s := range map[string]*stream{"canonical": canonical, "alternate": alternate} {
			if got, want := s.next(), ev(id, "both"); got != want {
				t.Errorf("%s: got %q, want %q", name, got, want)
			}
		}
	})

	t.Run("Publication/TopicCharacters", func(t *testing.T) {
		for _, tp := range []string{"a\x00b", "a\nb", "a\rb", "a\x7fb", "a\u0085b", "a\xffb", "a\u200bb", "a\u202eb", "a\ufeffb"} {
			code, _, res := h.publish(t, admin, form("topic", tp))
			checkStatus(t, strings.ToValidUTF8(tp, "?"), code, res, http.StatusBadRequest, noChallenge)
			code, _, res = h.publish(t, admin, form("topic", "https://example.com/ok", "topic", tp))
			checkStatus(t, "alternate "+strings.ToValidUTF8(tp, "?"), code, res, http.StatusBadRequest, noChallenge)
		}
	})

	t.Run("Publication/WildcardTopic", func(t *testing.T) {
		for _, f := range []url.Values{form("topic", "*"), form("topic", "https://example.com/ok", "topic", "*")} {
			code, _, res := h.publish(t, admin, f)
			checkStatus(t, f.Encode(), code, res, http.StatusBadRequest, noChallenge)
		}
	})

	t.Run("Publication/ReservedNamespace", func(t *testing.T) {
		reserved := []string{
			"/.well-known/mercure",
			"/.well-known/mercure/subscriptions/exact/x/y",
			h.base + "/.well-known/mercure/subscriptions",
			"https://other.example/.well-known/mercure",
			"/a/../.well-known/mercure/x",
			"/.well-known/mercure/../mercure/x",
			"/.well-known/%6Dercure/x",
			"/%2Ewell-known/mercure",
			"mercure/subscriptions", // relative: resolves to /.well-known/mercure/subscriptions
			// The URL Standard's parser, which URL patterns use, reads
			// "\" as "/" in http(s) URLs and drops surrounding spaces.
			`\.well-known\mercure\subscriptions\exact\x\y`,
			`/\` + strings.TrimPrefix(h.base, "http://") + `/.well-known/mercure/subscriptions/exact/x/y`,
			" /.well-known/mercure/subscriptions/exact/x/y",
		}
		for _, tp := range reserved {
			// Refused whatever the token grants: admin's grants "*".
			code, _, res := h.publish(t, admin, form("topic", tp))
			checkStatus(t, tp, code, res, http.StatusBadRequest, noChallenge)
			code, _, res = h.publish(t, admin, form("topic", "https://example.com/ok", "topic", tp))
			checkStatus(t, "alternate "+tp, code, res, http.StatusBadRequest, noChallenge)
		}
		for _, tp := range []string{"/.well-known/mercurex", ".well-known/mercure/x", "https://example.com/.well-known/other", "urn:x:/.well-known/mercure", "/.well-known/mercure%2Fx"} {
			if code, body, _ := h.publish(t, admin, form("topic", tp)); code != http.StatusOK {
				t.Errorf("%s: got %d %q, want 200", tp, code, body)
			}
		}
	})

	t.Run("Publication/UnknownFieldsIgnored", func(t *testing.T) {
		if code, body, _ := h.publish(t, admin, form("topic", "https://example.com/pub/x", "future", "1", "data", "x")); code != http.StatusOK {
			t.Errorf("got %d %q, want 200", code, body)
		}
	})

	t.Run("Publication/DataLines", func(t *testing.T) {
		s := h.subscribe(t, "match=https://example.com/pub/lines", nil)
		id := h.mustPublish(t, form("topic", "https://example.com/pub/lines", "data", "a\rb\r\nc\nd\n"))
		if got, want := s.next(), "id: "+id+"\ndata: a\ndata: b\ndata: c\ndata: d\ndata: \n\n"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		// Empty lines and leading spaces survive (the conformance
		// suite's data has both).
		id = h.mustPublish(t, form("topic", "https://example.com/pub/lines", "data", "data for\n\n        x"))
		if got, want := s.next(), "id: "+id+"\ndata: data for\ndata: \ndata:         x\n\n"; got != want {
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
		for _, id := range []string{"#frag", "earliest", "a\nb", "a\rb", "a\x00b", "a\x7fb", "a\u0085b", "a\u200bb"} {
			code, _, res := h.publish(t, admin, form("topic", "https://example.com/pub/id", "id", id))
			checkStatus(t, "id "+strings.ToValidUTF8(id, "?"), code, res, http.StatusBadRequest, noChallenge)
		}
	})

	t.Run("Publication/Type", func(t *testing.T) {
		for _, tp := range []string{"a\nb", "a\rb", "a\x00b", "a\x7fb", "a\u0085b", "a\u2066b", "mercure"} {
			code, _, res := h.publish(t, admin, form("topic", "https://example.com/pub/type", "type", tp))
			checkStatus(t, "type "+tp, code, res, http.StatusBadRequest, noChallenge)
		}
		for _, tp := range []string{"Mercure", "mercure2"} {
			if code, body, _ := h.publish(t, admin, form("topic", "https://example.com/pub/type", "type", tp)); code != http.StatusOK {
				t.Errorf("type %q: got %d %q, want 200", tp, code, body)
			}
		}
	})

	t.Run("Publication/Retry", func(t *testing.T) {
		for _, r := range []string{"", "1.5", "-1", "+1", "1e3", " 1", "١"} {
			code, _, res := h.publish(t, admin, form("topic", "https://example.com/pub/retry", "retry", r))
			checkStatus(t, "retry "+r, code, res, http.StatusBadRequest, noChallenge)
		}
	})

	t.Run("Publication/Limits", func(t *testing.T) {
		code, _, res := h.publish(t, admin, form("topic", "https://example.com/pub/big", "data", strings.Repeat("x", 5000)))
		checkStatus(t, "body", code, res, http.StatusRequestEntityTooLarge, "")
		code, _, res = h.publish(t, admin, form("topic", "https://example.com/"+strings.Repeat("t", 2048)))
		checkStatus(t, "topic", code, res, http.StatusRequestEntityTooLarge, "")
		code, _, res = h.publish(t, admin, form("topic", "https://example.com/a", "id", strings.Repeat("i", 2049)))
		checkStatus(t, "id", code, res, http.StatusRequestEntityTooLarge, "")
		many := url.Values{"topic": strings.Split(strings.Repeat("https://example.com/t,", 33), ",")[:33]}
		code, _, res = h.publish(t, admin, many)
		checkStatus(t, "33 topics", code, res, http.StatusRequestEntityTooLarge, "")
	})

	t.Run("Publication/LargerThanTheHistory", func(t *testing.T) {
		small := startHub(t, nil, "-history-bytes", "100")
		code, _, res := small.publish(t, small.admin(t), form("topic", "https://example.com/big", "data", strings.Repeat("x", 200)))
		checkStatus(t, "200 bytes in a 100-byte history", code, res, http.StatusRequestEntityTooLarge, "")
	})

	t.Run("Publication/FormEncoding", func(t *testing.T) {
		req, _ := http.NewRequest("POST", h.url, strings.NewReader(`{"topic":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+admin)
		code, _, res := do(t, req)
		checkStatus(t, "json", code, res, http.StatusUnsupportedMediaType, "")
	})
}
