package sse

import "time"

// A hub sends the heartbeats of its clients itself, from one timer, so a
// registered stream needs no timer of its own. Each client has one entry in
// a min-heap ordered by when it is due; when the timer fires, the due
// clients that were silent for a whole interval get a comment queued like
// any event, and every due client is put back at its next due time: the
// interval after its last write. A client that was removed is dropped when
// its entry comes up.

// beat is a client's place in the heartbeat heap.
type beat struct {
	due int64 // Unix nanoseconds
	c   *client
}

// beats is a min-heap of beat by due time.
type beats []beat

func (b *beats) push(x beat) {
	*b = append(*b, x)
	h := *b
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if h[parent].due <= h[i].due {
			break
		}
		h[parent], h[i] = h[i], h[parent]
		i = parent
	}
}

func (b *beats) pop() beat {
	h := *b
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h[last] = beat{}
	h = h[:last]
	for i := 0; ; {
		small, left, right := i, 2*i+1, 2*i+2
		if left < len(h) && h[left].due < h[small].due {
			small = left
		}
		if right < len(h) && h[right].due < h[small].due {
			small = right
		}
		if small == i {
			break
		}
		h[small], h[i] = h[i], h[small]
		i = small
	}
	*b = h
	return top
}

// scheduleBeatLocked gives a newly registered client its first heartbeat
// entry, unless the hub sends none or its Conn sends its own; h.mu must be
// held.
func (h *hubCore) scheduleBeatLocked(c *client) {
	if h.cfg.heartbeat <= 0 || c.conn.beats {
		return
	}
	h.beats.push(beat{due: time.Now().Add(h.cfg.heartbeat).UnixNano(), c: c})
	h.armBeatLocked()
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
		if c.removed {
			c.mu.Unlock()
			continue
		}
		next := c.conn.last.Load() + every
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
