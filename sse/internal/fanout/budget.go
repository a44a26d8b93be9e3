package fanout

import (
	"cmp"
	"slices"
	"time"
)

// The queued-bytes budget (Config.MaxBytes): what the queues hold,
// and whom to disconnect when they hold too much.

// heldLocked returns what the queues of the clients hold now: the bytes
// of every event queued or in flight, once however many clients it is
// queued for, and entryCost per queue entry; h.mu must be held (read).
//
// A group's clients get its events in order, each queue a run of them
// up to the newest (less those a filter skips or a dropping policy
// dropped), so the group's events held are those from the oldest any of
// its clients still holds. Clients already removed are not counted: one
// evicted may still have a write in flight, cut short but not yet
// returned, and counting it would evict the clients that drain in its
// place.
func (h *Engine) heldLocked() int64 {
	var held int64
	count := func(g *group) {
		oldest := g.fanned
		f := func(c *client) {
			c.mu.Lock()
			if !c.removed {
				own, pos := c.heldLocked()
				held += own
				if pos >= 0 && pos < oldest {
					oldest = pos
				}
			}
			c.mu.Unlock()
		}
		for _, c := range g.clients {
			f(c)
		}
		g.eachParkedLocked(f)
		held += g.fanned - oldest + entryCost*int64(len(g.park.events)-g.park.off)
	}
	count(h.def)
	for _, g := range h.groups {
		count(g)
	}
	return held
}

// heldLocked returns what c holds on its own (entries, extras) and the
// position of the oldest live event it holds in its group's events, -1
// when none; Engine.mu and c.mu must be held.
func (c *client) heldLocked() (own, pos int64) {
	own = c.ownQ + c.ownOut + entryCost*int64(len(c.queue)+int(c.nOut))
	pos = c.pos
	if c.posOut >= 0 && (pos < 0 || c.posOut < pos) {
		pos = c.posOut
	}
	if c.parked.Load() {
		if p := c.parkedPosLocked(); p >= 0 && (pos < 0 || p < pos) {
			pos = p
		}
	}
	return own, pos
}

// overBudgetLocked counts what the queues hold (see heldLocked) and, when
// it is over the budget, picks the clients that made no progress for
// longest until the rest fits, marks them removed and appends them to
// evict; h.mu must be held. A client that drains has only recent bytes
// unsent, however many: it goes last.
func (h *Engine) overBudgetLocked(evict []*client) []*client {
	type load struct {
		c       *client
		own     int64
		pos     int64 // of the oldest live event it holds; -1: none
		oldest  int64
		stalled int64 // when its blocked write began; 0: none is blocked
		gone    bool
	}
	// Per group, its clients' loads by position, and the first of them
	// not evicted: the group holds its events from that one's position.
	type groupLoads struct {
		g     *group
		byPos []int // indices in loads
		first int
	}
	var loads []load
	var groups []*groupLoads
	var held int64
	stalledBefore := time.Now().UnixNano() - int64(stallLimit)
	add := func(g *group) {
		gl := &groupLoads{g: g}
		held += entryCost * int64(len(g.park.events)-g.park.off)
		cs := slices.Clip(g.clients) // appending must not write into g.clients
		g.eachParkedLocked(func(c *client) { cs = append(cs, c) })
		for _, c := range cs {
			c.mu.Lock()
			if !c.removed {
				own, pos := c.heldLocked()
				l := load{c: c, own: own, pos: pos, oldest: c.since}
				if c.inflight > 0 {
					l.oldest = c.sinceOut
					if c.outAt <= stalledBefore {
						l.stalled = c.outAt
					}
				}
				held += own
				if pos >= 0 {
					gl.byPos = append(gl.byPos, len(loads))
				}
				loads = append(loads, l)
			}
			c.mu.Unlock()
		}
		slices.SortFunc(gl.byPos, func(a, b int) int { return cmp.Compare(loads[a].pos, loads[b].pos) })
		if len(gl.byPos) > 0 {
			held += g.fanned - loads[gl.byPos[0]].pos
		}
		groups = append(groups, gl)
	}
	add(h.def)
	for _, g := range h.groups {
		add(g)
	}
	if held > h.cfg.MaxBytes {
		groupOf := make(map[*group]*groupLoads, len(groups))
		for _, gl := range groups {
			groupOf[gl.g] = gl
		}
		order := make([]int, len(loads))
		for i := range order {
			order[i] = i
		}
		// Clients whose write is blocked go first, the longest blocked
		// first: they make no progress. Then the others by their oldest
		// unsent byte. A client merely waiting for a writer is not
		// stalled: when thousands stall at once, the writers reach the
		// clients queued behind them late, and their oldest byte is then
		// the oldest of all although they read everything they are sent.
		slices.SortFunc(order, func(i, j int) int {
			a, b := &loads[i], &loads[j]
			switch {
			case a.stalled != 0 && b.stalled != 0:
				return cmp.Compare(a.stalled, b.stalled)
			case a.stalled != 0:
				return -1
			case b.stalled != 0:
				return 1
			}
			return cmp.Compare(a.oldest, b.oldest)
		})
		for _, i := range order {
			if held <= h.cfg.MaxBytes {
				break
			}
			l := &loads[i]
			l.gone = true
			held -= l.own
			if l.pos >= 0 {
				// The group holds less only when l was its oldest.
				gl := groupOf[l.c.grp]
				from := loads[gl.byPos[gl.first]].pos
				for gl.first < len(gl.byPos) && loads[gl.byPos[gl.first]].gone {
					gl.first++
				}
				to := gl.g.fanned
				if gl.first < len(gl.byPos) {
					to = loads[gl.byPos[gl.first]].pos
				}
				held -= to - from
			}
			l.c.mu.Lock()
			h.dropQueueLocked(l.c)
			l.c.mu.Unlock()
			evict = append(evict, l.c)
		}
	}
	// Until the queues grew by more than that, they fit.
	h.grown, h.slack = 0, max(h.cfg.MaxBytes-held, 0)
	return evict
}
