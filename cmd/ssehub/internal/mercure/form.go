package mercure

import "strings"

// pair is a name and value of an application/x-www-form-urlencoded
// string.
type pair struct{ name, value string }

// parseForm splits s into its name/value pairs, in order, as the URL
// Standard's application/x-www-form-urlencoded parser does (that of
// URLSearchParams and EventSource): "&" separates pairs, the first "="
// a name from its value (none means an empty value), "+" is a space,
// and a "%" not followed by two hex digits stays as it is. Unlike that
// parser it leaves invalid UTF-8 in place, for the caller to refuse.
func parseForm(s string) []pair {
	var out []pair
	for s != "" {
		var part string
		part, s, _ = strings.Cut(s, "&")
		if part == "" {
			continue
		}
		name, value, _ := strings.Cut(part, "=")
		out = append(out, pair{percentDecode(name), percentDecode(value)})
	}
	return out
}

// percentDecode decodes "+" and the valid percent-encoded octets of s.
func percentDecode(s string) string {
	if !strings.ContainsAny(s, "+%") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s):
			if v, ok := unhex2(s[i+1], s[i+2]); ok {
				b.WriteByte(v)
				i += 2
				continue
			}
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// values returns the values named name, in order.
func values(ps []pair, name string) []string {
	var out []string
	for _, p := range ps {
		if p.name == name {
			out = append(out, p.value)
		}
	}
	return out
}

// first returns the first value named name and whether there is one.
func first(ps []pair, name string) (string, bool) {
	for _, p := range ps {
		if p.name == name {
			return p.value, true
		}
	}
	return "", false
}
