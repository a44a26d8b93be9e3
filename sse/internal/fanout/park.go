package fanout

import "math"

// Parked clients.
//
// A client whose write is blocked (its writer was handed off: the client
// stopped reading, for a moment or for good) would otherwise cost every
// fan-out a visit and a queue entry, and thousands of them make each
// broadcast walk thousands of queues that do not drain. So the first
// fan-out after such a write was handed off parks the client instead: it
// leaves its group's list of clients, and the group keeps one log of the
// events fanned out since, shared by every client parked in it, each with
// its place in the log. A fan-out then costs one log entry, however many
// clients are parked. A client that waits for a writer with parkAfter
// events queued is parked too: the writers are behind, and it gets its
// events from the log when its turn comes.
//
// A parked client's writer, once its write returns, takes the events from
// its place on into the client's queue, one write's worth at a time, and
// puts the client back among the others once it has them all
// (unparkLocked), all under Engine.mu, so that no event is lost or
// repeated between the log and the queue. Anything else that must queue
// for a parked client (a retry hint, a shutdown) unparks it first, so
// that its events keep their order.
//
// Clients that are resuming are not parked, nor, under a dropping
// policy, clients with a filter. A parked client's queue is the events of
// the log from its place on that pass its filter (the log keeps each
// event's Item.Value for it). Under Disconnect, it is disconnected as too
// slow once the log holds more than QueueSize events from its place on
// and its write is blocked: a client with a filter is counted as if it
// took every event, so that thousands of subscribers that stopped reading
// and whose filter passes few events still cost nothing per fan-out, and
// one blocked for slowStall goes once QueueSize events went by (a
// Server's client resumes from its Last-Event-ID). Under a dropping
// policy, its oldest events are dropped instead, an eighth of a queue's
// worth at a time (see dropParkedLocked). The parked clients are kept in a heap by their places in the
// log, so that the one furthest behind is the first to check, and the
// log is kept from its place on.
//
// Guarded by Engine.mu: the log, the parked list, client.cursor and
// client.parked, which is atomic so that the client's writer can tell
// without it whether it has to take it (drain).

// parkLog is a group's log of events for its parked clients.
type parkLog struct {
	events [][]byte // events[off:] are the log; the first has sequence number base
	pos    []int64  // each event's position in the group's events (group.fanned before it)
	at     []int64  // when each was fanned out, in Unix nanoseconds
	vals   []any    // each event's Item.Value while clients with a filter are parked, for their filters
	off    int
	base   int64
	bytes  int64 // what the log is charged in Engine.queued

	parked   []parkEntry // a min-heap by cursor, stale entries included (see parkEntry)
	live     int         // clients parked now
	filtered int         // of those, clients with a filter
}

// parkEntry is a client parked at cursor, the sequence number of the first
// event it needs from the log. It is stale once the client left the log
// or moved on in it: a client's cursor only grows, and each place it
// takes gets an entry of its own.
type parkEntry struct {
	c      *client
	cursor int64
}

func (e parkEntry) live(g *group) bool {
	return e.c.parked.Load() && e.c.cursor == e.cursor && e.c.grp == g
}

// end is the sequence number the next event logged gets.
func (l *parkLog) end() int64 { return l.base + int64(len(l.events)-l.off) }

