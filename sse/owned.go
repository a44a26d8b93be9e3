package sse

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coregx/stream/sse/internal/fanout"
)

// Owned connections.
//
// A stream that a Hub or Server writes lives as long as its client wants,
// and its writes come from the engine, not from the handler. On HTTP/1.1
// the engine therefore takes the stream's connection over from net/http
// (Hijack) once the response has begun, and writes the rest of the
// chunked body itself. Owning the socket is what lets it keep its
// promises under load:
//
//   - The kernel's send buffer is bounded (SO_SNDBUF). Linux otherwise
//     grows it to megabytes (on loopback, from the first write) whatever
//     the client reads, so a few thousand clients that stop reading
//     exhaust the machine's TCP memory, and then every socket, healthy
//     ones included, waits for memory.
//   - A client that goes away is noticed at once, by a read on the
//     connection, as net/http's own reader would have.
//   - Every write can be given a deadline, and a stream that ends with
//     data its client did not read is reset without going through
//     net/http's buffers.
//
// What changes for the handler: once taken, the ResponseWriter must not
// be written (it returns http.ErrHijacked); the request's context ends
// when the handler returns, no longer when the client leaves ([Conn.Done]
// does); [http.Server.Close] and Shutdown no longer see the connection,
// so the Hub or Server must be closed to end it; middleware wrapping the
// ResponseWriter sees none of the events. [Options.KeepResponseWriter]
// turns the takeover off. HTTP/2 streams share their connection and are
// never taken, nor are responses to HEAD requests, HTTP/1.0 ones (not
// chunked), and writers that do not offer Hijack and write deadlines.

// defaultSendBuffer is the send buffer asked of the kernel for an owned
// connection (Linux doubles it for its bookkeeping). It bounds what a
// client that stopped reading holds in the kernel; a client that reads
// gets up to about this much per round trip (16 KiB per 50 ms: 320 KB/s),
// plenty for event streams, and more can be asked for.
const defaultSendBuffer = 16 << 10

// ownPolicy says whether, and how, an engine takes the connections of its
// streams over, and how its own handlers (ServeHTTP) hold them.
type ownPolicy struct {
	off        bool // Options.KeepResponseWriter
	detach     bool // Options.Detach
	sendBuffer int  // bytes; 0 leaves the kernel's
	onEnd      func(*http.Request, error)
}

func ownPolicyOf(opts *Options) ownPolicy {
	p := ownPolicy{off: opts.KeepResponseWriter, detach: opts.Detach, onEnd: opts.OnStreamEnd}
	switch {
	case opts.SendBuffer == 0:
		p.sendBuffer = defaultSendBuffer
	case opts.SendBuffer > 0:
		p.sendBuffer = opts.SendBuffer
	}
	return p
}

// ownedConn is the connection of a stream taken over from net/http.
type ownedConn struct {
	nc   net.Conn
	br   *bufio.Reader   // what net/http read ahead, while it holds some
	tcp  *net.TCPConn    // nc itself when plain TCP: written with writev
	raw  syscall.RawConn // tcp's, for writes that must not wait; nil where tryWrite cannot
	bufs [3][]byte       // the vector of write's one chunk (see writeChunk)
	vec  net.Buffers
	hdr  [18]byte // a chunk header: up to 16 hex digits and CRLF
	try  tryState // see tryWrite
	shut atomic.Bool
	// narrow: the client's receive window was small, or it was behind,
	// when last asked (see connSink.Narrow and tryWrite).
	narrow atomic.Bool
	// inline: taken by a hub's own handler, which reads the connection
	// (see waitEnd), not a goroutine of its own, unless it is watched.
	inline bool
	// token is o's in ownedWatch while it is watched (owned_watch_linux.go):
	// then nobody reads it. 0: not watched.
	token uint64

	// A suspended write (see suspend.go). rest, restStart and owner
	// belong to the write, that is to whoever holds the write lock;
	// resumer and dueAt are guarded by Conn.mu.
	rest      [][]byte       // what is left to write
	restStart int64          // when the write began, in Unix nanoseconds
	owner     fanout.Resumer // the engine's side of the write
	resumer   fanout.Resumer // owner while it waits to be told; nil once told
	dueAt     int64          // when the write times out; 0: never
	timer     *time.Timer    // fires at dueAt; made at the first suspension
}

var crlf = []byte("\r\n")

