package sse

import (
	"context"
	"time"
)

// GapEventType is the type of the event a [Server] sends first to a
// client that resumes from a position its history no longer holds (or
// never held): an unknown, malformed or too old Last-Event-ID. A browser
// sees it with
//
//	source.addEventListener("sse-gap", e => reload(e.data))
//
// Its data is the ID of the oldest event still retained for the topic
// (empty when none is), in the form the connection's IDs take: a plain ID
// on a one-topic stream, a cursor naming only that topic (such as
// "news=17") on a stream of several topics; see [Server]. It carries no
// id field, so the client's last event ID is left as it was. Every
// retained event after the gap follows it.
const GapEventType = "sse-gap"

// Newest, passed to [Broker.Subscribe] as the position, starts the feed
// after the newest event of the topic at the moment of subscribing;
// [Subscription.After] then tells which event that was.
const Newest = ^uint64(0)

// Position is a place in a topic: the [Message.Seq] of an event and its
// ID. The zero Position is the start of a topic, before any event.
type Position struct {
	Seq uint64 // the broker's sequence number; 0 before the first event
	ID  string // the event's ID; "" before the first event
}

// Meta is optional metadata a [Broker] stores beside an event and hands
// back with it, from History and from subscriptions alike, so that a
// reader on any node can filter events after a replay as it would live.
// Brokers store it as given and never read it. It is meant to be small:
// it counts towards the event's size in every limit.
//
// Its JSON form, short for brokers that store it as text, is
// {"t":[...],"p":true}.
type Meta struct {
	// Topics lists topics the event belongs to besides the one it is
	// stored in (a Mercure update's other topics, say), in the
	// publisher's order.
	Topics []string `json:"t,omitempty"`

	// Private marks an event that only authorised readers may receive.
	Private bool `json:"p,omitempty"`
}

// size returns the bytes m counts for in history limits.
func (m *Meta) size() int {
	if m == nil {
		return 0
	}
	n := 1
	for _, t := range m.Topics {
		n += len(t) + 1
	}
	return n
}

// clone returns a deep copy of m, nil for nil.
func (m *Meta) clone() *Meta {
	if m == nil {
		return nil
	}
	c := *m
	if m.Topics != nil {
		c.Topics = append([]string(nil), m.Topics...)
	}
	return &c
}

// Message is an event stored in a topic by a [Broker].
type Message struct {
	Topic string    // the topic it was published to
	Seq   uint64    // its place in the topic; see Broker for the rules
	Event Event     // the event, with its ID always set
	Time  time.Time // when the broker stored it

	// Meta is what the publisher stored beside the event; nil when it
	// stored nothing. Readers must not modify it: a broker may hand the
	// same Meta to every reader.
	Meta *Meta
}

// Position returns the place of m in its topic.
func (m *Message) Position() Position { return Position{Seq: m.Seq, ID: m.Event.ID} }

// History is the answer of [Broker.History].
type History struct {
	// Messages are the retained events after the asked position, oldest
	// first. After a gap they start at the oldest retained event.
	Messages []Message

	// After is the position the Messages follow: that of the event the
	// asked ID names; zero when the ID is "" (the start of the topic) or
	// when Gap is set. Subscribe(After.Seq) continues the history
	// exactly: it feeds the same Messages, then the later events.
	After Position

	// Gap reports that events after the asked position may be missing:
	// the ID is unknown to the topic, malformed, or older than what the
	// history retains.
	Gap bool

	// Oldest is the oldest retained event, zero when none is retained.
	Oldest Position

	// Head is the newest event published to the topic that the broker
	// still knows of; zero when it knows of none.
	Head Position
}

// Subscription is a live feed opened by [Broker.Subscribe].
type Subscription interface {
	// After returns the position the feed starts after: the asked one,
	// or, for [Newest], the newest event when the subscription began
	// (zero when the topic had none). The first event fed is the one
	// that follows it. It is the answer to "what has this feed not
	// sent?", so that a server never has to ask the broker twice.
	After() Position

	// Close ends the subscription; once it returns, the callback is not
	// called again. It must not be called from the callback. It is
	// idempotent and returns nil.
	Close() error

	// Done is closed when the subscription ends, whatever the cause.
	Done() <-chan struct{}

	// Err returns nil while the subscription runs. Afterwards it says
	// why it ended: [context.Canceled] (or the context's error) when
	// its context ended or Close was called, an error matching
	// [ErrBrokerClosed] when the broker was closed, one matching
	// [ErrBrokerUnavailable] when the broker lost its backing service,
	// or another failure of the broker.
	Err() error
}

