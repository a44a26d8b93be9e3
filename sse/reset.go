package sse

import (
	"net"
	"time"

	"github.com/coregx/stream/sse/internal/fanout"
)

// Resetting the connection of a stream whose client stopped reading.
//
// When such a stream ends, its socket still holds data the client does
// not read, and a FIN would wait behind it: the server's side would stay
// open in the kernel (FIN_WAIT1), holding that data, until the kernel
// gives up on the peer, minutes later. So on HTTP/1.x the connection is
// taken over from net/http and closed with a TCP reset, which frees it at
// once. On HTTP/2 the stream is reset by net/http when its last write
// times out (see limitEnd), and the connection is shared with other
// streams, so it is left alone.
//
// The connection can be taken only while net/http has it open, and only
// when no write is in progress (Hijack flushes net/http's buffers). A
// write in progress is cut short first (see stop), and that is where it
// falls short: when a write fails inside net/http's chunk writer (one
// larger than the connection's 4 KiB buffer, which the chunk writer then
// writes through), net/http closes the connection itself, normally. A
// write that fits in that buffer blocks in its flush instead, whose
// failure leaves the connection open for the reset: so put writes in
// pieces that fit.

// aLongTimeAgo is a write deadline that has passed: a write under it
// fails at once.
var aLongTimeAgo = time.Unix(1, 0)

// resetConn resets the connection of c, whose stream ended while a write
// to it was blocked or after one failed, and reports whether it could.
// It runs with the write lock held, before done is closed, so that the
// handler has not returned (Hijack must run before it does) and nothing
// else writes meanwhile. It cannot when the connection is not HTTP/1.x or
// the writer hides Hijack or write deadlines (a wrapper without Unwrap):
// the stream then ends as any other does (see limitEnd).
func (c *Conn) resetConn() bool {
	if c.r.ProtoMajor != 1 || !c.deadlines {
		return false
	}
	rc := c.rc()
	// Hijack flushes what net/http still buffers; a deadline that has
	// passed makes that flush fail at once instead of blocking on a
	// client that does not read. The data is dropped with the
	// connection anyway.
	if rc.SetWriteDeadline(aLongTimeAgo) != nil {
		return false
	}
	nc, _, err := rc.Hijack()
	if err != nil {
		return false
	}
	abortConn(nc)
	return true
}

// abortConn closes nc with a TCP reset when it can reach the TCP
// connection (through NetConn, which a *tls.Conn has: closing the TLS
// connection itself would first try to write an alert to a client that
// does not read), and closes it plainly otherwise.
func abortConn(nc net.Conn) {
	for {
		u, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		nc = u.NetConn()
	}
	if l, ok := nc.(interface{ SetLinger(sec int) error }); ok {
		// Linger 0: Close discards what is unsent and sends a reset.
		_ = l.SetLinger(0)
	} else {
		_ = nc.SetDeadline(aLongTimeAgo)
	}
	_ = nc.Close()
}

// finish runs once the stream ended, with the write lock held, before
// done is closed and the handler may return: it resets the connection
// when reset is set and it can, and bounds net/http's last writes
// otherwise.
func (c *Conn) finish(reset bool) {
	if o := c.own.Load(); o != nil {
		o.finish(reset, c.timeout)
		return
	}
	if reset && c.resetConn() {
		return
	}
	c.limitEnd()
}

// resetPiece is the most put writes at once on HTTP/1.x: with its chunk
// framing, it fits in the 4 KiB buffer of net/http's connection.
const resetPiece = 4<<10 - 16

// put writes b and flushes it, calling stall, when not nil, before it
// blocks, if it can tell (see ownedConn.write). On HTTP/1.x, when the connection can be
// reset, it writes pieces of at most resetPiece bytes, each flushed, so
// that a write that blocks does so in net/http's flush, which leaves the
// connection open when it is cut short (see resetConn).
func (c *Conn) put(b fanout.Batch, stall func()) error {
	if o := c.own.Load(); o != nil {
		if b.V != nil {
			return o.writeChunk(b.V, b.Size, stall, b.R != nil)
		}
		return o.write(b.P, stall)
	}
	p := b.P
	piece := len(p)
	if c.r.ProtoMajor == 1 && c.deadlines {
		piece = resetPiece
	}
	for {
		n := min(len(p), piece)
		if _, err := c.w.Write(p[:n]); err != nil {
			return err
		}
		if err := c.rc().Flush(); err != nil {
			return err
		}
		if p = p[n:]; len(p) == 0 {
			return nil
		}
	}
}
