package mercure

import "testing"

func TestMatcherCache(t *testing.T) {
	c := newMatcherCache(2)
	a1, _ := c.get(URLPattern, "https://a/:id", "https://hub/.well-known/mercure")
	a2, _ := c.get(URLPattern, "https://a/:id", "https://hub/.well-known/mercure")
	if a1 != a2 {
		t.Error("the same matcher twice: got two, want one shared")
	}
	if b, _ := c.get(URLPattern, "https://a/:id", "https://other/.well-known/mercure"); b == a1 {
		t.Error("another base: got the shared matcher, want its own")
	}
	c.get(Exact, "x", "")
	d1, _ := c.get(Exact, "y", "")
	d2, _ := c.get(Exact, "y", "")
	if d1 == d2 || len(c.m) != 2 {
		t.Errorf("beyond max: got %d shared matchers and d shared=%v, want 2 and false", len(c.m), d1 == d2)
	}
	if _, err := c.get(URLPattern, "https://a/(", ""); err == nil {
		t.Error("invalid pattern: got no error")
	}
	// The memo answers for the latest topic only.
	for i, tc := range []struct {
		topic string
		want  bool
	}{{"https://a/1", true}, {"https://a/1", true}, {"https://b/1", false}, {"https://a/2", true}, {"https://b/1", false}} {
		if got := a1.Match(tc.topic); got != tc.want {
			t.Errorf("%d: Match(%q) = %v, want %v", i, tc.topic, got, tc.want)
		}
	}
}
