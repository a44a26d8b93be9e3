package fanout

import "time"

// Noticing a client that went away.
//
// A stream whose connection the engine took over learns it from the
// connection: a read fails, made by the process's watch over taken
// connections or, where there is none, by the stream's own reader (the
// sse package's owned_watch_linux.go and owned.go). Any other stream learns
// it from its request's context, which net/http ends when the client
// goes away, and one mechanism asks: a Poll, a timer that has its
// owner check the request contexts of its streams (Sink.Gone) every
// PollEvery while it has any. A hub has one for its clients; the lone
// Conns whose end someone waits for (Done) or that nothing else would end
// (taken over, then unregistered) share one per server (the sse
// package's solo.go). Watching each request's context with a callback
// (context.AfterFunc) would end the stream at once, but costs every
// stream about half a KiB (a children map in the request's context and a
// context of its own), which a hub's idle streams cannot afford.
//
// Two checks are not watchers and stay: every call on an sse.Conn (Send, Err,
// Done) first checks its request's context itself (Conn.clientGone), so
// what it returns is never stale; and a hub's own handler, which blocks
// until its stream ends anyway, waits on the request's context as well
// (the sse package's waitEnd), which costs nothing more.

// PollEvery is how often the request contexts of watched streams are
// checked: a stream ends at most that long after its client leaves.
const PollEvery = 100 * time.Millisecond

// Poll is the poll timer of an owner of streams. The owner's lock
// guards it (Engine.mu, the sse package's solo.mu): the check function takes
// that lock and calls FiredLocked first, then ArmLocked again while streams are left.
type Poll struct {
	timer *time.Timer
	armed bool // timer is set
}

// ArmLocked has check called in PollEvery, unless it is set already.
func (w *Poll) ArmLocked(check func()) {
	if w.armed {
		return
	}
	w.armed = true
	setTimer(&w.timer, PollEvery, check)
}

// FiredLocked notes that the timer fired.
func (w *Poll) FiredLocked() { w.armed = false }

// HasTimer reports whether w holds a timer.
func (w *Poll) HasTimer() bool { return w.timer != nil }

// StopLocked stops and forgets the timer, for an owner with no stream
// left to watch.
func (w *Poll) StopLocked() {
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	w.armed = false
}

// A hub's poll.

// armPollLocked sets the poll timer when it is not set; h.mu must be held.
func (h *Engine) armPollLocked() {
	if !h.closed {
		h.gone.ArmLocked(h.pollClients)
	}
}

// pollClients ends the streams whose request's context ended, and checks
// again later while clients are left.
func (h *Engine) pollClients() {
	h.mu.Lock()
	h.gone.FiredLocked()
	var gone []Sink
	h.eachClientLocked(func(c *client) {
		if c.conn.Gone() {
			gone = append(gone, c.conn)
		}
	})
	if h.nclients > len(gone) {
		h.armPollLocked()
	}
	h.mu.Unlock()
	for _, conn := range gone {
		conn.End(h.cfg.Gone)
	}
}
