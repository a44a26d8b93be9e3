// Package mercure implements the hub side of the Mercure protocol
// (draft-dunglas-mercure-08): publication, subscription with topic
// matchers, reconciliation and the authorization rules, on top of the
// sse engine.
package mercure

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/dunglas/go-urlpattern"
	whatwg "github.com/nlnwa/whatwg-url/url"
	"github.com/yosida95/uritemplate/v3"
)

// MatchType names a topic matcher type in its canonical case.
type MatchType string

// The matcher types of the draft, by their canonical names: the suffix
// of the match_<type> subscribe parameter and the match_type of a
// token's topic matcher.
const (
	Exact      MatchType = "exact"
	URLPattern MatchType = "urlpattern"
)

// URITemplate is the topic selector of Mercure 0.x, accepted in
// compatibility mode only: a topic or an RFC 6570 URI template matching
// topics. ParseMatchType never returns it.
const URITemplate MatchType = "uritemplate"

// Wildcard is the reserved matcher value that matches every topic,
// whatever the matcher type.
const Wildcard = "*"

// ParseMatchType returns the matcher type named s (case-sensitive).
func ParseMatchType(s string) (MatchType, bool) {
	switch MatchType(s) {
	case Exact, URLPattern:
		return MatchType(s), true
	}
	return "", false
}

// Matcher is a compiled topic matcher.
type Matcher struct {
	Type    MatchType
	Pattern string // the matcher as given

	all      bool
	pattern  *urlpattern.URLPattern
	template *uritemplate.Template
	base     string

	// last memoises the latest evaluation of a pattern or template,
	// which costs tens of microseconds: a matcher shared by many streams
	// (see matcherCache) is evaluated once per update, not per stream.
	last memo
}

// memo holds the latest (topic, result) of a matcher without allocating
// on a store, for a matcher that no cache shares sees a new topic at
// every update. It is a sequence lock whose fields are all atomics:
// seq is odd while a store is under way and 0 before the first one; a
// load that sees seq change, or odd, is a miss. A store that finds
// another under way is dropped: the memo only saves work. The topic is
// kept as its bytes' address and length, which keeps those (immutable)
// bytes alive.
type memo struct {
	seq   atomic.Uint64
	topic atomic.Pointer[byte]
	n     atomic.Int64
	ok    atomic.Bool
}

// load returns the result memoised for topic, if any.
func (m *memo) load(topic string) (ok, hit bool) {
	s := m.seq.Load()
	if s == 0 || s&1 != 0 {
		return false, false
	}
	p, n := m.topic.Load(), m.n.Load()
	ok = m.ok.Load()
	if m.seq.Load() != s || n != int64(len(topic)) {
		return false, false
	}
	// p and n were stored together, by one store: they make the
	// string that store was given.
	return ok, unsafe.String(p, n) == topic
}

// store memoises ok as the result for topic, unless another store is
// under way.
func (m *memo) store(topic string, ok bool) {
	s := m.seq.Load()
	if s&1 != 0 || !m.seq.CompareAndSwap(s, s+1) {
		return
	}
	m.topic.Store(unsafe.StringData(topic))
	m.n.Store(int64(len(topic)))
	m.ok.Store(ok)
	m.seq.Store(s + 2)
}

// NewMatcher compiles pattern as a matcher of type t. base is the hub's
// URL, against which relative URL patterns and topics are resolved.
// The pattern must be a valid topic string (see [ValidTopic]).
func NewMatcher(t MatchType, pattern, base string) (*Matcher, error) {
	if err := ValidTopic(pattern); err != nil {
		return nil, err
	}
	m := &Matcher{Type: t, Pattern: pattern, base: base}
	if pattern == Wildcard {
		m.all = true
		return m, nil
	}
	switch t {
	case Exact:
	case URLPattern:
		// go-urlpattern compiles to Go's regexp package (RE2), whose
		// matching is linear in the input: no pattern can backtrack.
		p, err := urlpattern.New(pattern, "", nil)
		if err != nil {
			p, err = urlpattern.New(pattern, base, nil)
		}
		if errors.Is(err, urlpattern.ErrType) {
			// Its text dumps the tokenizer's state, addresses included.
			err = urlpattern.ErrType
		}
		if err != nil {
			return nil, fmt.Errorf("invalid URL pattern %q: %w", pattern, err)
		}
		m.pattern = p
	case URITemplate:
		tmpl, err := uritemplate.New(pattern)
		if err != nil {
			return nil, fmt.Errorf("invalid URI template %q: %w", pattern, err)
		}
		m.template = tmpl
	default:
		return nil, fmt.Errorf("unknown matcher type %q", t)
	}
	return m, nil
}

// Match reports whether topic matches m. It is safe for concurrent use.
func (m *Matcher) Match(topic string) bool {
	switch {
	case m.all:
		return true
	case m.pattern == nil && m.template == nil:
		return topic == m.Pattern
	}
	if ok, hit := m.last.load(topic); hit {
		return ok
	}
	var ok bool
	if m.pattern != nil {
		ok = m.pattern.Test(topic, m.base)
	} else {
		ok = topic == m.Pattern || m.template.Match(topic) != nil
	}
	m.last.store(topic, ok)
	return ok
}

