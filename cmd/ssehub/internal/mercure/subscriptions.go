package mercure

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

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
//
// Its own subscriptions it knows first hand (active). Those of the other
// hubs sharing its broker it learns from their subscription events, which
// it follows from the broker (remote): each hub of a cluster appends to
// the topics of its events a node topic naming it, a random identifier of
// the process (see nodeTopicPrefix). A hub that dies cannot publish the
// end of its subscriptions, so, when ttl is positive, a hub holding
// subscriptions also publishes a heartbeat (an event with the node topic
// alone, which reaches no subscriber) every ttl/3, and the subscriptions
// of a hub from which nothing arrived for ttl are no longer listed. A
// hub started later learns the subscriptions whose events the broker
// still retains.
//
// Lock order: mu (held while an event is published, so that a listing
// and the lastEventID it reports agree), then fmu (held by the follower,
// which the in-memory broker calls from the publisher's goroutine).
type registry struct {
	engine *Engine
	node   string        // this hub's node topic
	ttl    time.Duration // 0: no heartbeat, remote subscriptions never expire
	now    func() time.Time

	mu     sync.Mutex
	active map[string]*subscription // by topic

	fmu      sync.Mutex
	remote   map[string]remoteSubscription // by topic
	seen     map[string]time.Time          // when something last arrived from each node
	applied  uint64                        // the Seq of the last update followed
	lastID   string                        // and its ID
	advanced chan struct{}                 // closed when applied moves
}

// remoteSubscription is an active subscription of another hub.
type remoteSubscription struct {
	node string
	doc  json.RawMessage // its subscription event's data
}

// newRegistry returns a registry following e's updates until e shuts
// down; ttl is as in Config.SubscriptionsTTL.
func newRegistry(e *Engine, ttl time.Duration) *registry {
	reg := &registry{
		engine:   e,
		node:     nodeTopicPrefix + uuid.NewString(),
		ttl:      ttl,
		now:      time.Now,
		active:   make(map[string]*subscription),
		remote:   make(map[string]remoteSubscription),
		seen:     make(map[string]time.Time),
		advanced: make(chan struct{}),
	}
	go e.Follow(context.Background(), reg.reset, reg.apply)
	if ttl > 0 {
		go reg.beat()
	}
	return reg
}

// reset forgets the other hubs' subscriptions, before the follower reads
// the retained updates again.
func (reg *registry) reset() {
	reg.fmu.Lock()
	defer reg.fmu.Unlock()
	clear(reg.remote)
	clear(reg.seen)
}

// apply follows one update of the broker.
func (reg *registry) apply(u Followed) {
	reg.fmu.Lock()
	defer reg.fmu.Unlock()
	reg.applied, reg.lastID = u.Seq, u.ID
	close(reg.advanced)
	reg.advanced = make(chan struct{})
	topics, node := splitNode(u.Topics)
	if node == "" || nodeTopicPrefix+node == reg.node || u.Type != subscriptionEventType {
		return
	}
	reg.seen[node] = reg.now()
	if len(topics) != 1 || !strings.HasPrefix(topics[0], subscriptionsPath+"/") {
		return // a heartbeat
	}
	var d struct {
		Active bool `json:"active"`
	}
	if json.Unmarshal([]byte(u.Data), &d) != nil {
		return
	}
	if d.Active {
		reg.remote[topics[0]] = remoteSubscription{node: node, doc: json.RawMessage(u.Data)}
	} else {
		delete(reg.remote, topics[0])
	}
}

// beat publishes a heartbeat every ttl/3 while the hub holds
// subscriptions, until the engine shuts down.
func (reg *registry) beat() {
	tick := time.NewTicker(reg.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-reg.engine.done:
			return
		case <-tick.C:
		}
		reg.mu.Lock()
		if len(reg.active) > 0 {
			reg.engine.Publish(context.Background(), &Update{Topics: []string{reg.node}, Private: true, ID: newID(), Type: subscriptionEventType})
		}
		reg.mu.Unlock()
	}
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
	// Stored even while the hub shuts down: the draft asks for an
	// update each time a subscription ends, and the hubs sharing the
	// broker list subscriptions from these.
	reg.engine.store(context.WithoutCancel(ctx), &Update{Topics: []string{s.topic(), reg.node}, Private: true, ID: newID(), Type: subscriptionEventType, Data: string(data)})
}

// catchUpTimeout bounds how long a listing waits for the follower to
// reach the newest update.
const catchUpTimeout = 2 * time.Second

// catchUp waits until the follower has read the update newest when it is
// called, or ctx ends, or catchUpTimeout passes.
func (reg *registry) catchUp(ctx context.Context) {
	head, _, err := reg.engine.Head(ctx)
	if err != nil {
		return
	}
	timeout := time.NewTimer(catchUpTimeout)
	defer timeout.Stop()
	for {
		reg.fmu.Lock()
		applied, advanced := reg.applied, reg.advanced
		reg.fmu.Unlock()
		if applied >= head {
			return
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return
		case <-timeout.C:
			return
		}
	}
}

// listed is a subscription document and its topic.
type listed struct {
	topic string
	doc   json.RawMessage
}

// list returns the documents of the active subscriptions of the cluster
// whose topic has prefix, sorted by topic, and the last event ID: that
// of the last update followed, after which the subscription events
// continue the listing. A subscription may both be listed and have its
// creation follow the ID, never neither.
func (reg *registry) list(ctx context.Context, prefix string) ([]listed, string) {
	reg.catchUp(ctx)
	reg.mu.Lock()
	defer reg.mu.Unlock()
	reg.fmu.Lock()
	defer reg.fmu.Unlock()
	var out []listed
	for t, s := range reg.active {
		if strings.HasPrefix(t, prefix) {
			doc, _ := json.Marshal(s.doc(true))
			out = append(out, listed{t, doc})
		}
	}
	now := reg.now()
	for t, s := range reg.remote {
		if reg.ttl > 0 && now.Sub(reg.seen[s.node]) > reg.ttl {
			delete(reg.remote, t) // its hub went silent
			continue
		}
		if strings.HasPrefix(t, prefix) && reg.active[t] == nil {
			out = append(out, listed{t, s.doc})
		}
	}
	if reg.ttl > 0 {
		for n, at := range reg.seen {
			if now.Sub(at) > reg.ttl {
				delete(reg.seen, n)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].topic < out[j].topic })
	last := reg.lastID
	if reg.applied == 0 {
		last = Earliest
	}
	return out, last
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
		if !ok && h.cfg.Compat && MatchType(mt) == URITemplate {
			t, ok = URITemplate, true // the type of topic= subscriptions
		}
		if !ok {
			fail(w, http.StatusNotFound, "", "unknown matcher type "+mt)
			return
		}
		prefix += string(t) + "/" + expand(match) + "/"
		if subscriber != "" {
			prefix += expand(subscriber)
		}
	}
	subs, last := h.subs.list(r.Context(), prefix)
	var body any
	if subscriber != "" {
		// The prefix is a whole topic here; only an exact one counts.
		for _, s := range subs {
			if s.topic == prefix {
				body = s.doc
			}
		}
		if body == nil {
			fail(w, http.StatusNotFound, "", "no such active subscription")
			return
		}
	} else {
		docs := make([]json.RawMessage, len(subs))
		for i, s := range subs {
			docs[i] = s.doc
		}
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