// Broker stores published events in topics and feeds them to
// subscribers. It is the seam between a [Server] and the engine holding
// the events: [MemoryBroker] keeps them in this process; others (Redis
// streams, NATS JetStream) live behind the same interface, so that
// several servers share topics and a client resumes on any of them.
// Package [github.com/coregx/stream/sse/ssetest] checks an
// implementation against the contract below.
//
// Topics. A topic is any string, "" included; a broker whose engine
// restricts names escapes them. Topics exist on first use and are
// independent: what happens in one never shows in another.
//
// IDs and sequence numbers. Publish stores the event in its topic and
// gives it a Seq, a number that strictly increases from one event to the
// next in the topic (starting above 0; steps larger than one are
// allowed). An event published with an ID keeps it verbatim. A
// publisher may reuse an ID: it then names the earliest event the broker
// still knows that bears it (the newest pruned one, else the oldest
// retained), so a client that saw it gets every later event, the reuse
// included. An event published
// without an ID gets one from the broker, unique in the topic; its form
// is the broker's (decimal numbers for [MemoryBroker]) and IDs compare
// in no particular order: readers order events by Seq. An ID of another
// topic, or from before the broker lost its history, must not be taken
// for a position of this topic.
//
// Order. Every reader sees the events of a topic in Seq order: History
// lists them so, and a subscription receives them so, one at a time.
// Nothing is promised about the order of events of different topics.
//
// History and positions. A broker may retain only some of a topic's
// events, always the newest ones (bounded by count, bytes or age). Both
// ways of reading start after a position: History after an event named
// by its ID (what a client sends back), Subscribe after a Seq (what a
// reader already holds). They agree: History's After.Seq, given to
// Subscribe, feeds exactly what History listed and then what follows. A
// position that may leave events out is a gap: History reports it and
// lists every retained event; Subscribe refuses it with [ErrGap]. The ID
// "" and the Seq 0 mean the start of the topic, a gap only once events
// were pruned. A topic that has no subscriber and retains no event may
// be forgotten entirely; a later event then starts it anew, and IDs of
// before are gaps.
//
// Concurrency. All methods are safe for concurrent use. Concurrent
// publishers to one topic are serialised in some order that every reader
// then sees.
//
// Outages. A broker backed by a service it cannot reach returns errors
// matching [ErrBrokerUnavailable] and ends its subscriptions with one; it
// never drops an event silently, and it reconnects by itself.
//
// Close. After Close, Publish, History and Subscribe return an error
// matching [ErrBrokerClosed] and store or deliver nothing; open
// subscriptions end with that error, and no callback runs once Close
// has returned. Close is idempotent and returns nil.
type Broker interface {
	// Publish stores ev in topic, with meta beside it (nil for none),
	// and returns it as stored, with its Seq and its ID (ev's own, or
	// one the broker assigned). ev and meta are not modified or kept.
	// An event that fails [Event.Validate] is refused with
	// [ErrInvalidEvent], one larger than the broker holds with
	// [ErrEventTooLarge]. When Publish returns an error the event was
	// not stored, unless the error is ctx's, in which case it may have
	// been.
	Publish(ctx context.Context, topic string, ev *Event, meta *Meta) (Message, error)

	// History returns the retained events of topic after the event
	// whose ID is afterID ("" for the start of the topic). See
	// [History] for the answer, including gaps.
	History(ctx context.Context, topic, afterID string) (History, error)

	// Subscribe calls fn with every event of topic whose Seq is greater
	// than after ([Newest] for the events published from now on), in
	// order, first those already retained and then those published
	// later, until the subscription ends: when ctx ends, when Close is
	// called, when the broker closes or fails. fn is never called
	// concurrently for one subscription, and must return quickly
	// without calling the broker: a broker may call it from the
	// publisher's goroutine (MemoryBroker does, so a slow fn slows
	// publishing to that topic), and a network broker may end a
	// subscription whose fn cannot keep up; it never skips an event.
	// When events after the position are not retained, or the position
	// is beyond the newest event, Subscribe returns an error matching
	// [ErrGap] and subscribes to nothing.
	Subscribe(ctx context.Context, topic string, after uint64, fn func(Message)) (Subscription, error)

	// Close releases the broker; see the contract above.
	Close() error
}
