package sse

import (
	"errors"
	"os"
	"sync"
	"syscall"
)

// Reading owned connections without a goroutine each.
//
// An owned connection is read only to notice its client leaving: a
// client sends nothing on a stream, and what it does send is discarded.
// A goroutine per connection blocked in a read (readOwned) costs a stream
// its stack and record, about 2.5 KiB, for nothing else. On Linux, the
// plain TCP connections are watched instead by one epoll instance, which
// the runtime's poller waits on like any socket: one goroutine (run)
// reads the connections that have something to say, until none is left
// to watch. The others (TLS, which must read its records, and every
// connection elsewhere) keep their reader.

// ownedWatch is the process's watch over owned connections.
var ownedWatch connWatch

// watchBatch is the most events one wait returns; readPiece, the most
// read from one connection per event, so that a client that floods its
// connection has no more turns than the others.
const (
	watchBatch = 128
	readPiece  = 16 << 10
)

// connWatch is an epoll instance and the streams it watches, keyed by the
// token their registration carries (a file descriptor number is reused
// once closed; a token never is). mu guards it; it is taken after a
// Conn's locks (it is never held while a stream is ended).
type connWatch struct {
	mu     sync.Mutex
	ep     *os.File // nil while no connection is watched
	epRaw  syscall.RawConn
	conns  map[uint64]watched
	next   uint64
	broken bool // the runtime's poller failed to wait on an instance: no more watching
}

// watched is a watched stream and its connection.
type watched struct {
	c *Conn
	o *ownedConn
}

// watch has o, the owned connection of c, watched for its client
// leaving, and reports whether it is: it is not when it has no raw
// socket (TLS) or the kernel refused. Whatever net/http read ahead of
// the request is dropped: it would have been discarded. It is called
// before o is c's, so that o.token is set when others see o.
func (w *connWatch) watch(c *Conn, o *ownedConn) bool {
	if o.raw == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken {
		return false
	}
	if w.ep == nil {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return false
		}
		if err := syscall.SetNonblock(fd, true); err != nil {
			syscall.Close(fd)
			return false
		}
		// Non-blocking, so os.NewFile hands it to the runtime's poller.
		ep := os.NewFile(uintptr(fd), "epoll")
		raw, err := ep.SyscallConn()
		if err != nil {
			ep.Close()
			return false
		}
		w.ep, w.epRaw = ep, raw
		w.conns = make(map[uint64]watched)
		go w.run(ep, raw)
	}
	w.next++
	token := w.next
	ev := syscall.EpollEvent{Events: readEvents, Fd: int32(token), Pad: int32(token >> 32)}
	var err error
	ctl := func(fd uintptr) {
		err = w.ctl(syscall.EPOLL_CTL_ADD, int(fd), &ev)
	}
	if cerr := o.raw.Control(ctl); cerr != nil || err != nil {
		w.closeIfIdleLocked()
		return false
	}
	o.br = nil
	o.token = token
	w.conns[token] = watched{c, o}
	return true
}

// Events a watched connection is registered for; with roomEvents while
// a suspended write waits for its socket to take data (see suspend.go).
const (
	readEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP
	roomEvents = readEvents | syscall.EPOLLOUT
)

// awaitRoom has the watch tell o's stream (Conn.roomFor) once its socket
// takes data again, and reports whether it will: not when o is not
// watched. It is called with the Conn's mu held.
func (w *connWatch) awaitRoom(o *ownedConn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.conns[o.token]; o.token == 0 || !ok {
		return false
	}
	return w.modLocked(o, roomEvents) == nil
}

// modLocked registers o for events; w.mu must be held.
func (w *connWatch) modLocked(o *ownedConn, events uint32) error {
	ev := syscall.EpollEvent{Events: events, Fd: int32(o.token), Pad: int32(o.token >> 32)}
	var err error
	if cerr := o.raw.Control(func(fd uintptr) { err = w.ctl(syscall.EPOLL_CTL_MOD, int(fd), &ev) }); cerr != nil {
		return cerr
	}
	return err
}

