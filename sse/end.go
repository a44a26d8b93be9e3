package sse

import (
	"slices"
	"time"

	"github.com/coregx/stream/sse/internal/fanout"
)

// How a Conn ends, and the write lock that lets a write in progress
// finish before the end is complete; the watchers (hubs) told of it.

// shutdown ends the stream with cause; see stop.
func (c *Conn) shutdown(cause error) { c.stop(cause, false) }

// stop ends the stream with cause: it cuts short a blocked write, tells
// the watchers (hubs) and closes Done, or has the write in progress close
// Done when it returns, so that a handler returning once Done is closed
// finds nothing still using its ResponseWriter. With reset, or when it
// cuts a write short, the connection is reset rather than closed (see
// finish). It never waits, so a hub may end a stuck client without
// blocking. Only the first call counts.
func (c *Conn) stop(cause error, reset bool) {
	c.mu.Lock()
	if c.cause != nil {
		c.mu.Unlock()
		return
	}
	c.cause = cause
	c.reset = c.reset || reset
	c.closed.Store(true)
	// Whoever holds the write lock ends the stream on unlock; if nobody
	// does, take it to do so once the watchers are told.
	c.ending = true
	take := !c.held
	c.held = true
	if !take && c.writing.Load() && c.deadlines {
		// Cut the write in progress short. Under c.mu, so that its
		// writer cannot end the stream, and the handler return,
		// meanwhile. When that write then fails, its client was not
		// reading it (or not fast enough), and its connection is reset
		// (see fail and finish); one that was done already is not.
		_ = c.setWriteDeadline(time.Now())
	}
	watchers := []fanout.Watcher{c.watcher}
	var stop func() bool
	var beat *soloBeat
	if x := c.ext; x != nil {
		watchers = append(watchers, x.more...)
		stop, beat = x.stop, x.beat
	}
	watching := c.watching
	c.watcher, c.ext, c.watching = nil, nil, false
	resumer := c.takeResumerLocked() // a suspended write ends too
	c.mu.Unlock()

	if stop != nil {
		stop()
	}
	if beat != nil {
		solo.stopBeat(beat)
	}
	if watching {
		solo.unwatch(c)
	}
	for _, w := range watchers {
		if w != nil {
			w.StreamEnded()
		}
	}
	if resumer != nil {
		resumer.Resume()
	}
	if take {
		c.unlock(true)
	}
}

// endGrace is how long the response may take, after its stream ended,
// to write what net/http sends last (the end of the chunked body, or of
// the HTTP/2 stream): a client that stopped reading would otherwise hold
// the handler's connection open.
const endGrace = 250 * time.Millisecond

// limitEnd runs once the stream ended, with the write lock held, before
// done is closed and the handler may return. With Connection: close (see
// upgrade), net/http closes the connection when the handler returns; the
// write deadline set here keeps its last flush from blocking on a client
// that does not read (the flush fails, and the connection is closed or,
// on HTTP/2, the stream reset).
func (c *Conn) limitEnd() {
	if c.deadlines {
		_ = c.setWriteDeadline(time.Now().Add(endGrace))
	}
}

// lockWrite takes the write lock.
func (c *Conn) lockWrite() {
	c.mu.Lock()
	for c.held {
		if c.wake == nil {
			c.wake = make(chan struct{})
		}
		wake := c.wake
		c.mu.Unlock()
		<-wake
		c.mu.Lock()
	}
	c.held = true
	c.mu.Unlock()
}

// waitWrites returns once no write is in progress.
func (c *Conn) waitWrites() {
	c.lockWrite()
	c.unlockWrite()
}

// unlockWrite releases the write lock and wakes those waiting for it.
// Once the stream has ended, it finishes it (see finishUnlock).
func (c *Conn) unlockWrite() { c.unlock(false) }

// unlock is unlockWrite; with async, a reset of the connection is left to
// a goroutine of its own, which takes the write lock over: resetting waits
// for net/http's reader goroutine, which stop, run by a Broadcast that
// drops clients, must not.
func (c *Conn) unlock(async bool) {
	c.mu.Lock()
	if c.ending && !c.ended {
		c.ended = true
		reset := c.reset
		c.mu.Unlock()
		if reset && async {
			go c.finishUnlock(true)
		} else {
			c.finishUnlock(reset)
		}
		return
	}
	c.held = false
	wake := c.wake
	c.wake = nil
	c.mu.Unlock()
	if wake != nil {
		close(wake)
	}
}

// finishUnlock finishes the ended stream (see finish) while the write
// lock is still held, since once it is released the handler may return;
// then it releases the lock and closes done.
func (c *Conn) finishUnlock(reset bool) {
	c.finish(reset)
	c.mu.Lock()
	c.held = false
	wake := c.wake
	c.wake = nil
	c.mu.Unlock()
	close(c.done)
	if wake != nil {
		close(wake)
	}
}

// watch registers w to be told when c ends. It reports false, and does
// nothing, when c has already ended.
func (c *Conn) watch(w fanout.Watcher) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cause != nil {
		return false
	}
	switch {
	case c.watcher == nil:
		c.watcher = w // the usual case: one hub, no allocation
	default:
		x := c.extLocked()
		x.more = append(x.more, w)
	}
	if c.watching {
		// The hub checks the request's context from now on.
		c.watching = false
		solo.unwatch(c)
	}
	return true
}

// unwatch undoes watch.
func (c *Conn) unwatch(w fanout.Watcher) {
	c.mu.Lock()
	defer c.mu.Unlock()
	x := c.ext
	if c.watcher == w {
		c.watcher = nil
		if x != nil && len(x.more) > 0 {
			c.watcher = x.more[0]
			x.more = slices.Delete(x.more, 0, 1)
		}
	} else if x != nil {
		x.more = slices.DeleteFunc(x.more, func(m fanout.Watcher) bool { return m == w })
	}
	c.watchLocked() // no hub left to watch the request's context
}
