package sse

import "time"

// sink is a stream as the fan-out engine (see engine.go) sees it. [Conn]
// implements it; another kind of stream (a hijacked connection, say)
// plugs into the engine by implementing it too.
// The engine calls write only with the write lock held, and never holds
// its own locks while it calls a method that may block (lockWrite, write,
// waitWrites, end, drop).
type sink interface {
	// lockWrite and unlockWrite take and release the write lock, which
	// serialises the stream's writes (the engine's and any others).
	lockWrite()
	unlockWrite()
	// waitWrites returns once no write is in progress.
	waitWrites()
	// writeAt writes b and flushes it; bounded asks for the stream's
	// write deadline around it, when the stream has one; start is when
	// the write began, in Unix nanoseconds. A failed write ends the
	// stream. When stall is not nil and the stream can tell, without
	// waiting, that the write would block (its client is not reading),
	// it calls stall before it blocks.
	writeAt(b batch, bounded bool, start int64, stall func()) error
	// narrow reports whether the stream's client, by what its connection
	// last told, can take little at once: its receive window is small,
	// or it is behind. The engine's writers serve such streams after the
	// others (see writerPool).
	narrow() bool
	// vectored reports whether the stream takes batches of events as
	// they are queued (batch.v) rather than gathered into one slice.
	vectored() bool
	// bound gives the write in progress, begun at start, the deadline it
	// would have had, and reports whether it could; unbound clears it
	// after that write returned, ending the stream when that fails.
	bound(start int64) bool
	unbound() error
	// deadlineless reports whether the stream wants write deadlines but
	// its writer cannot take them.
	deadlineless() bool
	// lastWrite is when the last successful write began, in Unix
	// nanoseconds; sendsHeartbeats reports whether the stream sends its
	// own.
	lastWrite() int64
	sendsHeartbeats() bool
	// gone reports whether the client went away (the request ended).
	gone() bool
	// end ends the stream with cause; it never waits. Err is nil while
	// the stream is open, and then why it ended. watch has w told when
	// the stream ends (false: it has already), unwatch undoes it.
	end(cause error)
	// drop is end for a client the engine gives up on (too slow, over
	// the budget, or not drained when closing): the connection is reset
	// where it can be, dropping what the client has not read, so that
	// neither the kernel nor net/http keeps it for a client that may
	// never read again.
	drop(cause error)
	Err() error
	watch(w closeWatcher) bool
	unwatch(w closeWatcher)
}

// batch is what a writer hands a stream in one write: the bytes p, or,
// for a stream that is vectored, the events v as they are queued, shared
// with other clients and written without being copied. The first and
// last entries of v are empty, for the stream's framing around the size
// bytes between them.
type batch struct {
	p    []byte
	v    [][]byte
	size int
}

// closeWatcher is told when a stream ends; the engine uses it to drop the
// stream's client.
type closeWatcher interface {
	streamEnded()
}

// Conn's side of sink.

func (c *Conn) narrow() bool {
	o := c.own.Load()
	return o != nil && o.narrow.Load()
}

func (c *Conn) writeAt(b batch, bounded bool, start int64, stall func()) error {
	return c.writeOut(b, bounded && c.deadlines, start, stall)
}

// vectored: a connection the engine took over, plain TCP, is written
// with writev. The write lock must be held, so that it is not taken over
// meanwhile.
func (c *Conn) vectored() bool {
	o := c.own.Load()
	return o != nil && o.tcp != nil
}

func (c *Conn) bound(start int64) bool {
	if !c.deadlines {
		return false
	}
	// Under c.mu, so that a write the stream's end cut short (see stop)
	// is not given its deadline back.
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cause == nil {
		_ = c.setWriteDeadline(time.Unix(0, start).Add(c.timeout))
	}
	return true
}

func (c *Conn) unbound() error {
	if err := c.clearDeadline(); err != nil {
		return c.fail(err)
	}
	return nil
}

func (c *Conn) deadlineless() bool    { return !c.deadlines && c.timeout > 0 }
func (c *Conn) lastWrite() int64      { return c.last.Load() }
func (c *Conn) sendsHeartbeats() bool { return c.beats }
func (c *Conn) gone() bool            { return c.requestEnded() }
func (c *Conn) end(cause error)       { c.shutdown(cause) }
func (c *Conn) drop(cause error)      { c.stop(cause, true) }
