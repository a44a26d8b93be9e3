package fanout

import "errors"

// Sink is a stream as the engine sees it. The sse package's Conn
// implements it (through an adapter, so that these methods stay out of
// Conn's API); another kind of stream plugs into the engine by
// implementing it too.
//
// The engine calls WriteAt only with the write lock held, and never holds
// its own locks while it calls a method that may block (LockWrite,
// WriteAt, End, Drop).
type Sink interface {
	// LockWrite and UnlockWrite take and release the write lock, which
	// serialises the stream's writes (the engine's and any others).
	LockWrite()
	UnlockWrite()
	// WriteAt writes b and flushes it; bounded asks for the stream's
	// write deadline around it, when the stream has one; start is when
	// the write began, in Unix nanoseconds. A failed write ends the
	// stream. When stall is not nil and the stream can tell, without
	// waiting, that the write would block (its client is not reading),
	// it calls stall before it blocks.
	//
	// When b.R is not nil, a stream that can wait for room without a
	// goroutine may suspend the write instead of blocking: it keeps what
	// it could not write and returns ErrSuspended, the write lock staying
	// held for the write, which goes on. It then calls b.R.Resume once,
	// from any goroutine, when the write may go on (the client took data,
	// the write's deadline passed, or the stream ended), and the engine
	// calls Continue.
	WriteAt(b Batch, bounded bool, start int64, stall func()) error
	// Continue goes on with a suspended write without waiting: nil once
	// what it kept is written, ErrSuspended when the write is suspended
	// again (Resume is called again), or the error that ended the stream.
	Continue() error
	// Narrow reports whether the stream's client, by what its connection
	// last told, can take little at once: its receive window is small,
	// or it is behind. The engine's writers serve such streams after the
	// others (see writerPool).
	Narrow() bool
	// Vectored reports whether the stream takes batches of events as
	// they are queued (Batch.V) rather than gathered into one slice.
	Vectored() bool
	// Bound gives the write in progress, begun at start, the deadline it
	// would have had, and reports whether it could; Unbound clears it
	// after that write returned, ending the stream when that fails.
	Bound(start int64) bool
	Unbound() error
	// Deadlineless reports whether the stream wants write deadlines but
	// its writer cannot take them.
	Deadlineless() bool
	// LastWrite is when the last successful write began, in Unix
	// nanoseconds; SendsHeartbeats reports whether the stream sends its
	// own.
	LastWrite() int64
	SendsHeartbeats() bool
	// Gone reports whether the client went away (the request ended).
	Gone() bool
	// End ends the stream with cause; it never waits. Err is nil while
	// the stream is open, and then why it ended. Watch has w told when
	// the stream ends (false: it has already), Unwatch undoes it.
	End(cause error)
	// Drop is End for a client the engine gives up on (too slow, over
	// the budget, or not drained when closing): the connection is reset
	// where it can be, dropping what the client has not read, so that
	// neither the kernel nor net/http keeps it for a client that may
	// never read again.
	Drop(cause error)
	Err() error
	Watch(w Watcher) bool
	Unwatch(w Watcher)
}

// Batch is what a writer hands a stream in one write: the bytes P, or,
// for a stream that is vectored, the events V as they are queued, shared
// with other clients and written without being copied. The first and
// last entries of V are empty, for the stream's framing around the Size
// bytes between them.
type Batch struct {
	P    []byte
	V    [][]byte
	Size int
	// R, when set, lets the stream suspend the write (see
	// Sink.WriteAt); it is only set for a vectored stream.
	R Resumer
}

// ErrSuspended is what Sink.WriteAt and Sink.Continue return when the
// write is suspended: it goes on once the stream calls Resume.
var ErrSuspended = errors.New("fanout: write suspended")

// Resumer is told when a suspended write may go on (see Sink.WriteAt).
type Resumer interface {
	Resume()
}

// Watcher is told when a stream ends; the engine uses it to drop the
// stream's client.
type Watcher interface {
	StreamEnded()
}
