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

// subscriptionEventType is the SSE event type of subscription events,
// reserved for them.
const subscriptionEventType = "mercure"

// subscription is one active subscription: a matcher of a stream.
type subscription struct {
	matchType  MatchType
	match      string
	subscriber string
	payload    json.RawMessage
}

// topic returns the subscription's topic, the expansion of
// /.well-known/mercure/subscriptions/{match_type}/{match}/{subscriber}.
func (s *subscription) topic() string {
	return subscriptionsPath + "/" + string(s.matchType) + "/" + expand(s.match) + "/" + expand(s.subscriber)
}

// doc returns the subscription's document.
func (s *subscription) doc(active bool) map[string]any {
	d := map[string]any{
		"id":         s.topic(),
		"type":       "subscription",
		"match_type": s.matchType,
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
		if isUnreserved(c) {
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

// open registers the subscriptions of a stream, one per matcher (the
// same matcher twice counts once), and publishes their events; it
// returns them for close. The subscriber is a random UUID URN, unique to
// the connection.
func (reg *registry) open(ctx context.Context, matchers []*Matcher, g *grants) []*subscription {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	subscriber := "urn:uuid:" + uuid.NewString()
	subs := make([]*subscription, 0, len(matchers))
	for _, m := range matchers {
		s := &subscription{matchType: m.Type, match: m.Pattern, subscriber: subscriber, payload: g.payloadFor(m.Pattern)}
		if reg.active[s.topic()] != nil {
			continue
		}
		reg.active[s.topic()] = s
		subs = append(subs, s)
		reg.publishLocked(ctx, s, true)
	}
	return subs
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
	data, _ := json.Marshal(s.doc(active))
	// A hub shutting down publishes nothing more; the subscription
	// simply ends with the stream.
	reg.engine.Publish(context.WithoutCancel(ctx), &Update{Topics: []string{s.topic()}, Private: true, ID: newID(), Type: subscriptionEventType, Data: string(data)})
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
		h.insufficientScope(w, r, "the token does not grant subscribe on "+path)
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
		body = map[string]any{"id": path, "type": "subscriptions", "subscriptions": docs}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Link", "<"+h.base(r)+`>; rel="mercure"; last-event-id="`+quoteLinkParam(last)+`"; type="mercure"; content-type="application/json"`)
	w.Header().Set("Cache-Control", "must-revalidate")
	json.NewEncoder(w).Encode(body)
}

// linkParamEscaper escapes a value for a quoted-string of a Link
// parameter.
var linkParamEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// quoteLinkParam escapes v for a quoted-string of a Link parameter.
func quoteLinkParam(v string) string {
	return linkParamEscaper.Replace(v)
}
