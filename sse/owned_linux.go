package sse

import (
	"syscall"
	"unsafe"
)

// canTryWrite: Linux has writev, called here without the runtime's
// poller, so a write can be tried without waiting.
const canTryWrite = true

// tryState is what tryWrite keeps between calls, so that it allocates
// nothing: the iovecs, the syscall's results, and its callback, made
// once.
type tryState struct {
	iov   [3]syscall.Iovec
	niov  int
	wrote uintptr
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

// writevOnce is the callback of RawConn.Write: one writev, retried only
// when interrupted; it never asks to wait for the socket.
func (o *ownedConn) writevOnce(fd uintptr) bool {
	t := &o.try
	for {
		t.wrote, _, t.errno = syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&t.iov[0])), uintptr(t.niov))
		if t.errno != syscall.EINTR {
			return true
		}
	}
}

// tryWrite makes one non-blocking writev of o.vec on the socket, and
// consumes from o.vec what it wrote. It reports whether everything was
// written; false with a nil error means the socket is full.
func (o *ownedConn) tryWrite() (done bool, err error) {
	t := &o.try
	if t.fn == nil {
		t.fn = o.writevOnce
	}
	t.niov = 0
	for _, b := range o.vec {
		if len(b) > 0 {
			t.iov[t.niov].Base = &b[0]
			t.iov[t.niov].SetLen(len(b))
			t.niov++
		}
	}
	cerr := o.raw.Write(t.fn)
	t.iov = [3]syscall.Iovec{} // keep no reference to the data
	if cerr != nil {
		return false, cerr
	}
	switch t.errno {
	case 0:
	case syscall.EAGAIN:
		return false, nil
	default:
		return false, t.errno
	}
	left := int(t.wrote)
	for len(o.vec) > 0 && left >= len(o.vec[0]) {
		left -= len(o.vec[0])
		o.vec = o.vec[1:]
	}
	if len(o.vec) == 0 {
		return true, nil
	}
	o.vec[0] = o.vec[0][left:]
	return false, nil
}
