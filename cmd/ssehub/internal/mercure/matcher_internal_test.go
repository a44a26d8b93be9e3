package mercure

import (
	"fmt"
	"testing"
)

const hubBase = "https://hub/.well-known/mercure"

func TestMatcherCache(t *testing.T) {
	c := newMatcherCache(2)
	a1, _ := c.get(URLPattern, "https://a/:id", hubBase)
	a2, _ := c.get(URLPattern, "https://a/:id", hubBase)
	if a1 != a2 {
		t.Error("the same matcher twice: got two, want one shared")
	}
	if b, _ := c.get(URLPattern, "https://a/:id", "https://other/.well-known/mercure"); b == a1 {
		t.Error("another base: got the shared matcher, want its own")
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

// TestMatcherCacheEvicts: a full cache evicts the matcher not asked for
// the longest (by the clock), so a new matcher is still shared.
func TestMatcherCacheEvicts(t *testing.T) {
	c := newMatcherCache(2)
	a, _ := c.get(Exact, "a", "")
	b, _ := c.get(Exact, "b", "")
	if got, _ := c.get(Exact, "a", ""); got != a {
		t.Fatal("a again: got a new matcher, want the shared one")
	}
	x1, _ := c.get(Exact, "x", "") // full: evicts b, not a (asked for since)
	if x2, _ := c.get(Exact, "x", ""); x2 != x1 {
		t.Error("x beyond max: got two matchers, want one shared")
	}
	if got, _ := c.get(Exact, "a", ""); got != a {
		t.Error("a after x: got a new matcher, want a kept")
	}
	if got, _ := c.get(Exact, "b", ""); got == b {
		t.Error("b after x: got the old matcher, want b evicted")
	}
	if len(c.m) != 2 || len(c.slots) != 2 {
		t.Errorf("got %d keys and %d slots, want 2 and 2", len(c.m), len(c.slots))
	}
	for k, i := range c.m {
		if c.slots[i].key != k {
			t.Errorf("key %v points at slot %d holding %v", k, i, c.slots[i].key)
		}
	}
}

// TestMemo: the memo keeps the latest topic and its result; a store
// allocates nothing.
func TestMemo(t *testing.T) {
	var m memo
	if _, hit := m.load(""); hit {
		t.Error("empty memo: got a hit for \"\"")
	}
	m.store("https://a/1", true)
	if ok, hit := m.load("https://a/1"); !ok || !hit {
		t.Errorf("load(a/1) = %v, %v, want true, true", ok, hit)
	}
	if _, hit := m.load("https://a/2"); hit {
		t.Error("load(a/2): got a hit, want a miss")
	}
	m.store("", false)
	if ok, hit := m.load(""); ok || !hit {
		t.Errorf("load(\"\") = %v, %v, want false, true", ok, hit)
	}
	topics := []string{"https://a/1", "https://a/2"}
	i := 0
	if n := testing.AllocsPerRun(100, func() {
		m.store(topics[i&1], i&1 == 0)
		if ok, hit := m.load(topics[i&1]); !hit || ok != (i&1 == 0) {
			t.Fatalf("%d: load after store = %v, %v", i, ok, hit)
		}
		i++
	}); n != 0 {
		t.Errorf("store and load: got %v allocs, want 0", n)
	}
}

// TestMatchAllocsFullCache: with the cache full, the streams asking for
// one URL pattern still share its matcher, so that each update costs one
// evaluation (done here by store, as the first stream would) and every
// other stream's match allocates nothing.
func TestMatchAllocsFullCache(t *testing.T) {
	c := newMatcherCache(4)
	for i := range 4 {
		c.get(URLPattern, fmt.Sprintf("https://other/%d/:id", i), hubBase)
	}
	streams := make([]*Matcher, 8)
	for i := range streams {
		streams[i], _ = c.get(URLPattern, "https://a/books/:id", hubBase)
	}
	topics := []string{"https://a/books/1", "https://a/books/2"}
	i := 0
	if n := testing.AllocsPerRun(100, func() {
		topic := topics[i&1] // a new topic each update
		i++
		streams[0].last.store(topic, true)
		for _, m := range streams {
			if !m.Match(topic) {
				t.Fatalf("Match(%q) = false", topic)
			}
		}
	}); n != 0 {
		t.Errorf("got %v allocs per update, want 0", n)
	}
}

// BenchmarkMatchFullCache: 100 streams subscribed with one URL pattern
// once the cache is full, judging an update with a new topic each time.
func BenchmarkMatchFullCache(b *testing.B) {
	c := newMatcherCache(16)
	for i := range 16 {
		c.get(URLPattern, fmt.Sprintf("https://other/%d/:id", i), hubBase)
	}
	streams := make([]*Matcher, 100)
	for i := range streams {
		streams[i], _ = c.get(URLPattern, "https://a/books/:id", hubBase)
	}
	topics := []string{"https://a/books/1", "https://a/books/2"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		topic := topics[i&1]
		i++
		for _, m := range streams {
			if !m.Match(topic) {
				b.Fatal("no match")
			}
		}
	}
}
