package fanout

import (
	"fmt"
	"slices"
	"time"
)

// The engine's side of a Server: topics, live delivery from broker
// subscriptions, and replay to resuming clients. The Server's own part
// (brokers, subscriptions, encoding events and cursors) is in the sse
// package's server.go.

// Head is a position in a topic: the sequence number and ID of an event.
type Head struct {
	Seq uint64
	ID  string
}

// SetLive records that topic has a subscription starting after head.
func (h *Engine) SetLive(topic string, head Head) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if head.Seq > h.heads[topic].Seq {
		h.heads[topic] = head
		if len(h.fedWaits) > 0 {
			h.wakeFedLocked(topic, head.Seq)
		}
	}
	h.live[topic] = true
}

// A FedWaiter is a resuming request waiting for the live feed of a topic
// to bring the event whose Seq is seq: whoever advances the topic's head
// to seq or beyond closes fed and drops the waiter. The waiters of a
// topic are kept by seq, so that a delivery looks at those it releases
// and at one more, however many wait (a crowd resuming on a lagging
// node).
type FedWaiter struct {
	seq uint64
	fed chan struct{}
}

// Fed returns a channel closed once the live feed brought the event w
// waits for.
func (w *FedWaiter) Fed() <-chan struct{} { return w.fed }

// AwaitFed returns nil when the live feed of topic has brought the event
// whose Seq is seq, or a later one. Otherwise it returns a waiter whose
// Fed channel is closed once it has; the caller that stops waiting
// before must pass it to CancelFed.
func (h *Engine) AwaitFed(topic string, seq uint64) *FedWaiter {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.heads[topic].Seq >= seq {
		return nil
	}
	w := &FedWaiter{seq: seq, fed: make(chan struct{})}
	if h.fedWaits == nil {
		h.fedWaits = make(map[string][]*FedWaiter)
	}
	ws := h.fedWaits[topic]
	// After those waiting for seq already.
	i, _ := slices.BinarySearchFunc(ws, seq, func(w *FedWaiter, seq uint64) int {
		if w.seq <= seq {
			return -1
		}
		return 1
	})
	h.fedWaits[topic] = slices.Insert(ws, i, w)
	return w
}

// fedSearch returns the index of the first of ws waiting for seq or a
// later one.
func fedSearch(ws []*FedWaiter, seq uint64) int {
	i, _ := slices.BinarySearchFunc(ws, seq, func(w *FedWaiter, seq uint64) int {
		if w.seq < seq {
			return -1
		}
		return 1
	})
	return i
}

// CancelFed drops w, a waiter on topic that stops waiting. It reports
// false when w was released already.
func (h *Engine) CancelFed(topic string, w *FedWaiter) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	ws := h.fedWaits[topic]
	for i := fedSearch(ws, w.seq); i < len(ws) && ws[i].seq == w.seq; i++ {
		if ws[i] == w {
			h.setFedWaitsLocked(topic, slices.Delete(ws, i, i+1))
			return true
		}
	}
	return false
}

// wakeFedLocked releases the waiters on topic whose event the feed has
// now brought: its head is seq. Delivery calls it only when some request
// waits, on any topic.
func (h *Engine) wakeFedLocked(topic string, seq uint64) {
	ws := h.fedWaits[topic]
	n := 0
	for n < len(ws) && ws[n].seq <= seq {
		close(ws[n].fed)
		n++
	}
	if n > 0 {
		h.setFedWaitsLocked(topic, slices.Delete(ws, 0, n))
	}
}

// setFedWaitsLocked stores ws as the waiters on topic, forgetting the
// topic when none is left.
func (h *Engine) setFedWaitsLocked(topic string, ws []*FedWaiter) {
	if len(ws) == 0 {
		delete(h.fedWaits, topic)
	} else {
		h.fedWaits[topic] = ws
	}
}

// ForgetTopic drops what the engine keeps of topic once no client
// follows it and its subscription is ending.
func (h *Engine) ForgetTopic(topic string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.byTopic[topic]) == 0 {
		delete(h.live, topic)
		delete(h.heads, topic)
	}
}