// lastChunk ends a chunked body that has no trailer.
var lastChunk = []byte("0\r\n\r\n")

// takeOverLocked takes c's connection from net/http when p allows it and
// the stream can be taken (see above); it does nothing otherwise, and
// when the connection is taken already. The write lock must be held, so
// that no write is in progress: Hijack flushes what net/http buffers.
//
// The connection is then read, to notice the client leaving: by the
// process's watch where it can (owned_watch_linux.go), and otherwise by
// a goroutine of its own, or, with inline, by the handler itself, which
// calls waitEnd (a hub's own handlers: one goroutine less per stream).
func (c *Conn) takeOverLocked(p ownPolicy, inline bool) {
	if p.off || c.own.Load() != nil || !c.deadlines || c.closed.Load() ||
		c.r.ProtoMajor != 1 || c.r.ProtoMinor < 1 || c.r.Method == http.MethodHead ||
		c.w.Header().Get("Transfer-Encoding") == "identity" || c.requestEnded() {
		return
	}
	nc, brw, err := c.hijack()
	if err != nil {
		return
	}
	o := &ownedConn{nc: nc}
	tcp := innerTCP(nc)
	if tcp != nil && p.sendBuffer > 0 {
		_ = tcp.SetWriteBuffer(p.sendBuffer)
	}
	if t, ok := nc.(*net.TCPConn); ok {
		o.tcp = t
		if canTryWrite {
			o.raw, _ = t.SyscallConn()
			limitUnsent(o.raw)
			o.sizeUp()
		}
	}
	// Whatever net/http read ahead of the request is read first; a
	// client sends nothing more on a stream, so anything it does is
	// discarded.
	if brw.Reader.Buffered() > 0 {
		o.br = brw.Reader
	}
	o.inline = inline
	watched := ownedWatch.watch(c, o)
	c.own.Store(o)
	if !inline && !watched {
		go c.readOwned(o)
	}
}

// hijack takes the connection from net/http. A handler that already
// returned (Register called by a goroutine that outlived it) makes Hijack
// panic; the stream is then not taken.
func (c *Conn) hijack() (nc net.Conn, brw *bufio.ReadWriter, err error) {
	defer func() {
		if recover() != nil {
			nc, brw, err = nil, nil, http.ErrHijacked
		}
	}()
	return c.rc().Hijack()
}

// innerTCP returns the TCP connection under nc (through NetConn, which a
// *tls.Conn has), or nil.
func innerTCP(nc net.Conn) *net.TCPConn {
	for {
		switch t := nc.(type) {
		case *net.TCPConn:
			return t
		case interface{ NetConn() net.Conn }:
			nc = t.NetConn()
		default:
			return nil
		}
	}
}

// readOwned reads the owned connection until it fails: the client went
// away (or the stream ended and closed it). It ends the stream then.
func (c *Conn) readOwned(o *ownedConn) {
	// A one-byte buffer on the heap keeps the reader's stack at its
	// smallest for the streams whose clients send nothing, which is
	// all of them but a misbehaving few.
	b := make([]byte, 1)
	for {
		var n int
		var err error
		if o.br != nil && o.br.Buffered() > 0 {
			n, err = o.br.Read(b[:min(len(b), o.br.Buffered())])
		} else {
			o.br = nil
			n, err = o.nc.Read(b)
		}
		if err != nil {
			c.shutdown(errClientGone)
			return
		}
		if n > 0 && len(b) == 1 {
			b = make([]byte, 4<<10) // discard the rest faster
		}
	}
}

// write writes p to the owned connection as one chunk. With stall, it
// first writes what the socket takes at once, without waiting (where the
// platform allows it; see tryWrite), and calls stall before it waits for
// the rest: the engine's writer then hands the client off at once instead
// of finding the write stuck later.
func (o *ownedConn) write(p []byte, stall func()) error {
	if len(p) == 0 {
		return nil
	}
	if o.tcp != nil {
		o.bufs = [3][]byte{nil, p, nil}
		err := o.writeChunk(o.bufs[:], len(p), stall, false)
		o.bufs = [3][]byte{} // keep no reference to p
		return err
	}
	// Over TLS, one record for the chunk rather than three.
	h := strconv.AppendUint(o.hdr[:0], uint64(len(p)), 16)
	h = append(h, '\r', '\n')
	b := getBuf()
	b.b = append(append(append(b.b[:0], h...), p...), crlf...)
	_, err := o.nc.Write(b.b)
	putBuf(b)
	return err
}

