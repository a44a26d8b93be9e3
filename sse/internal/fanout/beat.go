package fanout

import "time"

// Heartbeats.
//
// One mechanism sends every heartbeat: a Schedule, a min-heap of when
// each stream is due with one timer for the first of them. A hub has one
// for its clients, so a registered stream needs no timer of its own; the
// streams that send their own heartbeats share one per server (the sse
// package's solo.go). When the timer fires, its owner
// takes the due entries out; those silent for a whole interval get a
// comment, and each goes back in at its next due time: the interval
// after its last write.
// An entry leaves the heap when its stream leaves its owner, so a closed
// stream holds nothing, and an empty schedule holds no timer.

// Scheduled is what a Schedule orders: a pointer to a record that
// keeps its own index in the heap, so that it can be taken out from
// anywhere in it.
type Scheduled interface {
	comparable
	// BeatIndex returns where the item keeps its index; -1: not in.
	BeatIndex() *int32
}

// beat is an item's place in a heartbeat heap.
type beat[T Scheduled] struct {
	due int64 // Unix nanoseconds
	x   T
}

// beatHeap is a min-heap of beat by due time; each item's index is its
// place in it.
type beatHeap[T Scheduled] []beat[T]

func (b beatHeap[T]) swap(i, j int) {
	b[i], b[j] = b[j], b[i]
	*b[i].x.BeatIndex() = int32(i)
	*b[j].x.BeatIndex() = int32(j)
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
	*x.x.BeatIndex() = int32(len(*b))
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
	*h[i].x.BeatIndex() = -1
	if i != last {
		h[i] = h[last]
		*h[i].x.BeatIndex() = int32(i)
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

// Schedule is a heartbeat schedule: a heap of due times and one
// timer, which calls its owner's fire function (the same every time) for
// the first entry. The owner's lock guards it (Engine.mu, the sse package's solo.mu):
// fire takes that lock and calls FiredLocked first.
type Schedule[T Scheduled] struct {
	heap  beatHeap[T]
	timer *time.Timer
	due   int64 // when timer fires, in Unix nanoseconds; 0 when it is not set
}

// AddLocked puts x in, due at due (Unix nanoseconds), and sets the timer
// for it when it comes first.
func (s *Schedule[T]) AddLocked(x T, due int64, fire func()) {
	s.PutLocked(x, due)
	s.ArmLocked(fire)
}

// PutLocked puts x in, due at due, without setting the timer: for fire,
// which calls ArmLocked once done.
func (s *Schedule[T]) PutLocked(x T, due int64) {
	s.heap.push(beat[T]{due: due, x: x})
}

// DropLocked takes x out, if it is in; the timer stops with the last
// entry.
func (s *Schedule[T]) DropLocked(x T) {
	at := x.BeatIndex()
	if i := int(*at); i >= 0 && i < len(s.heap) && s.heap[i].x == x {
		s.heap.remove(i)
	}
	*at = -1
	if len(s.heap) == 0 {
		s.StopLocked()
	}
}

// Len returns the number of entries.
func (s *Schedule[T]) Len() int { return len(s.heap) }

// HasTimer reports whether s holds a timer.
func (s *Schedule[T]) HasTimer() bool { return s.timer != nil }

// FiredLocked notes that the timer fired.
func (s *Schedule[T]) FiredLocked() { s.due = 0 }

// PopDueLocked takes out the first entry when it is due at now.
func (s *Schedule[T]) PopDueLocked(now int64) (x T, ok bool) {
	if len(s.heap) == 0 || s.heap[0].due > now {
		return x, false
	}
	return s.heap.pop().x, true
}

// ArmLocked sets the timer for the first entry, unless it is set to fire
// no later; with no entry left, it stops and forgets the timer, so that
// an idle schedule holds none.
func (s *Schedule[T]) ArmLocked(fire func()) {
	if len(s.heap) == 0 {
		s.StopLocked()
		return
	}
	due := s.heap[0].due
	if s.due != 0 && s.due <= due {
		return
	}
	s.due = due
	setTimer(&s.timer, time.Duration(due-time.Now().UnixNano()), fire)
}

// StopLocked stops and forgets the timer; the entries stay.
func (s *Schedule[T]) StopLocked() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.due = 0
}

// ClearLocked takes every entry out and stops the timer.
func (s *Schedule[T]) ClearLocked() {
	for _, b := range s.heap {
		*b.x.BeatIndex() = -1
	}
	s.heap = nil
	s.StopLocked()
}

// A hub's heartbeats.

// BeatIndex makes a client a Scheduled item of the engine's heartbeats.
func (c *client) BeatIndex() *int32 { return &c.beatAt }

// scheduleBeatLocked gives a newly registered client its first heartbeat
// entry, unless the engine sends none or its stream sends its own; h.mu must be
// held.
func (h *Engine) scheduleBeatLocked(c *client) {
	if h.cfg.Heartbeat <= 0 || c.conn.SendsHeartbeats() || h.closed {
		return
	}
	h.beats.AddLocked(c, time.Now().Add(h.cfg.Heartbeat).UnixNano(), h.heartbeat)
}

// dropBeatLocked takes c's entry out of the schedule; h.mu must be held.
func (h *Engine) dropBeatLocked(c *client) { h.beats.DropLocked(c) }

// heartbeat runs on the heartbeat timer: the due clients that were silent
// for a whole interval get a comment queued like any event.
func (h *Engine) heartbeat() {
	h.mu.Lock()
	h.beats.FiredLocked()
	if h.closed {
		h.mu.Unlock()
		return
	}
	now := time.Now().UnixNano()
	every := int64(h.cfg.Heartbeat)
	wake := h.toWake[:0]
	for {
		c, ok := h.beats.PopDueLocked(now)
		if !ok {
			break
		}
		c.mu.Lock()
		next := c.conn.LastWrite() + every
		switch {
		case c.scheduled || c.closing:
			// A write is on its way, or the stream ends after it.
			next = now + every
		case next <= now:
			if h.queueExtraLocked(c, h.cfg.Comment) {
				wake = append(wake, c)
			}
			next = now + every
		}
		c.mu.Unlock()
		h.beats.PutLocked(c, next)
	}
	h.beats.ArmLocked(h.heartbeat)
	h.finishFanout(wake, h.evict[:0])
}
