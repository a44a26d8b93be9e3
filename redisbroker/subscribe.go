package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coregx/stream/sse"
	"github.com/redis/go-redis/v9"
)

// sub is a subscription. Its mu is taken before the Broker's.
type sub struct {
	b     *Broker
	t     *topic
	after sse.Position
	fn    func(sse.Message)
	stop  func() bool
	done  chan struct{}

	mu     sync.Mutex    // held while fn runs
	cursor atomic.Uint64 // Seq of the last event fed; stored under mu
	err    error         // set once, under mu and b.mu
}

// Subscribe feeds fn the events of topic after the position; see
// [sse.Broker.Subscribe].
func (b *Broker) Subscribe(ctx context.Context, topicName string, after uint64, fn func(sse.Message)) (sse.Subscription, error) {
	if b.isClosed() {
		return nil, sse.ErrBrokerClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t := b.newTopic(topicName)
	sid := ""
	if after != sse.Newest && after != 0 {
		sid = idOf(after)
	}
	l, err := b.look(ctx, t, sid, "*", "", false)
	if err != nil {
		return nil, err
	}
	var start sse.Position
	switch {
	case after == sse.Newest:
		start = t.position(l, l.last)
	case after == 0:
		if l.maxDel != "0-0" {
			return nil, fmt.Errorf("%w: topic %q lost events from its start", sse.ErrGap, topicName)
		}
	case l.found == "":
		return nil, fmt.Errorf("%w: topic %q does not hold position %s", sse.ErrGap, topicName, sid)
	default:
		start = t.position(l, l.found)
	}
	s := &sub{b: b, after: start, fn: fn, done: make(chan struct{})}
	s.cursor.Store(start.Seq)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, sse.ErrBrokerClosed
	}
	tp := b.topics[topicName]
	if tp == nil {
		tp = t
		b.topics[topicName] = tp
	}
	s.t = tp
	tp.subs = append(tp.subs, s)
	b.gen++
	gen := b.gen
	b.cond.Broadcast()
	s.stop = context.AfterFunc(ctx, func() { s.end(context.Cause(ctx)) })
	b.mu.Unlock()
	b.wake(gen)
	return s, nil
}

// wake makes the reader start an XREAD that includes the topics of gen,
// cutting short the one it is blocked in. Without it the reader would
// notice at its next read, within readBlock.
func (b *Broker) wake(gen uint64) {
	for range 50 {
		b.mu.Lock()
		done, id := b.seen >= gen || b.closed, b.readerID
		b.mu.Unlock()
		if done || id == 0 {
			return
		}
		n, err := b.rdb.ClientUnblock(b.ctx, id).Result()
		if err != nil || n == 1 {
			return
		}
		time.Sleep(time.Millisecond) // the reader is between reads
	}
}

// end ends s with err, unless it ended already.
func (s *sub) end(err error) {
	s.mu.Lock() // waits for a callback in progress
	defer s.mu.Unlock()
	s.endLocked(err)
}

// endLocked ends s with err; s.mu must be held.
func (s *sub) endLocked(err error) {
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.err != nil {
		return
	}
	s.err = err
	t := s.t
	for i, x := range t.subs {
		if x == s {
			// A new slice: the reader may be going through the old
			// one (see dispatch).
			subs := make([]*sub, 0, len(t.subs)-1)
			t.subs = append(append(subs, t.subs[:i]...), t.subs[i+1:]...)
			break
		}
	}
	if len(t.subs) == 0 && b.topics[t.name] == t {
		delete(b.topics, t.name)
		b.gen++
	}
	close(s.done)
}

// After returns the position the feed started after.
func (s *sub) After() sse.Position { return s.after }

// Done is closed when the subscription ends.
func (s *sub) Done() <-chan struct{} { return s.done }

// Err says why the subscription ended, or nil.
func (s *sub) Err() error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.err
}

// readBlock bounds each blocking read, so that the reader notices a
// topic added while it was not blocked yet (see wake) and a dead
// connection.
const readBlock = time.Second

// readCount bounds the entries one read returns per topic.
const readCount = 512