// writeChunk writes v, events queued for the client, as one chunk with
// writev: v[0] and v[len(v)-1] are left empty for the chunk's header and
// CRLF, and size is the bytes between. Only plain TCP connections are
// written so (see Conn.vectored). With keep, see writeVec.
func (o *ownedConn) writeChunk(v [][]byte, size int, stall func(), keep bool) error {
	if size == 0 {
		return nil
	}
	h := strconv.AppendUint(o.hdr[:0], uint64(size), 16)
	v[0], v[len(v)-1] = append(h, '\r', '\n'), crlf
	o.vec = v
	err := o.writeVec(stall, keep)
	o.vec = nil
	return err
}

// errKept is writeVec's answer when it kept what the socket did not take.
var errKept = errors.New("sse: write kept for later")

// writeVec writes o.vec with writev: first, with stall, what the socket
// takes without waiting, then, after calling stall, the rest. With keep,
// on a watched connection, it does not wait for the rest: it keeps it in
// o.rest and returns errKept (see suspend.go). The chunk header o.vec
// may point into, o.hdr, is only written again by the next chunk.
func (o *ownedConn) writeVec(stall func(), keep bool) error {
	if stall != nil && o.raw != nil {
		done, err := o.tryWrite()
		if done || err != nil {
			return err
		}
		if keep && o.token != 0 {
			o.rest = append(o.rest[:0], o.vec...)
			return errKept
		}
		stall()
	}
	_, err := o.vec.WriteTo(o.tcp)
	if err == nil && stall != nil && o.caughtUp() {
		// The client took what it was behind on: it reads, and is served
		// with the others again until it falls behind anew, rather than
		// after every client still narrow.
		o.narrow.Store(false)
	}
	return err
}

// finish closes the owned connection of an ended stream: with a
// reset when the client did not read what it was sent, otherwise after
// the end of the chunked body (see closeEnded; limit is the write
// timeout). That end is written at once when the socket takes it without
// waiting (see tryWrite), which it does for a client that reads: whoever
// ended the stream, a hub's writer or Shutdown itself, has then written
// it, and sent the FIN after it, before it returns, so a program that
// exits once Shutdown returned has ended its streams cleanly (the kernel
// delivers what the socket holds). Otherwise it may take endGrace on a
// client that reads slowly, and is written by a goroutine of its own
// rather than by whoever ended the stream (Close ends thousands).
func (o *ownedConn) finish(reset bool, limit time.Duration) {
	if !o.shut.CompareAndSwap(false, true) {
		return
	}
	if o.timer != nil {
		o.timer.Stop()
	}
	ownedWatch.unwatch(o)
	if reset {
		abortConn(o.nc)
		return
	}
	rest := net.Buffers{lastChunk}
	if o.raw != nil {
		o.vec = rest
		done, err := o.tryWrite()
		rest, o.vec = o.vec, nil
		switch {
		case err != nil:
			abortConn(o.nc)
			return
		case done:
			o.closeEnded(limit)
			return
		}
	}
	go func() {
		_ = o.nc.SetWriteDeadline(time.Now().Add(endGrace))
		if _, err := rest.WriteTo(o.nc); err != nil {
			abortConn(o.nc)
			return
		}
		o.closeEnded(limit)
	}()
}

// How closeEnded follows a connection whose client has not taken all of
// it: it looks every endCheck, and resets it once the client's window has
// stayed closed with nothing taken for endStall (or four round trips to
// the client, when longer: a client far away that reads needs one to say
// so).
const (
	endCheck = 250 * time.Millisecond
	endStall = 500 * time.Millisecond
)

