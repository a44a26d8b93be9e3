package sse

import (
	"net"
	"os"
	"time"

	"github.com/coregx/stream/sse/internal/fanout"
)

// Suspended writes.
//
// A write of the engine's that finds the socket of an owned, watched
// connection full does not wait for room on a goroutine: it keeps what
// the socket did not take (writeVec), has the connection watch tell it
// when the socket takes data again (EPOLLOUT, owned_watch_linux.go), and
// returns fanout.ErrSuspended, the write lock staying held for it. The
// engine's writer goes on with other clients. The write goes on
// (continueOut, on one of the engine's writers) once the engine is told:
// the socket has room, the write's deadline passed (its timer fails the
// stream), or the stream ended (stop). Thousands of clients that stop
// reading at once thus cost no goroutine each, and ending them wakes
// none.

// suspend has the write begun at start, whose rest writeVec kept, wait
// for room without a goroutine, r to be told when it may go on. It
// reports false, suspending nothing, when the stream has ended or the
// watch cannot wait for room: the write then waits as any other.
func (c *Conn) suspend(r fanout.Resumer, start int64) bool {
	o := c.own.Load()
	c.mu.Lock()
	defer c.mu.Unlock()
	// A stream in several hubs is not suspended: another hub's writer
	// waiting for its write lock would wait on a write no goroutine
	// carries, and the hubs' writers could all end up waiting so.
	if c.cause != nil || c.ext != nil && len(c.ext.more) > 0 || !ownedWatch.awaitRoom(o) {
		return false
	}
	o.owner, o.resumer, o.restStart = r, r, start
	o.dueAt = 0
	if c.timeout > 0 {
		o.dueAt = start + int64(c.timeout)
		d := time.Until(time.Unix(0, o.dueAt))
		if o.timer == nil {
			o.timer = time.AfterFunc(d, c.suspendedTimeout)
		} else {
			o.timer.Reset(d)
		}
	}
	return true
}

// takeResumerLocked returns the Resumer of a suspended write waiting to
// be told, to be told once c.mu is released, and forgets it: it is told
// once. c.mu must be held.
func (c *Conn) takeResumerLocked() fanout.Resumer {
	o := c.own.Load()
	if o == nil || o.resumer == nil {
		return nil
	}
	r := o.resumer
	o.resumer = nil
	return r
}

// roomFor tells a suspended write that its socket takes data again.
func (c *Conn) roomFor() {
	c.mu.Lock()
	r := c.takeResumerLocked()
	c.mu.Unlock()
	if r != nil {
		r.Resume()
	}
}

// suspendedTimeout fails the stream of a suspended write whose deadline
// passed, as the deadline of a blocked write does.
func (c *Conn) suspendedTimeout() {
	o := c.own.Load()
	c.mu.Lock()
	var r fanout.Resumer
	if o.resumer != nil && o.dueAt != 0 && time.Now().UnixNano() >= o.dueAt {
		r = c.takeResumerLocked() // this write's, not a later one's
	}
	c.mu.Unlock()
	if r != nil {
		// What a blocked write's deadline gives.
		_ = c.fail(&net.OpError{Op: "writev", Net: "tcp", Source: o.nc.LocalAddr(), Addr: o.nc.RemoteAddr(), Err: os.ErrDeadlineExceeded})
		r.Resume()
	}
}

// continueOut goes on with the suspended write, once told, without
// waiting (see fanout.Sink.Continue).
func (c *Conn) continueOut() error {
	o := c.own.Load()
	if c.closed.Load() {
		return c.endKept(o)
	}
	o.vec = o.rest
	done, err := o.tryWrite()
	o.rest = o.rest[:copy(o.rest, o.vec)]
	o.vec = nil
	switch {
	case err != nil:
	case !done:
		if c.suspend(o.owner, o.restStart) {
			return fanout.ErrSuspended
		}
		if c.closed.Load() {
			return c.endKept(o)
		}
		// It cannot wait for room without a goroutine any more (the
		// watch failed, or the stream joined another hub): it waits
		// here, until its deadline.
		if c.timeout > 0 {
			_ = o.nc.SetWriteDeadline(time.Unix(0, o.restStart).Add(c.timeout))
		}
		err = o.writeRest(nil)
		if err == nil && c.timeout > 0 {
			err = c.clearDeadline()
		}
	}
	o.dropRest()
	c.writing.Store(false)
	if err != nil {
		return c.fail(err)
	}
	c.last.Store(o.restStart)
	return nil
}

// endKept ends a suspended write whose stream ended: the chunk it was
// writing is left unfinished, so the connection is reset rather than
// ended with the body's last chunk (see finish), which the client would
// read inside the event.
func (c *Conn) endKept(o *ownedConn) error {
	if len(o.rest) > 0 {
		c.mu.Lock()
		c.reset = true
		c.mu.Unlock()
	}
	o.dropRest()
	c.writing.Store(false)
	return c.Err()
}

// writeKept writes, waiting as any write, what writeVec kept when the
// write could not be suspended.
func (c *Conn) writeKept(stall func()) error {
	o := c.own.Load()
	err := o.writeRest(stall)
	o.dropRest()
	return err
}

// writeRest writes what a suspended write kept as writeVec writes,
// waiting for room.
func (o *ownedConn) writeRest(stall func()) error {
	o.vec = o.rest
	err := o.writeVec(stall, false)
	o.vec = nil
	return err
}

// dropRest lets go of what a suspended write kept.
func (o *ownedConn) dropRest() {
	clear(o.rest)
	if cap(o.rest) > 64 {
		o.rest = nil
	}
	o.rest = o.rest[:0]
	o.owner = nil
}
