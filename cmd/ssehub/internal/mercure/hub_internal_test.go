package mercure

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func FuzzParseUpdate(f *testing.F) {
	f.Add("topic=https://a/b&data=x&private=on&id=i&type=t&retry=10")
	f.Add("topic=a&topic=b")
	f.Add("id=%23x&topic=t")
	h := NewHub(Config{Compat: true})
	f.Fuzz(func(t *testing.T, body string) {
		form, err := url.ParseQuery(body)
		if err != nil {
			return
		}
		u, code, msg := h.parseUpdate(form)
		switch code {
		case 0:
			if u == nil || len(u.Topics) == 0 || u.ID == "" || u.Retry < 0 {
				t.Fatalf("accepted %q as %+v", body, u)
			}
			for _, tp := range u.Topics {
				if ValidTopic(tp) != nil {
					t.Fatalf("accepted topic %q", tp)
				}
			}
			if strings.ContainsAny(u.ID+u.Type, "\r\n\x00") || u.ID[0] == '#' {
				t.Fatalf("accepted id %q type %q", u.ID, u.Type)
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
	f.Add("match=a&matchURLPattern=/b/:id")
	f.Add("matchFoo=x")
	f.Add("topic={x}")
	h := NewHub(Config{Compat: true})
	f.Fuzz(func(t *testing.T, query string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		ms, msg := h.parseMatchers(q, "https://hub.example/.well-known/mercure")
		if (msg == "") == (len(ms) == 0) {
			t.Fatalf("%q: got %d matchers and %q", query, len(ms), msg)
		}
		for _, m := range ms {
			m.Match("https://hub.example/x") // must not panic
		}
	})
}
