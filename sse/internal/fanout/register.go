package fanout

import (
	"fmt"
	"slices"
)

// Registering and removing clients.

// Register adds conn, a stream of a Server, to the group of topics
// (sorted, distinct; each must have a subscription, see SetLive). filter,
// when not nil, is given each live event's value (see Deliver) and
// decides whether conn gets it. A resuming client gets no live event
// until FinishResume; those that come meanwhile are kept for it.
func (h *Engine) Register(conn Sink, topics []string, filter func(any) bool, resuming bool) error {
	_, err := h.register(conn, nil, topics, filter, resuming)
	return err
}

// register adds conn to group g (nil: the group of topics, made as
// needed); see Register.
func (h *Engine) register(conn Sink, g *group, topics []string, filter func(any) bool, resuming bool) (*client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.draining {
		return nil, h.cfg.Closed
	}
	if c := h.bySink[conn]; c != nil {
		return c, nil
	}
	if g == nil {
		for _, t := range topics {
			if !h.live[t] {
				return nil, fmt.Errorf("%w: topic %q has no subscription", h.cfg.Closed, t)
			}
		}
		g = h.groupLocked(topics)
	}
	h.warnNoDeadline(conn)
	c := &client{conn: conn, hub: h, grp: g, index: int32(len(g.clients)), beatAt: -1, filter: filter, pos: -1, posOut: -1}
	if !conn.Watch(c) {
		return nil, conn.Err()
	}
	h.bySink[conn] = c
	if resuming {
		c.pending = new([]any)
	}
	g.clients = append(g.clients, c)
	h.nclients++
	h.scheduleBeatLocked(c)
	h.armPollLocked()
	return c, nil
}

// RegisterAll adds conn to a Hub's only group: it gets every event
// broadcast from now on. It returns Config.Closed once the engine is
// closed or shutting down, and conn's error when conn has ended.
func (h *Engine) RegisterAll(conn Sink) error {
	_, err := h.register(conn, h.def, nil, nil, false)
	return err
}

// groupLocked returns the group of topics (sorted, distinct), making it.
func (h *Engine) groupLocked(topics []string) *group {
	key := groupKey(topics)
	g := h.groups[key]
	if g == nil {
		g = &group{key: key, topics: topics}
		h.groups[key] = g
		for _, t := range topics {
			h.byTopic[t] = append(h.byTopic[t], g)
		}
	}
	return g
}

// groupKey names a set of topics unambiguously.
func groupKey(topics []string) string {
	var b []byte
	for _, t := range topics {
		b = fmt.Appendf(b, "%d:%s,", len(t), t)
	}
	return string(b)
}

// eachClientLocked calls f for every client, parked ones included; h.mu
// must be held, and f must not add or remove clients, nor park or unpark
// them (see allClientsLocked).
func (h *Engine) eachClientLocked(f func(*client)) {
	for _, c := range h.def.clients {
		f(c)
	}
	h.def.eachParkedLocked(f)
	for _, g := range h.groups {
		for _, c := range g.clients {
			f(c)
		}
		g.eachParkedLocked(f)
	}
}

// allClientsLocked returns every client; h.mu must be held.
func (h *Engine) allClientsLocked() []*client {
	list := make([]*client, 0, h.nclients)
	h.eachClientLocked(func(c *client) { list = append(list, c) })
	return list
}

// StreamEnded makes c the Watcher of its stream.
func (c *client) StreamEnded() { c.hub.clientClosed(c) }

// removeLocked drops c from its group and reports whether it was there;
// h.mu must be held.
func (h *Engine) removeLocked(c *client) bool {
	g := c.grp
	switch {
	case c.parked.Load():
		h.unparkedLocked(c)
	case c.index < 0 || int(c.index) >= len(g.clients) || g.clients[c.index] != c:
		return false // removed already, or the hub closed
	default:
		last := len(g.clients) - 1
		g.clients[c.index] = g.clients[last]
		g.clients[c.index].index = c.index
		g.clients[last] = nil
		g.clients = g.clients[:last]
	}
	h.dropBeatLocked(c)
	delete(h.bySink, c.conn)
	h.nclients--
	if len(g.clients) == 0 && g.park.live == 0 && g != h.def {
		delete(h.groups, g.key)
		for _, t := range g.topics {
			gs := slices.DeleteFunc(h.byTopic[t], func(x *group) bool { return x == g })
			if len(gs) == 0 {
				delete(h.byTopic, t)
			} else {
				h.byTopic[t] = gs
			}
		}
	}
	if h.draining && h.nclients == 0 {
		close(h.drained)
		h.drained = nil
	}
	return true
}

// dropQueueLocked empties c's queue, for a client being removed; c.mu
// must be held.
func (h *Engine) dropQueueLocked(c *client) {
	c.removed = true
	h.queued.Add(-c.bytes)
	clear(c.queue)
	putQueue(c.queue)
	c.bytes, c.queue, c.pending, c.extra = 0, nil, nil, 0
	c.pos, c.ownQ = -1, 0
}

// detach drops c from the hub and its queue, and reports whether it was
// still there.
func (h *Engine) detach(c *client) bool {
	h.mu.Lock()
	ok := h.removeLocked(c)
	h.mu.Unlock()
	if ok {
		c.mu.Lock()
		h.dropQueueLocked(c)
		c.mu.Unlock()
	}
	return ok
}

// Unregister removes conn and waits for a write to it in progress. It
// does not end conn.
func (h *Engine) Unregister(conn Sink) {
	h.mu.RLock()
	c := h.bySink[conn]
	h.mu.RUnlock()
	if c == nil || !h.detach(c) {
		waitWrites(conn) // dropped meanwhile: its end may still run
		return
	}
	conn.Unwatch(c)
	if conn.Err() != nil {
		// The stream ended and its handler got here before the hub
		// was told (see clientClosed), which then finds it gone.
		h.countEnded(c)
	}
	// Wait for a writer that took the queue before it was dropped.
	waitWrites(conn)
}

// clientClosed is called when c's stream ended. It may run on a writer
// that holds the stream's write lock, so it must not wait for writes.
func (h *Engine) clientClosed(c *client) {
	if h.detach(c) {
		h.countEnded(c)
	}
}

// countEnded counts c, whose stream ended on its own and was detached.
func (h *Engine) countEnded(c *client) {
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if closing {
		h.shutdownDisconnects.Add(1)
	} else {
		h.clientDisconnects.Add(1)
	}
}

// waitWrites returns once no write to conn is in progress.
func waitWrites(conn Sink) {
	conn.LockWrite()
	conn.UnlockWrite()
}
