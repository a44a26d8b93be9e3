package sse

import (
	"math"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// canTryWrite: Linux has writev, called here without the runtime's
// poller, so a write can be tried without waiting.
const canTryWrite = true

// tryState is what tryWrite keeps between calls, so that it allocates
// nothing: the syscall's iovecs (borrowed from iovPool for the call),
// results, and callback, made once; and what it learnt of the client.
type tryState struct {
	iov    []syscall.Iovec
	wrote  uintptr
	errno  syscall.Errno
	check  bool  // ask the socket, after the write, what it holds unsent
	unsent int32 // its answer
	window int32 // and the client's receive window; -1: not known
	fn     func(fd uintptr) bool
	proven int32 // bytes the client took in turn since it was last behind, up to provenBytes
	sent   int32 // bytes written since the socket was last asked, while not proven
}

// A client is written in probes until it is known to read. Thousands of
// clients that connect and never read cannot be told from the others
// until their receive window closes, and a writer that gave each the
// whole backlog a socket takes (tens of KiB) before it blocks made every
// other client wait for all those copies. So until a client took
// provenBytes in turn, a writer sends it at most probeBytes at a time and
// asks the socket after each probeBytes (one more system call) how much
// it holds unsent:
// above lagBytes, the client is behind, and its write is handed off as
// one that would block (see fanout.Sink.WriteAt). A client proven once is
// written whole, as before; one whose socket is found full is proven
// again from nothing.
const (
	probeBytes  = 4 << 10
	lagBytes    = 2 << 10
	provenBytes = 16 << 10
)

// narrowWindow: a client whose receive window is smaller than this
// cannot take a proof (provenBytes) at once, and until it is proven it is
// served after the others (see fanout.Sink.Narrow). A client that never reads
// shows it from its first write when it asked for a small buffer, which
// is what makes thousands of them cheap to open; one with the system's
// buffers (64 KiB and more) shows it once it has left that much unread.
const narrowWindow = provenBytes

// tcpInfo is the beginning of Linux's struct tcp_info, up to
// tcpi_snd_wnd (Linux 5.4): what tryWrite and closeEnded ask the socket.
type tcpInfo struct {
	state      uint8 // tcpi_state
	_          [67]byte
	rtt        uint32 // tcpi_rtt: the smoothed round trip, in microseconds
	_          [48]byte
	bytesAcked uint64 // tcpi_bytes_acked (Linux 4.1)
	_          [16]byte
	notsent    uint32 // tcpi_notsent_bytes: bytes held not yet sent
	_          [80]byte
	sndWnd     uint32 // tcpi_snd_wnd: the client's receive window
}

// windowOf is the receive window in ti, or -1 when the kernel is older
// than the field.
func windowOf(ti *tcpInfo, n int) int32 {
	if n < int(unsafe.Sizeof(*ti)) {
		return -1
	}
	return int32(min(ti.sndWnd, math.MaxInt32))
}

// askSocket returns what the socket holds unsent and the client's
// receive window (-1: not known); ok is false when the kernel would not
// say.
func (o *ownedConn) askSocket() (unsent uint32, window int32, ok bool) {
	_ = o.raw.Control(func(fd uintptr) {
		var ti tcpInfo
		if n, e := tcpInfoOf(fd, &ti); e == 0 {
			unsent, window, ok = ti.notsent, windowOf(&ti, n), true
		}
	})
	return unsent, window, ok
}

// caughtUp reports whether the socket holds at most lagBytes unsent, as a
// client that reads leaves it: a blocked write that went through may only
// have fit under TCP_NOTSENT_LOWAT, the client having read nothing.
func (o *ownedConn) caughtUp() bool {
	unsent, _, ok := o.askSocket()
	return ok && unsent <= lagBytes
}

// sizeUp notes whether the client's receive window is narrow, before the
// engine's first write.
func (o *ownedConn) sizeUp() {
	if _, w, ok := o.askSocket(); ok {
		o.narrow.Store(w >= 0 && w < narrowWindow)
	}
}

// TCP states as Linux numbers them (include/net/tcp_states.h) in which
// the client acknowledged the server's FIN.
const (
	tcpFinWait2 = 5
	tcpTimeWait = 6
	tcpClose    = 7
)

// endState is what closeEnded learns of the connection of an ended
// stream, once its FIN was queued.
type endState struct {
	// out: everything the socket held, the FIN included, went out into
	// the client's open window (which its kernel acknowledges whether
	// the client reads or not), or the client acknowledged the FIN.
	// Closing the connection then leaves nothing waiting on it.
	out    bool
	closed bool          // the client's receive window is closed
	acked  uint64        // bytes the client acknowledged so far
	rtt    time.Duration // the round trip to the client
}

// endStateOf asks the socket raw; ok is false when the kernel would not
// say all of it (before Linux 5.4, and on linux/386).
func endStateOf(raw syscall.RawConn) (st endState, ok bool) {
	_ = raw.Control(func(fd uintptr) {
		var ti tcpInfo
		n, e := tcpInfoOf(fd, &ti)
		if e != 0 || n < int(unsafe.Sizeof(ti)) {
			return
		}
		ok = true
		switch ti.state {
		case tcpFinWait2, tcpTimeWait, tcpClose:
			st.out = true
		}
		st.out = st.out || ti.notsent == 0 && ti.sndWnd > 0
		st.closed = ti.sndWnd == 0
		st.acked = ti.bytesAcked
		st.rtt = time.Duration(ti.rtt) * time.Microsecond
	})
	return st, ok
}

// maxIov is the most iovecs a writev takes on Linux (IOV_MAX).
const maxIov = 1024

// iovPool holds iovec slices for tryWrite: a writer's batch of queued
// events takes up to maxIov of them, too many to keep per connection.
var iovPool = sync.Pool{New: func() any { return new([]syscall.Iovec) }}

// writevOnce is the callback of RawConn.Write: one writev, retried only
// when interrupted; it never asks to wait for the socket.
func (o *ownedConn) writevOnce(fd uintptr) bool {
	t := &o.try
	for {
		t.wrote, _, t.errno = syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&t.iov[0])), uintptr(len(t.iov)))
		if t.errno != syscall.EINTR {
			break
		}
	}
	if t.check && t.errno == 0 {
		var ti tcpInfo
		if n, e := tcpInfoOf(fd, &ti); e != 0 {
			t.unsent, t.window = 0, -1
		} else {
			t.unsent, t.window = int32(min(ti.notsent, math.MaxInt32)), windowOf(&ti, n)
		}
	}
	return true
}

