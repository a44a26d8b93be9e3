package mercure

import (
	"slices"
	"strings"
	"testing"
)

func TestEnvelope(t *testing.T) {
	cases := []struct {
		name string
		u    Update
	}{
		{"Public", Update{Topics: []string{"https://a/b"}, Data: "x"}},
		{"Private", Update{Topics: []string{"t", "u"}, Private: true, Data: "line1\nline2\r\n"}},
		{"Empty", Update{Topics: []string{""}}},
		{"DataWithEnvelope", Update{Topics: []string{"t"}, Data: "p\nother\nz"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u, data, ok := decodeEnvelope(encodeEnvelope(&c.u))
			if !ok || !slices.Equal(u.Topics, c.u.Topics) || u.Private != c.u.Private || data != c.u.Data {
				t.Errorf("got %+v %q %v, want %+v", u, data, ok, c.u)
			}
		})
	}
	for _, bad := range []string{"", "x", "p", "p\nno-data-line", "q\nt\nd"} {
		if _, _, ok := decodeEnvelope(bad); ok {
			t.Errorf("decodeEnvelope(%q): got ok, want a refusal", bad)
		}
	}
}

func FuzzEnvelope(f *testing.F) {
	f.Add("https://a/b", "", true, "data\n")
	f.Add("", "alt", false, "")
	f.Fuzz(func(t *testing.T, topic, alternate string, private bool, data string) {
		if ValidTopic(topic) != nil || ValidTopic(alternate) != nil {
			return
		}
		topics := []string{topic}
		if alternate != "" {
			topics = append(topics, alternate)
		}
		in := Update{Topics: topics, Private: private, Data: data}
		u, got, ok := decodeEnvelope(encodeEnvelope(&in))
		if !ok || !slices.Equal(u.Topics, topics) || u.Private != private || got != data {
			t.Fatalf("round trip of %+v: got %+v %q %v", in, u, got, ok)
		}
	})
}

func TestMetaCache(t *testing.T) {
	c := newMetaCache(3)
	for seq := uint64(1); seq <= 5; seq++ {
		c.put(seq, &updateMeta{ID: strings.Repeat("x", int(seq))})
	}
	for seq, want := range map[uint64]string{1: "", 2: "", 3: "xxx", 4: "xxxx", 5: "xxxxx"} {
		got := ""
		if u := c.get(seq); u != nil {
			got = u.ID
		}
		if got != want {
			t.Errorf("seq %d: got %q, want %q", seq, got, want)
		}
	}
	c.put(4, &updateMeta{ID: "again"})
	if got := c.get(4); got == nil || got.ID != "again" {
		t.Errorf("seq 4 after a second put: got %v, want again", got)
	}
	if got := c.get(3); got == nil {
		t.Error("seq 3 evicted by a second put of a cached seq")
	}
}

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
