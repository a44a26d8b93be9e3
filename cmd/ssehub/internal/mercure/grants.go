package mercure

import (
	"encoding/json"
	"fmt"

	"github.com/coregx/stream/cmd/ssehub/internal/auth"
)

// grants is what a validated token allows, its matchers compiled against
// the hub's URL. The nil *grants (an anonymous request) allows nothing.
type grants struct {
	publish   []*Matcher
	subscribe []subscribeGrant
}

type subscribeGrant struct {
	matchers []*Matcher
	payload  json.RawMessage
}

// compileGrants compiles the details of t with matchers from c; base is
// the hub's URL.
func compileGrants(c *matcherCache, t *auth.Token, base string) (*grants, error) {
	g := &grants{}
	for _, d := range t.Details {
		ms := make([]*Matcher, 0, len(d.Topics))
		for _, tm := range d.Topics {
			mt, ok := ParseMatchType(tm.MatchType)
			if tm.MatchType == auth.LegacySelector {
				mt, ok = URITemplate, true // from a legacy token
			}
			if !ok {
				return nil, fmt.Errorf("unknown matchType %q", tm.MatchType)
			}
			m, err := c.get(mt, tm.Match, base)
			if err != nil {
				return nil, err
			}
			ms = append(ms, m)
		}
		if d.Allows(auth.Publish) {
			g.publish = append(g.publish, ms...)
		}
		if d.Allows(auth.Subscribe) {
			g.subscribe = append(g.subscribe, subscribeGrant{matchers: ms, payload: d.Payload})
		}
	}
	return g, nil
}

// CheckMatcher validates a matcher of a token's authorization details.
func CheckMatcher(matchType, match string) error {
	mt, ok := ParseMatchType(matchType)
	if !ok {
		return fmt.Errorf("matchType must be Exact or URLPattern, not %q", matchType)
	}
	_, err := NewMatcher(mt, match, "http://localhost"+hubPath)
	return err
}

// CheckSelector validates a topic selector of a Mercure 0.x token.
func CheckSelector(selector string) error {
	_, err := NewMatcher(URITemplate, selector, "")
	return err
}

// canPublish reports whether g grants publish on topic.
func (g *grants) canPublish(topic string) bool {
	if g == nil {
		return false
	}
	return anyMatch(g.publish, topic)
}

// canRead reports whether g grants subscribe on topic.
func (g *grants) canRead(topic string) bool {
	if g == nil {
		return false
	}
	for _, s := range g.subscribe {
		if anyMatch(s.matchers, topic) {
			return true
		}
	}
	return false
}

// canReadAny reports whether g grants subscribe on one of topics.
func (g *grants) canReadAny(topics []string) bool {
	for _, t := range topics {
		if g.canRead(t) {
			return true
		}
	}
	return false
}

// payloadFor returns the payload of the first subscribe grant matching
// the matcher string pattern taken as a topic, or nil.
func (g *grants) payloadFor(pattern string) json.RawMessage {
	if g == nil {
		return nil
	}
	for _, s := range g.subscribe {
		if anyMatch(s.matchers, pattern) {
			return s.payload
		}
	}
	return nil
}

func anyMatch(ms []*Matcher, topic string) bool {
	for _, m := range ms {
		if m.Match(topic) {
			return true
		}
	}
	return false
}
