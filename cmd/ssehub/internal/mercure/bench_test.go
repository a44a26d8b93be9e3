package mercure_test

import (
	"testing"

	"github.com/coregx/stream/cmd/ssehub/internal/mercure"
)

func BenchmarkMatch(b *testing.B) {
	for _, c := range []struct {
		name    string
		typ     mercure.MatchType
		pattern string
	}{
		{"Exact", mercure.Exact, "https://example.com/books/1"},
		{"URLPattern", mercure.URLPattern, "https://example.com/books/:id"},
		{"URITemplate", mercure.URITemplate, "https://example.com/books/{id}"},
	} {
		m, err := mercure.NewMatcher(c.typ, c.pattern, base)
		if err != nil {
			b.Fatal(err)
		}
		// Memoised: the same topic again, as when streams sharing the
		// matcher judge one update.
		b.Run(c.name+"/Memoised", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !m.Match("https://example.com/books/1") {
					b.Fatal("no match")
				}
			}
		})
		if c.typ == mercure.Exact {
			continue // nothing to memoise
		}
		// Cold: a new topic every time.
		topics := []string{"https://example.com/books/1", "https://example.com/books/2"}
		b.Run(c.name+"/Cold", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if !m.Match(topics[i&1]) {
					b.Fatal("no match")
				}
				i++
			}
		})
	}
}
