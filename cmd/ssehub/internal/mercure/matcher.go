// Package mercure implements the hub side of the Mercure protocol
// (draft-dunglas-mercure-08): publication, subscription with topic
// matchers, reconciliation and the authorization rules, on top of the
// sse engine.
package mercure

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/dunglas/go-urlpattern"
	"github.com/yosida95/uritemplate/v3"
)

// MatchType names a topic matcher type in its canonical case.
type MatchType string

// The matcher types of the draft.
const (
	Exact      MatchType = "Exact"
	URLPattern MatchType = "URLPattern"
)

// URITemplate is the topic selector of Mercure 0.x, accepted in
// compatibility mode only: a topic or an RFC 6570 URI template matching
// topics. ParseMatchType never returns it.
const URITemplate MatchType = "URITemplate"

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
	last atomic.Pointer[matchResult]
}

type matchResult struct {
	topic string
	ok    bool
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
	if r := m.last.Load(); r != nil && r.topic == topic {
		return r.ok
	}
	var ok bool
	if m.pattern != nil {
		ok = m.pattern.Test(topic, m.base)
	} else {
		ok = topic == m.Pattern || m.template.Match(topic) != nil
	}
	m.last.Store(&matchResult{topic: topic, ok: ok})
	return ok
}

// matcherCache shares compiled matchers between the streams and tokens
// that use the same ones, so that their memoised results serve them all.
// It holds at most max matchers; beyond, new ones are not shared.
type matcherCache struct {
	mu  sync.Mutex
	m   map[matcherKey]*Matcher
	max int
}

type matcherKey struct {
	t             MatchType
	pattern, base string
}

func newMatcherCache(max int) *matcherCache {
	return &matcherCache{m: make(map[matcherKey]*Matcher), max: max}
}

// get returns the matcher NewMatcher(t, pattern, base) would, shared.
func (c *matcherCache) get(t MatchType, pattern, base string) (*Matcher, error) {
	k := matcherKey{t, pattern, base}
	c.mu.Lock()
	m := c.m[k]
	c.mu.Unlock()
	if m != nil {
		return m, nil
	}
	m, err := NewMatcher(t, pattern, base)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[k]; old != nil {
		return old, nil
	}
	if len(c.m) < c.max {
		c.m[k] = m
	}
	return m, nil
}

// errTopic is the cause of every invalid topic string.
var errTopic = errors.New("mercure: invalid topic")

// ValidTopic checks the draft's constraints on topic strings (and on
// matcher values): valid UTF-8 without C0, DEL or C1 control characters.
func ValidTopic(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: not valid UTF-8", errTopic)
	}
	for i, r := range s {
		if r < 0x20 || r >= 0x7f && r <= 0x9f {
			return fmt.Errorf("%w: control character U+%04X at byte %d", errTopic, r, i)
		}
	}
	return nil
}

// ReservedTopic reports whether topic, resolved against the hub URL
// base, addresses the hub's reserved namespace: its path is
// /.well-known/mercure or lies below it, whatever its scheme or host.
func ReservedTopic(topic, base string) bool {
	b, err := url.Parse(base)
	if err != nil {
		return false
	}
	ref, err := url.Parse(topic)
	if err != nil {
		// Not a URI reference: refuse it if it merely mentions the
		// namespace, rather than guess how a client would resolve it.
		return strings.Contains(topic, hubPath)
	}
	p := b.ResolveReference(ref).EscapedPath()
	if u, err := url.PathUnescape(p); err == nil {
		p = u
	}
	return p == hubPath || strings.HasPrefix(p, hubPath+"/")
}

// hubPath is the well-known path of every Mercure hub.
const hubPath = "/.well-known/mercure"
