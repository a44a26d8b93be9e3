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

// Position is a place in a topic: the [Message.Seq] of an event and its
// ID. The zero Position is the start of a topic, before any event.
type Position struct {
	Seq uint64 // the broker's sequence number; 0 before the first event
	ID  string // the event's ID; "" before the first event
}

// Message is an event stored in a topic by a [Broker].
type Message struct {
	Topic string    // the topic it was published to
	Seq   uint64    // its place in the topic; see Broker for the rules
	Event Event     // the event, with its ID always set
	Time  time.Time // when the broker stored it
}

// Position returns the place of m in its topic.
func (m *Message) Position() Position { return Position{Seq: m.Seq, ID: m.Event.ID} }

// History is the answer of [Broker.History].
type History struct {
	// Messages are the retained events after the asked position, oldest
	// first. After a gap they start at the oldest retained event.
	Messages []Message

	// After is the Seq of the event the asked ID names; 0 when the ID
	// is "" (the start of the topic) or when Gap is set.
	After uint64

	// Gap reports that events after the asked position may be missing:
	// the ID is unknown to the topic, malformed, or older than what the
	// history retains.
	Gap bool

	// Oldest is the oldest retained event, zero when none is retained.
	Oldest Position

	// Head is the newest event ever published to the topic, retained or
	// not; zero when the topic never had one.
	Head Position
}

// Subscription is a live feed opened by [Broker.Subscribe].
type Subscription interface {
	// Close ends the subscription; once it returns, the callback is not
	// called again. It must not be called from the callback. It is
	// idempotent and returns nil.
	Close() error

	// Done is closed when the subscription ends, whatever the cause.
	Done() <-chan struct{}

	// Err returns nil while the subscription runs. Afterwards it says
	// why it ended: [context.Canceled] (or the context's error) when
	// its context ended or Close was called, an error matching
	// [ErrBrokerClosed] when the broker was closed, or the broker's
	// failure.
	Err() error
}

// Broker stores published events in topics and feeds them to
// subscribers. It is the seam between a [Server] and the engine holding
// the events: [MemoryBroker] keeps them in this process; others (Redis
// streams, NATS JetStream) can live behind the same interface.
// Package [github.com/coregx/stream/sse/ssetest] checks an
// implementation against the contract below.
//
// Topics. A topic is any string, "" included. Topics exist on first use
// and are independent: what happens in one never shows in another.
//
// IDs and sequence numbers. Publish stores the event in its topic and
// gives it a Seq, a number that strictly increases from one event to the
// next in the topic (starting above 0; steps larger than one are
// allowed). An event published with an ID keeps it verbatim; the
// publisher must keep its IDs unique in the topic. An event published
// without an ID gets one from the broker: a string that no other event of
// any topic of the broker has had, and that is greater than the ID the
// broker gave the previous such event of the topic when compared by
// length and then byte by byte (numeric order for decimal strings, which
// [MemoryBroker] uses). Publisher IDs that look like the broker's own
// (decimal numbers for MemoryBroker) may be mistaken for them.
//
// Order. Every reader sees the events of a topic in Seq order: History
// lists them so, and a subscription receives them so, one at a time.
// Nothing is promised about the order of events of different topics.
//
// History. A broker may retain only some of a topic's events, always the
// newest ones (bounded by count, bytes or age). History answers the
// events after a position given as an ID; an ID it does not know
// (malformed, from another topic, or pruned) makes it report a gap and
// list every retained event. The ID "" means the start of the topic, so
// a gap then means that events were pruned.
//
// Concurrency. All methods are safe for concurrent use. Concurrent
// publishers to one topic are serialised in some order that every reader
// then sees.
//
// Close. After Close, Publish, Head, History and Subscribe return an
// error matching [ErrBrokerClosed] and store or deliver nothing; open
// subscriptions end with that error. Close is idempotent and returns nil.
type Broker interface {
	// Publish stores ev in topic and returns it as stored, with its Seq
	// and its ID (ev's own, or one the broker assigned). ev is not
	// modified. An event that fails [Event.Validate] is refused with
	// [ErrInvalidEvent]. When Publish returns an error the event was not
	// stored, unless the error is ctx's, in which case it may have been.
	Publish(ctx context.Context, topic string, ev *Event) (Message, error)

	// Head returns the position of the newest event published to topic,
	// the zero Position if there is none.
	Head(ctx context.Context, topic string) (Position, error)

	// History returns the retained events of topic after the event
	// whose ID is afterID ("" for the start of the topic). See
	// [History] for the answer, including gaps.
	History(ctx context.Context, topic, afterID string) (History, error)

	// Subscribe calls fn with every event of topic whose Seq is greater
	// than after, in order, first those already retained and then those
	// published later, until the subscription ends: when ctx ends, when
	// Close is called, when the broker closes or fails. fn is never
	// called concurrently for one subscription, and must return quickly
	// without calling the broker: a broker may call it from the
	// publisher's goroutine (MemoryBroker does, so a slow fn slows
	// publishing to that topic), and a network broker may end a
	// subscription whose fn cannot keep up. When events after the
	// position have been pruned, Subscribe returns an error matching
	// [ErrGap] and subscribes to nothing.
	Subscribe(ctx context.Context, topic string, after uint64, fn func(Message)) (Subscription, error)

	// Close releases the broker; see the contract above.
	Close() error
}