// read is the reader: one blocking XREAD over every followed topic, on
// one connection, feeding the subscriptions in order.
func (b *Broker) read() {
	defer close(b.done)
	var conn *redis.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	failures := 0
	for {
		b.mu.Lock()
		for len(b.topics) == 0 && !b.closed {
			b.cond.Wait()
		}
		if b.closed {
			b.mu.Unlock()
			return
		}
		b.seen = b.gen
		var keys, ids []string
		byKey := make(map[string]*topic, len(b.topics))
		from := make(map[string]uint64, len(b.topics))
		for _, t := range b.topics {
			low := uint64(0)
			for i, s := range t.subs {
				if c := s.cursor.Load(); i == 0 || c < low {
					low = c
				}
			}
			keys, ids = append(keys, t.key), append(ids, idOf(low))
			byKey[t.key], from[t.key] = t, low
		}
		b.mu.Unlock()

		if conn == nil {
			conn = b.rdb.Conn()
			id, err := conn.ClientID(b.ctx).Result()
			if err != nil {
				conn.Close()
				conn = nil
				if !b.fail(&failures, err) {
					return
				}
				continue
			}
			b.mu.Lock()
			b.readerID = id
			b.mu.Unlock()
		}
		res, err := conn.XRead(b.ctx, &redis.XReadArgs{Streams: append(keys, ids...), Count: readCount, Block: readBlock}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			b.mu.Lock()
			b.readerID = 0
			b.mu.Unlock()
			conn.Close()
			conn = nil
			if !b.fail(&failures, err) {
				return
			}
			continue
		}
		if failures > 0 {
			failures = 0
			b.logf(slog.LevelInfo, "redisbroker: reading again")
		}
		b.dispatch(res, byKey, from)
	}
}

// dispatch feeds the entries of one read, of the streams read after
// from, to the subscriptions of their topics. It takes each topic's
// subscriber list under b.mu for every entry, so that a subscription
// that joins meanwhile gets the entries after its position, but does not
// copy it: a topic's subs is copy-on-write (an end makes a new slice,
// and an append never writes where a taken slice reaches).
func (b *Broker) dispatch(res []redis.XStream, byKey map[string]*topic, from map[string]uint64) {
	for _, st := range res {
		t, low := byKey[st.Stream], from[st.Stream]
		for _, e := range st.Messages {
			m, ok := t.message(e)
			if !ok {
				continue
			}
			b.mu.Lock()
			subs := t.subs
			b.mu.Unlock()
			for _, s := range subs {
				s.feed(m, low)
			}
		}
	}
}

// feed calls the callback with m, read after Seq from, unless s ended,
// had it already, or starts before from: a subscription that joined
// with an older position than the read gets its events from the next
// read, which starts from its position.
func (s *sub) feed(m sse.Message, from uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cursor.Load()
	if s.err != nil || m.Seq <= c || c < from {
		return
	}
	s.fn(m)
	s.cursor.Store(m.Seq)
}

// fail ends every subscription after the reader lost Redis, and waits
// before the next attempt; it reports false once the broker closed.
func (b *Broker) fail(failures *int, err error) bool {
	if b.ctx.Err() != nil {
		return false
	}
	*failures++
	if *failures == 1 {
		b.logf(slog.LevelError, "redisbroker: reading failed, ending subscriptions", "err", err)
	}
	b.endAll(unavailable(b.ctx, err))
	d := min(50*time.Millisecond<<min(*failures, 7), 5*time.Second)
	d += rand.N(d / 2)
	select {
	case <-time.After(d):
		return true
	case <-b.ctx.Done():
		return false
	}
}

// endAll ends every subscription with err.
func (b *Broker) endAll(err error) {
	b.mu.Lock()
	var subs []*sub
	for _, t := range b.topics {
		subs = append(subs, t.subs...)
	}
	b.mu.Unlock()
	for _, s := range subs {
		s.stop()
		s.end(err)
	}
}

// Close ends the subscription.
func (s *sub) Close() error {
	if s.stop != nil {
		s.stop()
	}
	s.end(context.Canceled)
	return nil
}