// ctl is epoll_ctl on the current instance; w.mu must be held.
func (w *connWatch) ctl(op, fd int, ev *syscall.EpollEvent) error {
	var cerr error
	if err := w.epRaw.Control(func(ep uintptr) { cerr = syscall.EpollCtl(int(ep), op, fd, ev) }); err != nil {
		return err
	}
	return cerr
}

// unwatch stops watching o, before its connection is closed; it does
// nothing when o is not watched.
func (w *connWatch) unwatch(o *ownedConn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.conns[o.token]; o.token == 0 || !ok {
		return
	}
	delete(w.conns, o.token)
	// The connection may be closing already, which removes it from the
	// instance by itself.
	_ = o.raw.Control(func(fd uintptr) { _ = w.ctl(syscall.EPOLL_CTL_DEL, int(fd), nil) })
	w.closeIfIdleLocked()
}

// closeIfIdleLocked closes the instance when it watches nothing, which
// ends run.
func (w *connWatch) closeIfIdleLocked() {
	if len(w.conns) == 0 && w.ep != nil {
		w.ep.Close()
		w.ep, w.epRaw, w.conns = nil, nil, nil
	}
}

// run waits on ep for connections with something to read, and reads
// them, until ep is closed.
func (w *connWatch) run(ep *os.File, raw syscall.RawConn) {
	var evs [watchBatch]syscall.EpollEvent
	var ready, room []watched
	buf := make([]byte, 4<<10)
	for {
		n := 0
		err := raw.Read(func(fd uintptr) bool {
			var err error
			n, err = syscall.EpollWait(int(fd), evs[:], 0)
			return err != syscall.EINTR && n > 0
		})
		if err != nil {
			w.failed(ep)
			return
		}
		ready, room = ready[:0], room[:0]
		w.mu.Lock()
		if w.ep != ep {
			w.mu.Unlock()
			return
		}
		for _, ev := range evs[:n] {
			s, ok := w.conns[uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32]
			if !ok {
				continue
			}
			if ev.Events&syscall.EPOLLOUT != 0 {
				// Reported until the socket is full again: asked for
				// once, by the suspended write now told.
				_ = w.modLocked(s.o, readEvents)
				room = append(room, s)
			}
			if ev.Events&^syscall.EPOLLOUT != 0 {
				ready = append(ready, s)
			}
		}
		w.mu.Unlock()
		for _, s := range room {
			s.c.roomFor()
		}
		for _, s := range ready {
			if !drainOwned(s.o, buf) {
				w.unwatch(s.o)
				s.c.shutdown(errClientGone)
			}
		}
		clear(ready)
		clear(room)
	}
}

// failed ends the run on ep: when unwatch closed ep, nothing is left to
// watch; otherwise the runtime's poller could not wait on it, and each
// connection it watched gets a reader of its own, as it would have had
// without the watch, and so do those taken from now on.
func (w *connWatch) failed(ep *os.File) {
	w.mu.Lock()
	if w.ep != ep {
		w.mu.Unlock()
		return
	}
	w.broken = true
	conns := w.conns
	for _, s := range conns {
		_ = s.o.raw.Control(func(fd uintptr) { _ = w.ctl(syscall.EPOLL_CTL_DEL, int(fd), nil) })
		go s.c.readOwned(s.o)
	}
	w.ep, w.epRaw, w.conns = nil, nil, nil
	ep.Close()
	w.mu.Unlock()
	// Suspended writes can no longer wait for room here: told now, they
	// find that out (see continueOut).
	for _, s := range conns {
		s.c.roomFor()
	}
}

// drainOwned reads and discards up to readPiece bytes of what o's client
// sent, without waiting, and reports whether the connection is still
// open: false once the client closed it (or reset it), and when it was
// closed here.
func drainOwned(o *ownedConn, buf []byte) bool {
	open := true
	err := o.raw.Read(func(fd uintptr) bool {
		for got := 0; got < readPiece; {
			n, err := syscall.Read(int(fd), buf)
			switch {
			case n > 0:
				got += n
			case n == 0 && err == nil:
				open = false // end of stream: the client closed its side
				return true
			case errors.Is(err, syscall.EINTR):
			default:
				open = errors.Is(err, syscall.EAGAIN)
				return true
			}
		}
		return true
	})
	return open && err == nil
}
