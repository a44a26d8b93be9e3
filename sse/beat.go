package sse

import "time"

// Heartbeats.
//
// One mechanism sends every heartbeat: a beatSchedule, a min-heap of when
// each stream is due with one timer for the first of them. A hub has one
// for its clients, so a registered stream needs no timer of its own; the
// Conns that send their own heartbeats (UpgradeOptions.Heartbeat) share
// one per server (solo, see solo.go). When the timer fires, its owner
// takes the due entries out; those silent for a whole interval get a
// comment, and each goes back in at its next due time: the interval
// after its last write.
// An entry leaves the heap when its stream leaves its owner, so a closed
// stream holds nothing, and an empty schedule holds no timer.

// beatItem is what a beatSchedule orders: a pointer to a record that
// keeps its own index in the heap, so that it can be taken out from
// anywhere in it.
type beatItem interface {
	comparable
	// beatIndex returns where the item keeps its index; -1: not in.
	beatIndex() *int32
}

// beat is an item's place in a heartbeat heap.
type beat[T beatItem] struct {
	due int64 // Unix nanoseconds
	x   T
}

// beatHeap is a min-heap of beat by due time; each item's index is its
// place in it.
type beatHeap[T beatItem] []beat[T]

func (b beatHeap[T]) swap(i, j int) {
	b[i], b[j] = b[j], b[i]
	*b[i].x.beatIndex() = int32(i)
	*b[j].x.beatIndex() = int32(j)
}

func (b beatHeap[T]) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if b[parent].due <= b[i].due {
			break
		}
		b.swap(parent, i)
		i = parent
	}
}

func (b beatHeap[T]) down(i int) {
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

func (b *beatHeap[T]) push(x beat[T]) {
	*x.x.beatIndex() = int32(len(*b))
	*b = append(*b, x)
	b.up(len(*b) - 1)
}

func (b *beatHeap[T]) pop() beat[T] {
	top := (*b)[0]
	b.remove(0)
	return top
}

// remove takes out the entry at index i.
func (b *beatHeap[T]) remove(i int) {
	h := *b
	last := len(h) - 1
	*h[i].x.beatIndex() = -1
	if i != last {
		h[i] = h[last]
		*h[i].x.beatIndex() = int32(i)
	}
	h[last] = beat[T]{}
	h = h[:last]
	*b = h
	if i < len(h) {
		h.down(i)
		h.up(i)
	}
	if cap(h) > 64 && len(h) < cap(h)/4 {
		*b = append(beatHeap[T](nil), h...) // churn must not leave a large array behind
	}
}

// beatSchedule is a heartbeat schedule: a heap of due times and one
// timer, which calls its owner's fire function (the same every time) for
// the first entry. The owner's lock guards it (hubCore.mu, solo.mu): fire
// takes that lock and calls firedLocked first.
type beatSchedule[T beatItem] struct {
	heap  beatHeap[T]
	timer *time.Timer
	due   int64 // when timer fires, in Unix nanoseconds; 0 when it is not set
}

// addLocked puts x in, due at due (Unix nanoseconds), and sets the timer
// for it when it comes first.
func (s *beatSchedule[T]) addLocked(x T, due int64, fire func()) {
	s.putLocked(x, due)
	s.armLocked(fire)
}

// putLocked puts x in, due at due, without setting the timer: for fire,
// which calls armLocked once done.
func (s *beatSchedule[T]) putLocked(x T, due int64) {
	s.heap.push(beat[T]{due: due, x: x})
}

// dropLocked takes x out, if it is in; the timer stops with the last
// entry.
func (s *beatSchedule[T]) dropLocked(x T) {
	at := x.beatIndex()
	if i := int(*at); i >= 0 && i < len(s.heap) && s.heap[i].x == x {
		s.heap.remove(i)
	}
	*at = -1
	if len(s.heap) == 0 {
		s.stopLocked()
	}
}

// firedLocked notes that the timer fired.
func (s *beatSchedule[T]) firedLocked() { s.due = 0 }

// popDueLocked takes out the first entry when it is due at now.
func (s *beatSchedule[T]) popDueLocked(now int64) (x T, ok bool) {
	if len(s.heap) == 0 || s.heap[0].due > now {
		return x, false
	}
	return s.heap.pop().x, true
}

// armLocked sets the timer for the first entry, unless it is set to fire
// no later; with no entry left, it stops and forgets the timer, so that
// an idle schedule holds none.
func (s *beatSchedule[T]) armLocked(fire func()) {
	if len(s.heap) == 0 {
		s.stopLocked()
		return
	}
	due := s.heap[0].due
	if s.due != 0 && s.due <= due {
		return
	}
	s.due = due
	setTimer(&s.timer, time.Duration(due-time.Now().UnixNano()), fire)
}

// stopLocked stops and forgets the timer; the entries stay.
func (s *beatSchedule[T]) stopLocked() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.due = 0
}

// clearLocked takes every entry out and stops the timer.
func (s *beatSchedule[T]) clearLocked() {
	for _, b := range s.heap {
		*b.x.beatIndex() = -1
	}
	s.heap = nil
	s.stopLocked()
}

// A hub's heartbeats.

func (c *client) beatIndex() *int32 { return &c.beatAt }

// scheduleBeatLocked gives a newly registered client its first heartbeat
// entry, unless the hub sends none or its Conn sends its own; h.mu must be
// held.
func (h *hubCore) scheduleBeatLocked(c *client) {
	if h.cfg.heartbeat <= 0 || c.conn.sendsHeartbeats() || h.closed {
		return
	}
	h.beats.addLocked(c, time.Now().Add(h.cfg.heartbeat).UnixNano(), h.heartbeat)
}

// dropBeatLocked takes c's entry out of the schedule; h.mu must be held.
func (h *hubCore) dropBeatLocked(c *client) { h.beats.dropLocked(c) }

// heartbeat runs on the heartbeat timer: the due clients that were silent
// for a whole interval get a comment queued like any event.
func (h *hubCore) heartbeat() {
	h.mu.Lock()
	h.beats.firedLocked()
	if h.closed {
		h.mu.Unlock()
		return
	}
	now := time.Now().UnixNano()
	every := int64(h.cfg.heartbeat)
	wake := h.toWake[:0]
	for {
		c, ok := h.beats.popDueLocked(now)
		if !ok {
			break
		}
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
		h.beats.putLocked(c, next)
	}
	h.beats.armLocked(h.heartbeat)
	h.finishFanout(wake, h.evict[:0])
}
