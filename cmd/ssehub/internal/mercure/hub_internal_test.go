package mercure

import (
	"net/http"
	"testing"
	"unicode/utf8"
)

const testBase = "https://hub.example/.well-known/mercure"

func FuzzParseUpdate(f *testing.F) {
	f.Add("topic=https://a/b&data=x&private=on&id=i&type=t&retry=10")
	f.Add("topic=a&topic=b")
	f.Add("id=%23x&topic=t")
	f.Add("topic=/.well-known/%6Dercure/x")
	h := NewHub(Config{Compat: true})
	f.Fuzz(func(t *testing.T, body string) {
		u, code, msg := h.parseUpdate(parseForm(body), testBase)
		switch code {
		case 0:
			if u == nil || len(u.Topics) == 0 || u.ID == "" || u.Retry < 0 {
				t.Fatalf("accepted %q as %+v", body, u)
			}
			for _, tp := range u.Topics {
				if ValidTopic(tp) != nil || tp == Wildcard || ReservedTopic(tp, testBase) {
					t.Fatalf("accepted topic %q", tp)
				}
			}
			if ValidTopic(u.ID) != nil || ValidTopic(u.Type) != nil || u.ID[0] == '#' || u.ID == Earliest || u.Type == "mercure" {
				t.Fatalf("accepted id %q type %q", u.ID, u.Type)
			}
			if !utf8.ValidString(u.Data) {
				t.Fatalf("accepted data %q", u.Data)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if msg == "" {
				t.Fatalf("refused %q without a reason", body)
			}
		default:
			t.Fatalf("%q: unexpected status %d", body, code)
		}
	})
}

func FuzzParseMatchers(f *testing.F) {
	f.Add("match=a&match_urlpattern=/b/:id")
	f.Add("match_foo=x")
	f.Add("topic={x}")
	h := NewHub(Config{Compat: true})
	f.Fuzz(func(t *testing.T, query string) {
		ms, msg := h.parseMatchers(parseForm(query), testBase)
		if (msg == "") == (len(ms) == 0) {
			t.Fatalf("%q: got %d matchers and %q", query, len(ms), msg)
		}
		for _, m := range ms {
			m.Match("https://hub.example/x") // must not panic
		}
	})
}

func TestParseForm(t *testing.T) {
	cases := []struct {
		name, in string
		want     []pair
	}{
		{"Empty", "", nil},
		{"Pairs", "a=1&b=2&a=3", []pair{{"a", "1"}, {"b", "2"}, {"a", "3"}}},
		{"NoValue", "a&b=", []pair{{"a", ""}, {"b", ""}}},
		{"EmptyParts", "&&a=1&", []pair{{"a", "1"}}},
		{"PlusIsSpace", "a+b=c+d", []pair{{"a b", "c d"}}},
		{"Escapes", "a=%26%3D%2B%25", []pair{{"a", "&=+%"}}},
		{"FirstEqualsOnly", "a=b=c", []pair{{"a", "b=c"}}},
		{"StrayPercent", "a=%zz%4", []pair{{"a", "%zz%4"}}},
		{"SemicolonIsData", "a=1;b=2", []pair{{"a", "1;b=2"}}},
		{"InvalidUTF8Kept", "a=%FF", []pair{{"a", "\xff"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := parseForm(c.in)
			if len(got) != len(c.want) {
				t.Fatalf("got %q, want %q", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("pair %d: got %q, want %q", i, got[i], c.want[i])
				}
			}
		})
	}
}
