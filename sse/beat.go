package sse

import "time"

// A hub sends the heartbeats of its clients itself, from one timer, so a
// registered stream needs no timer of its own. Each client has one entry in
// a min-heap ordered by when it is due; when the timer fires, the due
// clients that were silent for a whole interval get a comment queued like
// any event, and every due client is put back at its next due time: the
// interval after its last write. A client leaves the heap when it is
// removed from the hub, so a closed stream holds nothing until its entry
// would have come due.

// beat is a client's place in the heartbeat heap.
type beat struct {
	due int64 // Unix nanoseconds
	c   *client
}

// beats is a min-heap of beat by due time; each client's beatAt is its
// index in it, -1 when it has none.
type beats []beat

func (b beats) swap(i, j int) {
	b[i], b[j] = b[j], b[i]
	b[i].c.beatAt = int32(i)
	b[j].c.beatAt = int32(j)
}

func (b beats) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if b[parent].due <= b[i].due {
			break
		}
		b.swap(parent, i)
		i = parent
	}
}

func (b beats) down(i int) {
	for {
		small, left, right := i, 2*i+1, 2*i+2
		if left < len(b) && b[left].due < b[small].due {
			small = left
		}
		if right < len(b) && b[right].due < b[small].due {
			small = right
		}
		if small == i {
			return
		}
		b.swap(small, i)
		i = small
	}
}

func (b *beats) push(x beat) {
	x.c.beatAt = int32(len(*b))
	*b = append(*b, x)
	b.up(len(*b) - 1)
}

func (b *beats) pop() beat {
	top := (*b)[0]
	b.remove(0)
	return top
}

// remove takes out the entry at index i.
func (b *beats) remove(i int) {
	h := *b
	last := len(h) - 1
	h[i].c.beatAt = -1
	if i != last {
		h[i] = h[last]
		h[i].c.beatAt = int32(i)
	}
	h[last] = beat{}
	h = h[:last]
	*b = h
	if i < len(h) {
		h.down(i)
		h.up(i)
	}
	if cap(h) > 64 && len(h) < cap(h)/4 {
		*b = append(beats(nil), h...) // churn must not leave a large array behind
	}
}

// scheduleBeatLocked gives a newly registered client its first heartbeat
// entry, unless the hub sends none or its Conn sends its own; h.mu must be
// held.
func (h *hubCore) scheduleBeatLocked(c *client) {
	if h.cfg.heartbeat <= 0 || c.conn.sendsHeartbeats() {
		return
	}
	h.beats.push(beat{due: time.Now().Add(h.cfg.heartbeat).UnixNano(), c: c})
	h.armBeatLocked()
}

// dropBeatLocked takes c's entry out of the heap; h.mu must be held.
func (h *hubCore) dropBeatLocked(c *client) {
	if i := int(c.beatAt); i >= 0 && i < len(h.beats) && h.beats[i].c == c {
		h.beats.remove(i)
	}
	c.beatAt = -1
}

// armBeatLocked sets the heartbeat timer for the first entry; h.mu must be
// held.
func (h *hubCore) armBeatLocked() {
	if len(h.beats) == 0 || h.closed {
		return
	}
	due := h.beats[0].due
	if h.beatDue != 0 && h.beatDue <= due {
		return // set to fire no later
	}
	h.beatDue = due
	d := time.Duration(due - time.Now().UnixNano())
	setTimer(&h.beatTimer, d, h.heartbeat)
}

// heartbeat runs on the heartbeat timer.
func (h *hubCore) heartbeat() {
	h.mu.Lock()
	h.beatDue = 0
	if h.closed {
		h.mu.Unlock()
		return
	}
	now := time.Now().UnixNano()
	every := int64(h.cfg.heartbeat)
	wake := h.toWake[:0]
	for len(h.beats) > 0 && h.beats[0].due <= now {
		b := h.beats.pop()
		c := b.c
		c.mu.Lock()
		next := c.conn.lastWrite() + every
		switch {
		case c.scheduled || c.closing:
			// A write is on its way, or the stream ends after it.
			next = now + every
		case next <= now:
			if h.queueExtraLocked(c, heartbeatComment) {
				wake = append(wake, c)
			}
			next = now + every
		}
		c.mu.Unlock()
		h.beats.push(beat{due: next, c: c})
	}
	h.armBeatLocked()
	h.finishFanout(wake, h.evict[:0])
}
