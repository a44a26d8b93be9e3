package natsbroker

import (
	"context"
	"fmt"
	"sync"

	"github.com/coregx/stream/sse"
	"github.com/nats-io/nats.go/jetstream"
)

// sub is a subscription. Its mu is taken before the Broker's.
type sub struct {
	b       *Broker
	topic   string
	subject string
	after   sse.Position
	fn      func(sse.Message)
	stop    func() bool
	done    chan struct{}

	mu       sync.Mutex // held while fn runs
	cursor   uint64
	catching bool          // reading the past: live events wait in held
	held     []sse.Message // live events that came while catching up
	err      error         // set once, under mu and b.mu
}

// Subscribe feeds fn the events of topic after the position; see
// [sse.Broker.Subscribe].
func (b *Broker) Subscribe(ctx context.Context, topic string, after uint64, fn func(sse.Message)) (sse.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, era, err := b.state()
	if err != nil {
		return nil, err
	}
	if err := b.startConsumer(ctx, s); err != nil {
		return nil, err
	}
	subj := b.subjectOf(topic)
	// Registered first, so that nothing published from now on is missed:
	// the live events wait while the past is read.
	sb := &sub{b: b, topic: topic, subject: subj, fn: fn, done: make(chan struct{}), catching: true}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, sse.ErrBrokerClosed
	}
	b.subs[subj] = append(b.subs[subj], sb)
	sb.stop = context.AfterFunc(ctx, func() { sb.end(context.Cause(ctx)) })
	b.mu.Unlock()
	past, err := b.start(ctx, s, era, sb, after)
	if err != nil {
		sb.stop()
		sb.end(err)
		return nil, err
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.err != nil {
		return sb, nil // ended meanwhile: Done and Err say so
	}
	for _, m := range append(past, sb.held...) {
		if m.Seq > sb.cursor {
			sb.fn(m)
			sb.cursor = m.Seq
		}
	}
	sb.held, sb.catching = nil, false
	return sb, nil
}

// start finds where sb starts and the retained events after it.
func (b *Broker) start(ctx context.Context, s jetstream.Stream, era string, sb *sub, after uint64) ([]sse.Message, error) {
	last, first, err := b.edges(ctx, s, sb.subject)
	if err != nil {
		return nil, err
	}
	gap := func() error {
		return fmt.Errorf("%w: topic %q does not hold position %d", sse.ErrGap, sb.topic, after)
	}
	if last == nil {
		if after != 0 && after != sse.Newest {
			return nil, gap()
		}
		return nil, nil
	}
	pruned := prevOf(first)
	switch {
	case after == sse.Newest:
		sb.after = b.position(last, era)
		sb.cursor = last.Sequence
		return nil, nil
	case after == 0:
		if pruned.Seq != 0 {
			return nil, gap()
		}
	case after == pruned.Seq:
		sb.after = pruned
	case after < first.Sequence || after > last.Sequence:
		return nil, gap()
	default:
		m, err := s.GetMsg(ctx, after)
		if err != nil || m.Subject != sb.subject {
			return nil, gap()
		}
		sb.after = b.position(m, era)
	}
	sb.cursor = sb.after.Seq
	msgs, err := b.list(ctx, s, sb.subject, after+1, last.Sequence)
	if err != nil {
		return nil, err
	}
	out := make([]sse.Message, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, b.raw(sb.topic, m, era))
	}
	return out, nil
}

// startConsumer starts the broker's one ordered consumer, if it is not
// running, from the stream's next sequence.
func (b *Broker) startConsumer(ctx context.Context, s jetstream.Stream) error {
	b.mu.Lock()
	running := b.consumer != nil
	b.mu.Unlock()
	if running {
		return nil
	}
	info, err := s.Info(ctx)
	if err != nil {
		return unavailable(ctx, err)
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{b.subject + ".>"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    info.State.LastSeq + 1,
	})
	if err != nil {
		return unavailable(ctx, err)
	}
	cc, err := c.Consume(b.dispatch)
	if err != nil {
		return unavailable(ctx, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.consumer != nil || b.closed {
		cc.Stop() // another Subscribe won, or Close
		return nil
	}
	b.consumer = cc
	return nil
}

// dispatch feeds a live message to the subscriptions of its subject.
func (b *Broker) dispatch(msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		return
	}
	b.mu.Lock()
	subs := append([]*sub(nil), b.subs[msg.Subject()]...)
	era := b.era
	b.mu.Unlock()
	if len(subs) == 0 {
		return
	}
	m := b.message(subs[0].topic, md.Sequence.Stream, msg.Headers(), msg.Data(), md.Timestamp, era)
	for _, s := range subs {
		s.feed(m)
	}
}

// feed hands m to s: held while s reads the past, else to the callback
// unless s ended or had it already.
func (s *sub) feed(m sse.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.err != nil:
	case s.catching:
		s.held = append(s.held, m)
	case m.Seq > s.cursor:
		s.fn(m)
		s.cursor = m.Seq
	}
}

// end ends s with err, unless it ended already.
func (s *sub) end(err error) {
	s.mu.Lock() // waits for a callback in progress
	defer s.mu.Unlock()
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.err != nil {
		return
	}
	s.err = err
	list := b.subs[s.subject]
	for i, x := range list {
		if x == s {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(b.subs, s.subject)
	} else {
		b.subs[s.subject] = list
	}
	s.held = nil
	close(s.done)
}

// After returns the position the feed started after.
func (s *sub) After() sse.Position { return s.after }

// Close ends the subscription.
func (s *sub) Close() error {
	s.stop()
	s.end(context.Canceled)
	return nil
}

// Done is closed when the subscription ends.
func (s *sub) Done() <-chan struct{} { return s.done }

// Err says why the subscription ended, or nil.
func (s *sub) Err() error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.err
}

// endAll ends every subscription with err.
func (b *Broker) endAll(err error) {
	b.mu.Lock()
	var subs []*sub
	for _, list := range b.subs {
		subs = append(subs, list...)
	}
	b.mu.Unlock()
	for _, s := range subs {
		s.stop()
		s.end(err)
	}
}
