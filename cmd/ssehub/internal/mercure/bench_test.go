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
		b.Run(c.name, func(b *testing.B) {
			m, err := mercure.NewMatcher(c.typ, c.pattern, base)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if !m.Match("https://example.com/books/1") {
					b.Fatal("no match")
				}
			}
		})
	}
}
