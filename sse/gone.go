package sse

import "time"

// Noticing a client that went away.
//
// A stream whose connection the engine took over learns it from the
// connection: a read fails, made by the process's watch over taken
// connections (owned_watch_linux.go) or, where there is none, by the
// stream's own reader (owned.go). Any other stream learns
// it from its request's context, which net/http ends when the client
// goes away, and one mechanism asks: a goneWatch, a timer that has its
// owner check the request contexts of its streams (sink.gone) every
// pollEvery while it has any. A hub has one for its clients; the lone
// Conns whose end someone waits for (Done) or that nothing else would end
// (taken over, then unregistered) share one per server (solo, see
// solo.go). Watching each request's context with a callback
// (context.AfterFunc) would end the stream at once, but costs every
// stream about half a KiB (a children map in the request's context and a
// context of its own), which a hub's idle streams cannot afford.
//
// Two checks are not watchers and stay: every call on a Conn (Send, Err,
// Done) first checks its request's context itself (Conn.clientGone), so
// what it returns is never stale; and a hub's own handler, which blocks
// until its stream ends anyway, waits on the request's context as well
// (waitEnd), which costs nothing more.

// pollEvery is how often the request contexts of watched streams are
// checked: a stream ends at most that long after its client leaves.
const pollEvery = 100 * time.Millisecond

// goneWatch is the poll timer of an owner of streams. The owner's lock
// guards it (hubCore.mu, solo.mu): the check function takes that lock and
// calls firedLocked first, then armLocked again while streams are left.
type goneWatch struct {
	timer *time.Timer
	armed bool // timer is set
}

// armLocked has check called in pollEvery, unless it is set already.
func (w *goneWatch) armLocked(check func()) {
	if w.armed {
		return
	}
	w.armed = true
	setTimer(&w.timer, pollEvery, check)
}

// firedLocked notes that the timer fired.
func (w *goneWatch) firedLocked() { w.armed = false }

// stopLocked stops and forgets the timer, for an owner with no stream
// left to watch.
func (w *goneWatch) stopLocked() {
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	w.armed = false
}

// A hub's poll.

// armPollLocked sets the poll timer when it is not set; h.mu must be held.
func (h *hubCore) armPollLocked() {
	if !h.closed {
		h.gone.armLocked(h.pollClients)
	}
}

// pollClients ends the streams whose request's context ended, and checks
// again later while clients are left.
func (h *hubCore) pollClients() {
	h.mu.Lock()
	h.gone.firedLocked()
	var gone []sink
	h.eachClientLocked(func(c *client) {
		if c.conn.gone() {
			gone = append(gone, c.conn)
		}
	})
	if h.nclients > len(gone) {
		h.armPollLocked()
	}
	h.mu.Unlock()
	for _, conn := range gone {
		conn.end(errClientGone)
	}
}