// closeEnded closes the owned connection once the end of its body is
// written. The FIN that closing sends goes after what the socket still
// holds, and a client whose receive window is closed takes neither: a
// client that stopped reading just as its stream ended gracefully (its
// last write went through, into its last free bytes) would keep the
// server's side of the connection open, with the data it does not read,
// until the kernel gives up on it, minutes later. So where it can tell
// (TCP on Linux, plain or under TLS), closeEnded sends the FIN at once
// (closeWrite, after TLS's close_notify), and closes the connection as
// soon as everything, the FIN included, has gone out to the client (a
// client that reads: at once) or the client acknowledged the FIN. Until
// then it looks every endCheck, and resets the connection of a client
// whose window stays closed while it takes nothing (see endStall), or
// that is not done limit after the end (when limit is positive: the write
// timeout). A client that reads slowly, or from far away, keeps its
// window open and gets every byte.
func (o *ownedConn) closeEnded(limit time.Duration) {
	raw := o.raw
	if raw == nil { // over TLS: the TCP connection under it
		if t := innerTCP(o.nc); t != nil {
			raw, _ = t.SyscallConn()
		}
	}
	if raw == nil {
		_ = o.nc.Close()
		return
	}
	if closeWrite(o.nc) != nil {
		abortConn(o.nc)
		return
	}
	w := &endWatch{o: o, raw: raw, since: time.Now()}
	if limit > 0 {
		w.until = w.since.Add(limit)
	}
	w.check() // the first look: a client that reads is done already
}

// endWatch follows the connection of an ended stream until the client
// has taken all of it (see closeEnded).
type endWatch struct {
	o     *ownedConn
	raw   syscall.RawConn // the TCP connection's
	acked uint64          // bytes the client had acknowledged at the last look
	since time.Time       // when that count last grew (or the watch began)
	until time.Time       // zero: no limit
}

// check looks at the connection: it closes it, resets it, or looks
// again after endCheck.
func (w *endWatch) check() {
	st, ok := endStateOf(w.raw)
	now := time.Now()
	switch {
	case !ok || st.out:
		_ = w.o.nc.Close()
	case !w.until.IsZero() && now.After(w.until):
		abortConn(w.o.nc)
	case st.acked != w.acked:
		w.acked, w.since = st.acked, now
		time.AfterFunc(endCheck, w.check)
	case st.closed && now.Sub(w.since) >= max(endStall, 4*st.rtt):
		abortConn(w.o.nc)
	default:
		time.AfterFunc(endCheck, w.check)
	}
}

// closeWrite shuts down the writing side of each layer of nc, from the
// outside in: a TLS connection sends its close_notify, the TCP
// connection its FIN.
func closeWrite(nc net.Conn) error {
	for {
		if cw, ok := nc.(interface{ CloseWrite() error }); ok {
			if err := cw.CloseWrite(); err != nil {
				return err
			}
		}
		u, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		nc = u.NetConn()
	}
}

// errStreamDeadline ends a detached stream whose request's context had a
// deadline that passed.
var errStreamDeadline = fmt.Errorf("%w: %w", ErrConnectionClosed, context.DeadlineExceeded)

// detach lets the handler of c, a stream opened by a hub's own handler,
// return while the stream goes on (Options.Detach), and has end called
// once the stream ended. A goroutine of its own reads the connection from
// then on, unless the process's watch does (then nothing runs for the
// stream until it ends).
// The request's context ends when the handler returns, so it stops
// telling whether the client is there (the connection does); its deadline
// still ends the stream. detach reports false, and does nothing, when c's
// connection was not taken over: the handler must then wait as usual.
//
// The ResponseWriter is let go of, so that net/http frees what it kept
// for the connection (its buffers) with the handler's goroutine.
func (c *Conn) detach(end func()) bool {
	o := c.own.Load()
	if o == nil || !o.inline {
		return false
	}
	c.detached.Store(true)
	if dl, ok := c.rctx.Deadline(); ok {
		c.mu.Lock()
		if c.cause == nil {
			t := time.AfterFunc(time.Until(dl), func() { c.shutdown(errStreamDeadline) })
			x := c.extLocked()
			prev := x.stop
			x.stop = func() bool {
				stopped := t.Stop()
				if prev != nil {
					prev()
				}
				return stopped
			}
		}
		c.mu.Unlock()
	}
	c.lockWrite()
	c.w = nil // only read before the takeover (see rc)
	c.unlockWrite()
	if o.token != 0 {
		// The watch reads the connection: nothing waits for the end
		// until it comes.
		if !c.watch(endFunc(func() { go endDetached(c, end) })) {
			go endDetached(c, end)
		}
		return true
	}
	go func() {
		c.readOwned(o)
		endDetached(c, end)
	}()
	return true
}

// endDetached runs end once the detached stream c has ended.
func endDetached(c *Conn, end func()) {
	<-c.Done()
	end()
}

// endFunc is a fanout.Watcher that calls itself.
type endFunc func()

func (f endFunc) StreamEnded() { f() }
