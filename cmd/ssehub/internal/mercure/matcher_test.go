package mercure_test

import (
	"testing"

	"github.com/coregx/stream/cmd/ssehub/internal/mercure"
)

const base = "https://hub.example/.well-known/mercure"

func TestMatcher(t *testing.T) {
	cases := []struct {
		name    string
		typ     mercure.MatchType
		pattern string
		topic   string
		want    bool
	}{
		{"ExactSame", mercure.Exact, "https://a/b", "https://a/b", true},
		{"ExactCase", mercure.Exact, "https://a/B", "https://a/b", false},
		{"ExactNoResolve", mercure.Exact, "/b", "https://hub.example/b", false},
		{"WildcardExact", mercure.Exact, "*", "anything", true},
		{"WildcardPattern", mercure.URLPattern, "*", "anything", true},
		{"PatternParam", mercure.URLPattern, "https://a/books/:id", "https://a/books/1", true},
		{"PatternNoDeeper", mercure.URLPattern, "https://a/books/:id", "https://a/books/1/x", false},
		{"PatternRelative", mercure.URLPattern, "/books/:id", "https://hub.example/books/1", true},
		{"PatternRelativeTopic", mercure.URLPattern, "/books/:id", "/books/1", true},
		{"PatternRelativeOtherHost", mercure.URLPattern, "/books/:id", "https://other/books/1", false},
		{"PatternCaseSensitivePath", mercure.URLPattern, "https://a/Books/:id", "https://a/books/1", false},
		{"PatternHostCaseInsensitive", mercure.URLPattern, "https://a.example/b", "https://A.EXAMPLE/b", true},
		{"PatternNotAURL", mercure.URLPattern, "https://a/:id", "not a url", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := mercure.NewMatcher(c.typ, c.pattern, base)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Match(c.topic); got != c.want {
				t.Errorf("%s %q matching %q: got %v, want %v", c.typ, c.pattern, c.topic, got, c.want)
			}
		})
	}
}

func TestValidTopic(t *testing.T) {
	cases := []struct {
		topic string
		ok    bool
	}{
		{"https://example.com/é", true},
		{"", true},
		{"a\x00", false},
		{"a\x1f", false},
		{"a\x7f", false},
		{"a\u0080", false},
		{"a\u009f", false},
		{"a\u00a0", true},
		{"a\u200bb", false}, // zero-width space, category Cf
		{"a\u202eb", false}, // right-to-left override
		{"a\ufeff", false},
		{"\U000E0001", false},
		{"\xff", false},
	}
	for _, c := range cases {
		if err := mercure.ValidTopic(c.topic); (err == nil) != c.ok {
			t.Errorf("ValidTopic(%q): got %v, want ok=%v", c.topic, err, c.ok)
		}
	}
}

func TestReservedTopic(t *testing.T) {
	cases := []struct {
		topic string
		want  bool
	}{
		{"/.well-known/mercure", true},
		{"/.well-known/mercure/", true},
		{"/.well-known/mercure/subscriptions/a/b", true},
		{"https://hub.example/.well-known/mercure/x", true},
		{"https://elsewhere/.well-known/mercure", true},
		{"mercure/x", true},
		{"./mercure", true},
		{"/x/../.well-known/mercure", true},
		{"/.well-known/%6dercure", true},
		{"/.well-known/%6Dercure/subscriptions", true},
		{"/.well-known/mercure/../mercure/x", true},
		{"/.well-known/mercure/%2E%2E/x", false},
		{"/.well-known/mercure%2Fx", false}, // "/" is reserved: %2F stays encoded
		{"%zz/.well-known/mercure", false},  // not a URL reference
		{"/.well-known/mercurex", false},
		{"https://hub.example/books/1", false},
		{"urn:uuid:1", false},
		{"", true}, // resolves to the hub URL itself
		// Resolved as the URL Standard does, as URL patterns see them: a
		// "\" is a "/" in http(s) URLs, leading and trailing spaces go.
		{`\.well-known\mercure\subscriptions\exact\x\y`, true},
		{`/\hub.example/.well-known/mercure/x`, true},
		{`https://hub.example\.well-known\mercure`, true},
		{" /.well-known/mercure/x", true},
		{"/.well-known/mercure/x ", true},
		{"/.well-known/mercure/%2e%2E/mercure", true},
		{"urn:x:/.well-known/mercure", false}, // an opaque path
		{`urn:\.well-known\mercure`, false},   // "\" is a "/" only in special schemes
	}
	for _, c := range cases {
		if got := mercure.ReservedTopic(c.topic, base); got != c.want {
			t.Errorf("ReservedTopic(%q): got %v, want %v", c.topic, got, c.want)
		}
	}
}