// tryWrite writes o.vec to the socket with writev, without waiting, and
// consumes from o.vec what it wrote. It reports whether everything was
// written; false with a nil error means the socket is full, its client is
// behind (see provenBytes), or o.vec had more than maxIov buffers.
func (o *ownedConn) tryWrite() (done bool, err error) {
	t := &o.try
	if t.fn == nil {
		t.fn = o.writevOnce
	}
	iov := iovPool.Get().(*[]syscall.Iovec)
	for {
		limit := math.MaxInt
		if t.proven < provenBytes {
			limit = int(probeBytes - t.sent)
		}
		t.iov = (*iov)[:0]
		size := 0
		for _, b := range o.vec {
			if len(t.iov) == maxIov || size == limit {
				break
			}
			if len(b) > 0 {
				n := min(len(b), limit-size)
				v := syscall.Iovec{Base: &b[0]}
				v.SetLen(n)
				t.iov = append(t.iov, v)
				size += n
			}
		}
		if size == 0 {
			done = true
			break
		}
		t.wrote, t.errno = 0, 0
		t.check = size == limit
		cerr := o.raw.Write(t.fn)
		clear(t.iov)     // keep no reference to the data
		*iov = t.iov[:0] // and keep what it grew to for the next probe
		if cerr != nil {
			err = cerr
			break
		}
		if t.errno == syscall.EAGAIN {
			t.proven, t.sent = 0, 0
			o.narrow.Store(true)
			break
		}
		if t.errno != 0 {
			err = t.errno
			break
		}
		left := int(t.wrote)
		for len(o.vec) > 0 && left >= len(o.vec[0]) {
			left -= len(o.vec[0])
			o.vec = o.vec[1:]
		}
		if len(o.vec) > 0 {
			o.vec[0] = o.vec[0][left:]
		}
		behind := false
		switch {
		case int(t.wrote) < size:
			t.proven, t.sent, behind = 0, 0, true // full
		case t.proven == provenBytes:
		case !t.check:
			t.sent += int32(t.wrote)
		case t.unsent > lagBytes:
			t.proven, t.sent, behind = 0, 0, true
		default:
			t.proven = min(t.proven+probeBytes, provenBytes)
			t.sent = 0
			o.narrow.Store(t.proven < provenBytes && t.window >= 0 && t.window < narrowWindow)
		}
		if behind {
			o.narrow.Store(true)
		}
		if len(o.vec) == 0 {
			done = true
			break
		}
		if behind {
			break
		}
	}
	*iov, t.iov = t.iov[:0], nil
	iovPool.Put(iov)
	return done, err
}

// tcpNotsentLowat is TCP_NOTSENT_LOWAT.
const tcpNotsentLowat = 25

// unsentLowat is the most the kernel takes for a taken connection beyond
// what it can send (see limitUnsent). With 10 000 clients that never read
// on loopback, 4 KiB did better than 16 KiB (the healthy clients' p99 in
// the first second, bench/RESULTS.md). A client far away, whose network
// window is full, has its larger writes handed off sooner with it: they
// then finish on a goroutine of their own as the window opens.
const unsentLowat = 4 << 10

// limitUnsent has the kernel take no more for the connection than
// unsentLowat beyond what it can send (TCP_NOTSENT_LOWAT): a blocked
// write to a client that stopped reading then leaves that much in the
// socket rather than its whole send buffer, and the writer that waits for
// room is woken once less than that is left to send. What the network
// carries is not bounded by it.
func limitUnsent(raw syscall.RawConn) {
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpNotsentLowat, unsentLowat)
	})
}