// matcherCache shares compiled matchers between the streams and tokens
// that use the same ones, so that their memoised results serve them all.
// It holds at most max matchers: beyond, it evicts one not asked for
// since the clock hand last passed it (the CLOCK approximation of least
// recently used), reusing its slot, so that a hub which has seen max
// distinct matchers in its life still shares the ones in use. An evicted
// matcher stays valid for those holding it; it is just no longer shared
// with newcomers.
type matcherCache struct {
	mu    sync.Mutex
	m     map[matcherKey]int // index in slots
	slots []cacheSlot
	hand  int // next slot the clock looks at
	max   int
}

type cacheSlot struct {
	key matcherKey
	m   *Matcher
	ref bool // asked for since the hand last passed
}

type matcherKey struct {
	t             MatchType
	pattern, base string
}

func newMatcherCache(max int) *matcherCache {
	return &matcherCache{m: make(map[matcherKey]int), max: max}
}

// get returns the matcher NewMatcher(t, pattern, base) would, shared.
func (c *matcherCache) get(t MatchType, pattern, base string) (*Matcher, error) {
	k := matcherKey{t, pattern, base}
	if m := c.lookup(k); m != nil {
		return m, nil
	}
	m, err := NewMatcher(t, pattern, base)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if i, ok := c.m[k]; ok {
		c.slots[i].ref = true
		return c.slots[i].m, nil
	}
	switch {
	case c.max <= 0:
	case len(c.slots) < c.max:
		c.m[k] = len(c.slots)
		c.slots = append(c.slots, cacheSlot{key: k, m: m})
	default:
		for c.slots[c.hand].ref {
			c.slots[c.hand].ref = false
			c.hand = (c.hand + 1) % len(c.slots)
		}
		delete(c.m, c.slots[c.hand].key)
		c.slots[c.hand] = cacheSlot{key: k, m: m}
		c.m[k] = c.hand
		c.hand = (c.hand + 1) % len(c.slots)
	}
	return m, nil
}

func (c *matcherCache) lookup(k matcherKey) *Matcher {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.m[k]
	if !ok {
		return nil
	}
	c.slots[i].ref = true
	return c.slots[i].m
}

// errTopic is the cause of every invalid topic string.
var errTopic = errors.New("mercure: invalid topic")

// ValidTopic checks the draft's constraints on topic strings, which
// also apply to matcher values and to update IDs: valid UTF-8 without
// C0, DEL or C1 control characters or format characters (Unicode
// category Cf, such as bidirectional and zero-width controls).
func ValidTopic(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: not valid UTF-8", errTopic)
	}
	for i, r := range s {
		if r < 0x20 || r >= 0x7f && r <= 0x9f {
			return fmt.Errorf("%w: control character U+%04X at byte %d", errTopic, r, i)
		}
		if unicode.Is(unicode.Cf, r) {
			return fmt.Errorf("%w: format character U+%04X at byte %d", errTopic, r, i)
		}
	}
	return nil
}

// ReservedTopic reports whether topic, resolved against the hub URL
// base, addresses the hub's reserved namespace: its path, once its
// percent-encoded unreserved characters are decoded and its dot-segments
// removed, is the hub's path or lies below it, whatever its scheme or
// host. A topic that is not a URL reference addresses nothing.
//
// It resolves topic with the URL Standard's parser, as the draft asks
// and as URL patterns do: net/url would read "\.well-known\mercure" or
// " /.well-known/mercure" as paths below the hub's directory, while a
// subscriber's pattern sees /.well-known/mercure in both.
func ReservedTopic(topic, base string) bool {
	b, err := whatwg.Parse(base)
	if err != nil {
		return false
	}
	u, err := b.Parse(topic)
	if err != nil || u.OpaquePath() {
		return false
	}
	p := removeDotSegments(decodeUnreserved(u.Pathname()))
	hp := b.Pathname()
	return p == hp || strings.HasPrefix(p, hp+"/")
}

// decodeUnreserved decodes the percent-encoded octets of p that stand
// for unreserved characters (RFC 3986 section 2.3), leaving the others.
func decodeUnreserved(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			if c, ok := unhex2(p[i+1], p[i+2]); ok && isUnreserved(c) {
				b.WriteByte(c)
				i += 2
				continue
			}
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

func unhex2(a, b byte) (byte, bool) {
	h, ok1 := unhex(a)
	l, ok2 := unhex(b)
	return h<<4 | l, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// removeDotSegments is the algorithm of RFC 3986 section 5.2.4 for an
// absolute path.
func removeDotSegments(p string) string {
	var out []string
	segs := strings.Split(p, "/")
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	if len(out) == 0 || out[0] != "" {
		out = append([]string{""}, out...)
	}
	return strings.Join(out, "/")
}

// hubPath is the well-known path of a Mercure hub.
const hubPath = "/.well-known/mercure"
