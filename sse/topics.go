package sse

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The engine's side of a Server: topics, live delivery from broker
// subscriptions, and replay to resuming clients. server.go calls these
// and the methods of engine.go; it touches no field of hubCore or client.

// setLive records that topic has a subscription starting after head.
func (h *hubCore) setLive(topic string, head Position) {
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

// A fedWaiter is a resuming request waiting for the live feed of a topic
// to bring the event whose Seq is seq: whoever advances the topic's head
// to seq or beyond closes fed and drops the waiter. The waiters of a
// topic are kept by seq, so that a delivery looks at those it releases
// and at one more, however many wait (a crowd resuming on a lagging
// node).
type fedWaiter struct {
	seq uint64
	fed chan struct{}
}

// awaitFed returns nil when the live feed of topic has brought the event
// whose Seq is seq, or a later one. Otherwise it returns a waiter whose
// fed channel is closed once it has; the caller that stops waiting
// before must pass it to cancelFed.
func (h *hubCore) awaitFed(topic string, seq uint64) *fedWaiter {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.heads[topic].Seq >= seq {
		return nil
	}
	w := &fedWaiter{seq: seq, fed: make(chan struct{})}
	if h.fedWaits == nil {
		h.fedWaits = make(map[string][]*fedWaiter)
	}
	ws := h.fedWaits[topic]
	// After those waiting for seq already.
	i, _ := slices.BinarySearchFunc(ws, seq, func(w *fedWaiter, seq uint64) int {
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
func fedSearch(ws []*fedWaiter, seq uint64) int {
	i, _ := slices.BinarySearchFunc(ws, seq, func(w *fedWaiter, seq uint64) int {
		if w.seq < seq {
			return -1
		}
		return 1
	})
	return i
}

// cancelFed drops w, a waiter on topic that stops waiting. It reports
// false when w was released already.
func (h *hubCore) cancelFed(topic string, w *fedWaiter) bool {
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
func (h *hubCore) wakeFedLocked(topic string, seq uint64) {
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
func (h *hubCore) setFedWaitsLocked(topic string, ws []*fedWaiter) {
	if len(ws) == 0 {
		delete(h.fedWaits, topic)
	} else {
		h.fedWaits[topic] = ws
	}
}

// forgetTopic drops what the engine keeps of topic once no client
// follows it and its subscription is ending.
func (h *hubCore) forgetTopic(topic string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.byTopic[topic]) == 0 {
		delete(h.live, topic)
		delete(h.heads, topic)
	}
}

// dropTopic disconnects the clients of topic, whose subscription ended
// with err; they resume when they reconnect. When the broker lost its
// service, each stream first gets what was queued for it and a retry hint
// (the shutdown delay with jitter), so that the clients come back spread
// over time rather than all at once, and resume without a gap.
func (h *hubCore) dropTopic(topic string, err error) {
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
	if errors.Is(err, ErrBrokerUnavailable) && !h.draining {
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
		c.conn.unwatch(c)
		h.clientDisconnects.Add(1)
		c.conn.end(fmt.Errorf("%w: subscription to topic %q ended: %w", ErrConnectionClosed, topic, err))
	}
}

// deliver sends m, a live event from a broker subscription, to the
// clients following its topic. It is called for each topic in order.
func (h *hubCore) deliver(m Message) {
	h.mu.Lock()
	if h.closed || h.draining || m.Seq <= h.heads[m.Topic].Seq {
		// Clients of a draining server resume what they miss.
		h.mu.Unlock()
		return
	}
	h.heads[m.Topic] = m.Position()
	if len(h.fedWaits) > 0 {
		h.wakeFedLocked(m.Topic, m.Seq)
	}
	now := time.Now().UnixNano()
	wake, evict := h.toWake[:0], h.evict[:0]
	var plain []byte
	for _, g := range h.byTopic[m.Topic] {
		var msg []byte
		if len(g.topics) == 1 {
			if plain == nil {
				plain = m.Event.appendWire(make([]byte, 0, m.Event.wireSize()))
			}
			msg = plain
		} else {
			ev := m.Event
			ev.ID = cursorID(g.topics, func(i int) string { return h.heads[g.topics[i]].ID })
			msg = ev.appendWire(make([]byte, 0, ev.wireSize()))
		}
		wake, evict = h.fanoutLocked(g, msg, &m, now, wake, evict)
	}
	h.finishFanout(wake, evict)
}

// finishResume queues for the resuming client c the gap events and the
// retained events of hists, merged with the live events that came
// meanwhile, and makes c live. ids are the positions c asked for.
func (h *hubCore) finishResume(c *client, topics, ids []string, hists []History) {
	h.mu.Lock()
	c.mu.Lock()
	var pending []Message
	if c.pending != nil {
		pending = *c.pending
	}
	c.pending = nil
	if c.removed || c.closing {
		c.mu.Unlock()
		h.mu.Unlock()
		return
	}
	multi := len(topics) > 1
	lists := make([][]Message, len(topics))
	cur := make([]string, len(topics)) // what the client has seen, per topic
	for i, t := range topics {
		hist, head := hists[i], h.heads[t]
		last := hist.After.Seq
		var list []Message
		for _, m := range hist.Messages {
			// Later events come live: the client is live from now on.
			if m.Seq > last && m.Seq <= head.Seq {
				list, last = append(list, m), m.Seq
			}
		}
		for _, m := range pending {
			if m.Topic == t && m.Seq > last {
				list, last = append(list, m), m.Seq
			}
		}
		lists[i] = list
		switch {
		case len(list) == 0:
			cur[i] = head.ID
		case !hist.Gap:
			cur[i] = ids[i]
		}
	}

	var chunks [][]byte
	var buf []byte
	add := func(ev Event) {
		if len(buf) > 0 && len(buf)+ev.wireSize() > maxWrite {
			chunks, buf = append(chunks, buf), nil
		}
		buf = ev.appendWire(buf)
	}
	for i, t := range topics {
		if !hists[i].Gap {
			continue
		}
		data := hists[i].Oldest.ID
		if multi {
			data = cursorID([]string{t}, func(int) string { return data })
		}
		add(Event{Type: GapEventType, Data: data})
	}
	var n uint64
	for i := range topics {
		for j := range lists[i] {
			m := &lists[i][j]
			cur[i] = m.Event.ID
			if c.filter != nil && !c.filter(m) {
				continue
			}
			ev := m.Event
			if multi {
				ev.ID = cursorID(topics, func(i int) string { return cur[i] })
			}
			add(ev)
			n++
		}
	}
	if len(buf) > 0 {
		chunks = append(chunks, buf)
	}
	h.replayed.Add(n)
	wake := h.toWake[:0]
	if h.queueExtraLocked(c, chunks...) {
		wake = append(wake, c)
	}
	c.mu.Unlock()
	h.finishFanout(wake, h.evict[:0])
}

// cursorID writes the position in each of the sorted topics, id(i) being
// the ID in topics[i], as a cursor: "a=1&b=2".
func cursorID(topics []string, id func(i int) string) string {
	var b strings.Builder
	for i, t := range topics {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(t))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(id(i)))
	}
	return b.String()
}