// push adds e to the heap of parked clients.
func (l *parkLog) push(e parkEntry) {
	l.parked = append(l.parked, e)
	h := l.parked
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if h[p].cursor <= h[i].cursor {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

// pop removes the heap's first entry.
func (l *parkLog) pop() {
	n := len(l.parked) - 1
	l.parked[0] = l.parked[n]
	l.parked[n] = parkEntry{}
	l.parked = l.parked[:n]
	l.down(0)
}

func (l *parkLog) down(i int) {
	h := l.parked
	for {
		m, a, b := i, 2*i+1, 2*i+2
		if a < len(h) && h[a].cursor < h[m].cursor {
			m = a
		}
		if b < len(h) && h[b].cursor < h[m].cursor {
			m = b
		}
		if m == i {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// parkableLocked reports whether c may be parked in place of being
// queued an event: its write was handed off, or it waits for a writer
// with parkAfter events queued (parkNarrow when narrow), it is not
// resuming, and it has no filter unless under Disconnect (a dropping
// policy counts the events that pass it; see dropParkedLocked). c.mu
// must be held.
func (h *Engine) parkableLocked(c *client) bool {
	return (c.stuck.Load() || len(c.queue) >= parkAfter || len(c.queue) >= parkNarrow && c.conn.Narrow()) &&
		c.pending == nil && (c.filter == nil || h.cfg.Policy == Disconnect)
}

// narrowWrite is the most a narrow client's writer takes from the log at
// once: such a client is written in probes (the sse package's owned_linux.go) and found
// behind after a few KiB when it does not read, so what a writer takes
// beyond that only costs copies under Engine.mu, thousands of times when
// thousands of such clients connect at once.
const narrowWrite = 16 << 10

// parkNarrow is parkAfter for a narrow client (see Sink.Narrow), which
// the writers serve after the others: when thousands of clients that
// never read connect with small windows, the fan-outs stop visiting them
// after an event or two, not after parkAfter.
const parkNarrow = 2

// parkAfter is the queue length from which a client waiting for a writer
// is parked too: when the writers are behind (thousands of sockets
// filling at once, a burst to many clients), the fan-outs stop visiting
// the clients they have not reached, and each client's writer takes its
// events from the log in one copy. A client that keeps up never has that
// many queued.
const parkAfter = 64

// logLocked ends a fan-out of msg, the event whose Item.Value is m (nil
// for a Hub), at position pos, to group g that parked the clients park (their flag set, at the sequence number msg gets
// in the log): it logs msg when any client is parked in g, takes those out
// of the group's list, and disconnects the client parked longest while its
// queue is full, appending it to evict; h.mu must be held.
func (h *Engine) logLocked(g *group, msg []byte, m any, pos, now int64, park, evict []*client) []*client {
	l := &g.park
	if len(park) == 0 && l.live == 0 {
		return evict
	}
	seq := l.end()
	l.events = append(l.events, msg)
	l.pos = append(l.pos, pos)
	l.at = append(l.at, now)
	for _, c := range park {
		if c.filter != nil {
			l.filtered++
		}
	}
	if l.filtered == 0 {
		// Nobody parked needs the value: keep no reference to it.
		m = nil
	}
	if m != nil || l.vals != nil {
		for len(l.vals) < len(l.events)-1 {
			l.vals = append(l.vals, nil) // events no parked filter needed
		}
		l.vals = append(l.vals, m)
	}
	charge := int64(len(msg)) + entryCost
	l.bytes += charge
	h.queued.Add(charge)
	h.grown += charge
	for _, c := range park {
		// Out of the group's list: fan-outs no longer visit it. The
		// walk set its parked flag and cursor (seq).
		last := len(g.clients) - 1
		g.clients[c.index] = g.clients[last]
		g.clients[c.index].index = c.index
		g.clients[last] = nil
		g.clients = g.clients[:last]
		c.index = -1
		l.push(parkEntry{c: c, cursor: seq})
		l.live++
	}
	for len(l.parked) > 0 {
		e := l.parked[0]
		if !e.live(g) {
			l.pop()
			continue
		}
		c := e.c
		c.mu.Lock()
		full := int(l.end()-e.cursor)+len(c.queue) > h.cfg.QueueSize
		if full && h.cfg.Policy != Disconnect {
			dropped := h.dropParkedLocked(c)
			c.mu.Unlock()
			if !dropped {
				break // full of extras, which are never dropped
			}
			continue // dropped: look at the heap's first entry again
		}
		// As for any client, a full queue is slow only when the
		// client's write is blocked (see fanoutLocked).
		slow := full && c.blockedLocked(now)
		if slow {
			h.dropQueueLocked(c)
			evict = append(evict, c)
		}
		c.mu.Unlock()
		if !slow {
			break
		}
		// finishFanout removes it (see unparkedLocked).
		l.pop()
	}
	h.trimLocked(g)
	return evict
}

// dropParkedLocked applies a dropping policy to c, parked with more than
// QueueSize live events waiting (queued, then logged after its place):
// under DropOldest it keeps the newest QueueSize less an eighth, under
// KeepLatest the newest one, dropping the oldest queued ones first and
// then moving its place in the log on. Only the client furthest behind in
// the log is checked at each fan-out, so one parked later with a full
// queue may have up to twice QueueSize waiting until its turn comes. Dropping an eighth more than one
// event at a time lets thousands of clients that stopped reading be
// visited once per eighth of a queue's worth of events rather than at
// every event. It reports false, dropping nothing, when what waits beyond
// keep is extras, which are never dropped (see makeRoomLocked). h.mu and
// c.mu must be held.
func (h *Engine) dropParkedLocked(c *client) bool {
	l := &c.grp.park
	keep := max(1, h.cfg.QueueSize-h.cfg.QueueSize/8)
	if h.cfg.Policy == KeepLatest {
		keep = 1
	}
	live := c.queue[c.extra:]
	logged := int(l.end() - c.cursor)
	drop := len(live) + logged - keep
	if drop <= 0 {
		return false
	}
	if n := min(drop, len(live)); n > 0 {
		h.queued.Add(-h.dropLiveLocked(c, n))
		drop -= n
	}
	// What is left to drop is in the log (logged > keep when the queue
	// held less than drop): move on past it. Its entry in the heap stays
	// when its place does not change: one entry per place.
	if drop > 0 {
		c.cursor += int64(drop)
		l.push(parkEntry{c: c, cursor: c.cursor})
		h.dropped.Add(uint64(drop))
	}
	return true
}

// unparkLocked queues for c, parked, the events of the log from its
// place on, and puts it back among its group's clients; h.mu and c.mu
// must be held. With some, it takes only what one write sends (MaxWrite
// bytes, maxVecEvents events) when more are logged: c stays parked, at
// its new place, and its writer comes back for the rest once that write
// went through. A client that stopped reading thus holds one write's
// worth in its queue, not a copy of its whole backlog.
func (h *Engine) unparkLocked(c *client, some bool) {
	g := c.grp
	l := &g.park
	from := l.off + int(c.cursor-l.base)
	if c.filter != nil {
		h.unparkFilteredLocked(c, from, some)
		return
	}
	if from < len(l.events) && c.pos < 0 {
		c.pos = l.pos[from]
	}
	evs := l.events[from:]
	if some {
		size, limit := 0, MaxWrite
		if c.conn.Narrow() {
			limit = narrowWrite
		}
		for i, msg := range evs {
			if i == maxVecEvents || i > 0 && size+len(msg) > limit {
				evs = evs[:i]
				break
			}
			size += len(msg)
		}
	}
	if len(evs) > 0 && c.bytes == 0 {
		c.since = l.at[from]
	}
	if need := len(c.queue) + len(evs); cap(c.queue) < need {
		grown := append(getQueue(need), c.queue...)
		clear(c.queue)
		putQueue(c.queue)
		c.queue = grown
	}
	c.queue = append(c.queue, evs...)
	added := int64(len(evs)) * entryCost
	for _, msg := range evs {
		added += int64(len(msg))
	}
	c.bytes += added
	h.queued.Add(added)
	h.grown += int64(len(evs)) * entryCost // the entries; the events were counted when logged
	h.movedOnLocked(c, from, len(evs))
}

// unparkFilteredLocked is unparkLocked for a client with a filter: it
// queues the events of the log from c's place on that pass the filter,
// one write's worth of them with some, and moves c on past those it
// looked at.
func (h *Engine) unparkFilteredLocked(c *client, from int, some bool) {
	l := &c.grp.park
	size, limit, most := 0, math.MaxInt, math.MaxInt
	if some {
		limit, most = MaxWrite, maxVecEvents
		if c.conn.Narrow() {
			limit = narrowWrite
		}
	}
	var added int64
	taken, n := 0, 0
	for i := from; i < len(l.events); i++ {
		msg := l.events[i]
		if taken == most || taken > 0 && size+len(msg) > limit {
			break
		}
		n++
		if i < len(l.vals) && l.vals[i] != nil && !c.filter(l.vals[i]) {
			continue
		}
		if c.pos < 0 {
			c.pos = l.pos[i]
		}
		if c.bytes == 0 && added == 0 {
			c.since = l.at[i]
		}
		c.queue = appendQueue(c.queue, msg)
		added += int64(len(msg)) + entryCost
		size += len(msg)
		taken++
	}
	c.bytes += added
	h.queued.Add(added)
	h.grown += int64(taken) * entryCost // the entries; the events were counted when logged
	h.movedOnLocked(c, from, n)
}

// movedOnLocked moves c, parked, on by n events of its group's log, from
// index from: c stays parked at its new place while the log holds more,
// and is put back among its group's clients otherwise; h.mu must be held.
func (h *Engine) movedOnLocked(c *client, from, n int) {
	g := c.grp
	l := &g.park
	if from+n < len(l.events) {
		c.cursor += int64(n)
		l.push(parkEntry{c: c, cursor: c.cursor})
		h.trimLocked(g)
		return
	}
	h.unparkedLocked(c)
	c.index = int32(len(g.clients))
	g.clients = append(g.clients, c)
}

// unparkedLocked takes c out of its group's log, for unparkLocked or for
// a parked client being removed; h.mu must be held.
func (h *Engine) unparkedLocked(c *client) {
	c.parked.Store(false)
	c.grp.park.live--
	if c.filter != nil {
		c.grp.park.filtered--
	}
	h.trimLocked(c.grp)
}

// trimLocked drops the entries of g's log and parked list that no parked
// client needs any longer; h.mu must be held.
func (h *Engine) trimLocked(g *group) {
	l := &g.park
	for len(l.parked) > 0 && !l.parked[0].live(g) {
		l.pop()
	}
	if len(l.parked) > 2*l.live+64 {
		// Stale entries left inside the heap: keep the live ones.
		live := l.parked[:0]
		for _, e := range l.parked {
			if e.live(g) {
				live = append(live, e)
			}
		}
		clear(l.parked[len(live):])
		l.parked = live
		for i := len(live)/2 - 1; i >= 0; i-- {
			l.down(i)
		}
	}
	upTo := l.end() // the first event still needed
	if len(l.parked) > 0 {
		upTo = l.parked[0].cursor
	}
	k := int(upTo - l.base)
	if k <= 0 {
		return
	}
	var freed int64
	for i, msg := range l.events[l.off : l.off+k] {
		freed += int64(len(msg)) + entryCost
		l.events[l.off+i] = nil
		if j := l.off + i; j < len(l.vals) {
			l.vals[j] = nil
		}
	}
	l.bytes -= freed
	h.queued.Add(-freed)
	l.off += k
	l.base = upTo
	if l.live == 0 {
		// Nobody parked: let the memory go.
		clear(l.parked)
		*l = parkLog{base: l.base}
		return
	}
	if l.off > len(l.events)/2 {
		n := copy(l.events, l.events[l.off:])
		copy(l.pos, l.pos[l.off:])
		copy(l.at, l.at[l.off:])
		clear(l.events[n:])
		l.events, l.pos, l.at = l.events[:n], l.pos[:n], l.at[:n]
		if l.vals != nil {
			m := copy(l.vals, l.vals[min(l.off, len(l.vals)):])
			clear(l.vals[m:])
			l.vals = l.vals[:m]
		}
		l.off = 0
	}
}

// eachParkedLocked calls f for every client parked in g; h.mu must be
// held.
func (g *group) eachParkedLocked(f func(*client)) {
	l := &g.park
	for _, e := range l.parked {
		if e.live(g) {
			f(e.c)
		}
	}
}

// parkedPosLocked returns the position of the first event c, parked,
// needs from the log, -1 when the log holds none for it yet; h.mu must be
// held.
func (c *client) parkedPosLocked() int64 {
	l := &c.grp.park
	i := l.off + int(c.cursor-l.base)
	if i < len(l.events) {
		return l.pos[i]
	}
	return -1
}