// DropTopic disconnects the clients of topic, whose subscription ended
// with err; they resume when they reconnect. With retry (the broker lost
// its service), each stream first gets what was queued for it and a
// retry hint (the shutdown delay with jitter), so that the clients come
// back spread over time rather than all at once, and resume without a
// gap.
func (h *Engine) DropTopic(topic string, err error, retry bool) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	delete(h.live, topic)
	var cs []*client
	for _, g := range h.byTopic[topic] {
		cs = append(cs, g.clients...)
		g.eachParkedLocked(func(c *client) { cs = append(cs, c) })
	}
	if retry && !h.draining {
		// The events queued are good: write them, then a retry hint
		// that spreads the reconnections over the outage, and end.
		var wake []*client
		for _, c := range cs {
			c.mu.Lock()
			if !c.removed && !c.closing {
				c.closing = true
				if h.queueExtraLocked(c, h.retryHint()) {
					wake = append(wake, c)
				}
			}
			c.mu.Unlock()
		}
		h.pool.push(wake)
		h.mu.Unlock()
		return
	}
	for _, c := range cs {
		h.removeLocked(c)
		c.mu.Lock()
		h.dropQueueLocked(c)
		c.mu.Unlock()
	}
	h.mu.Unlock()
	for _, c := range cs {
		c.conn.Unwatch(c)
		h.clientDisconnects.Add(1)
		c.conn.End(fmt.Errorf("%w: subscription to topic %q ended: %w", h.cfg.Ended, topic, err))
	}
}

// Item is a live event of a Server's topic, as Deliver takes it.
type Item struct {
	Topic string
	Head  Head    // its position in the topic
	Value any     // what the clients' filters are given, and what resuming clients keep
	Enc   Encoder // encodes it
}

// An Encoder encodes a live event. Wire returns it encoded for the
// clients of a set of topics (sorted), given the ID of the newest event in
// each topic (the event's own in Item.Topic); Deliver calls it once per
// group of clients, under the engine's lock. An interface rather than a
// func, so that one record per event can hold the event, its encoding and
// the method: delivering then allocates that record only.
type Encoder interface {
	Wire(topics []string, id func(topic string) string) []byte
}

// Deliver sends it, a live event from a broker subscription, to the
// clients following its topic. It is called for each topic in order; an
// event not after the topic's head is ignored.
func (h *Engine) Deliver(it Item) {
	h.mu.Lock()
	if h.closed || h.draining || it.Head.Seq <= h.heads[it.Topic].Seq {
		// Clients of a draining server resume what they miss.
		h.mu.Unlock()
		return
	}
	h.heads[it.Topic] = it.Head
	if len(h.fedWaits) > 0 {
		h.wakeFedLocked(it.Topic, it.Head.Seq)
	}
	now := time.Now().UnixNano()
	wake, evict := h.toWake[:0], h.evict[:0]
	for _, g := range h.byTopic[it.Topic] {
		msg := it.Enc.Wire(g.topics, h.headID)
		wake, evict = h.fanoutLocked(g, msg, it.Value, now, wake, evict)
	}
	h.finishFanout(wake, evict)
}

// headIDLocked returns the ID of the newest event of topic; h.mu must be
// held. Engine.headID is it, made once (see New), so that handing it to
// Encoder.Wire allocates nothing.
func (h *Engine) headIDLocked(topic string) string { return h.heads[topic].ID }

// FinishResume makes conn, a client registered as resuming, live: it
// queues what replay returns (complete events, in chunks; events counts
// them), before the live events that come from then on. replay is given
// the values of the live events that came since conn registered, and
// the head of each topic; it runs under the engine's lock.
func (h *Engine) FinishResume(conn Sink, replay func(pending []any, head func(topic string) Head) (chunks [][]byte, events uint64)) {
	h.mu.Lock()
	c := h.bySink[conn]
	if c == nil {
		h.mu.Unlock()
		return
	}
	c.mu.Lock()
	var pending []any
	if c.pending != nil {
		pending = *c.pending
	}
	c.pending = nil
	if c.removed || c.closing {
		c.mu.Unlock()
		h.mu.Unlock()
		return
	}
	chunks, n := replay(pending, func(topic string) Head { return h.heads[topic] })
	h.replayed.Add(n)
	wake := h.toWake[:0]
	if h.queueExtraLocked(c, chunks...) {
		wake = append(wake, c)
	}
	c.mu.Unlock()
	h.finishFanout(wake, h.evict[:0])
}
