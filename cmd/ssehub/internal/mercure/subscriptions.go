package mercure

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/google/uuid"
)

// subscriptionsPath is the collection of active subscriptions, also the
// prefix of the topics of subscription events.
const subscriptionsPath = hubPath + "/subscriptions"

// jsonLDContext is the fixed JSON-LD context of the hub's documents.
const jsonLDContext = "https://mercure.rocks/"

// subscription is one active subscription: a matcher of a stream.
type subscription struct {
	matchType  MatchType
	match      string
	subscriber string
	payload    json.RawMessage
}

// topic returns the subscription's topic, the expansion of
// /.well-known/mercure/subscriptions/{matchType}/{match}/{subscriber}.
func (s *subscription) topic() string {
	return subscriptionsPath + "/" + string(s.matchType) + "/" + expand(s.match) + "/" + expand(s.subscriber)
}

// doc returns the subscription's JSON-LD document.
func (s *subscription) doc(active bool) map[string]any {
	d := map[string]any{
		"id":         s.topic(),
		"type":       "Subscription",
		"matchType":  s.matchType,
		"match":      s.match,
		"subscriber": s.subscriber,
		"active":     active,
	}
	if s.payload != nil {
		d["payload"] = s.payload
	}
	return d
}

// expand percent-encodes v as an RFC 6570 simple string expansion does:
// every byte but the unreserved characters, once, "%" included.
func expand(v string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// registry tracks the active subscriptions and publishes their events.
// Its lock is held while an event is published, so that a listing and
// the lastEventID it reports agree.
type registry struct {
	engine *Engine
	mu     sync.Mutex
	active map[string]*subscription // by topic
}

// open registers the subscriptions of a stream and publishes their
// events; it returns them for close. subject is the token's validated
// sub claim, "" for none.
func (reg *registry) open(ctx context.Context, matchers []*Matcher, subject string, g *grants) []*subscription {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	// The subscriber is the token's subject when there is one and it is
	// not already subscribed with one of these matchers (a second tab,
	// say); otherwise a random UUID, unique among active subscriptions.
	subscriber := subject
	seen := make(map[string]bool)
	for attempt := 0; ; attempt++ {
		if subscriber == "" || attempt > 0 {
			subscriber = "urn:uuid:" + uuid.NewString()
		}
		subs, clash := make([]*subscription, 0, len(matchers)), false
		clear(seen)
		for _, m := range matchers {
			s := &subscription{matchType: m.Type, match: m.Pattern, subscriber: subscriber, payload: g.payloadFor(m.Pattern)}
			t := s.topic()
			if seen[t] {
				continue // the same matcher twice: one subscription
			}
			seen[t] = true
			if reg.active[t] != nil {
				clash = true
				break
			}
			subs = append(subs, s)
		}
		if !clash {
			for _, s := range subs {
				reg.active[s.topic()] = s
				reg.publishLocked(ctx, s, true)
			}
			return subs
		}
	}
}

// close unregisters subs and publishes their end.
func (reg *registry) close(subs []*subscription) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	for _, s := range subs {
		delete(reg.active, s.topic())
		reg.publishLocked(context.Background(), s, false)
	}
}

func (reg *registry) publishLocked(ctx context.Context, s *subscription, active bool) {
	d := s.doc(active)
	d["@context"] = jsonLDContext
	data, _ := json.Marshal(d)
	// A hub shutting down publishes nothing more; the subscription
	// simply ends with the stream.
	reg.engine.Publish(context.WithoutCancel(ctx), &Update{Topics: []string{s.topic()}, Private: true, ID: newID(), Data: string(data)})
}

// list returns the documents of the active subscriptions whose topic has
// prefix, sorted by topic, and the last event ID.
func (reg *registry) list(ctx context.Context, prefix string) ([]map[string]any, string) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	var topics []string
	for t := range reg.active {
		if strings.HasPrefix(t, prefix) {
			topics = append(topics, t)
		}
	}
	sort.Strings(topics)
	docs := make([]map[string]any, 0, len(topics))
	for _, t := range topics {
		docs = append(docs, reg.active[t].doc(true))
	}
	return docs, reg.engine.LastEventID(ctx)
}

// serveSubscriptions answers the subscription API.
func (h *Hub) serveSubscriptions(w http.ResponseWriter, r *http.Request) {
	g, _, _, ok := h.authenticate(w, r, true)
	if !ok {
		return
	}
	path := r.URL.EscapedPath()
	if !g.canRead(path) {
		insufficientScope(w, "the token does not grant subscribe on "+path)
		return
	}
	mt, match, subscriber := r.PathValue("matchType"), r.PathValue("match"), r.PathValue("subscriber")
	prefix := subscriptionsPath + "/"
	if mt != "" {
		t, ok := ParseMatchType(mt)
		if !ok {
			fail(w, http.StatusNotFound, "", "unknown matcher type "+mt)
			return
		}
		prefix += string(t) + "/" + expand(match) + "/"
		if subscriber != "" {
			prefix += expand(subscriber)
		}
	}
	docs, last := h.subs.list(r.Context(), prefix)
	var body map[string]any
	if subscriber != "" {
		// The prefix is a whole topic here; only an exact one counts.
		for _, d := range docs {
			if d["id"] == prefix {
				body = d
			}
		}
		if body == nil {
			fail(w, http.StatusNotFound, "", "no such active subscription")
			return
		}
	} else {
		body = map[string]any{"id": path, "type": "Subscriptions", "subscriptions": docs}
	}
	body["@context"] = jsonLDContext
	body["lastEventID"] = last
	w.Header().Set("Content-Type", "application/ld+json")
	w.Header().Set("Link", "<"+h.base(r)+`>; rel="mercure"`)
	w.Header().Set("Cache-Control", "must-revalidate")
	json.NewEncoder(w).Encode(body)
}
