package sse

import (
	"sync"
	"syscall"
	"unsafe"
)

// canTryWrite: Linux has writev, called here without the runtime's
// poller, so a write can be tried without waiting.
const canTryWrite = true

// tryState is what tryWrite keeps between calls, so that it allocates
// nothing: the syscall's iovecs (borrowed from iovPool for the call),
// results, and callback, made once.
type tryState struct {
	iov   []syscall.Iovec
	wrote uintptr
	errno syscall.Errno
	fn    func(fd uintptr) bool
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
			return true
		}
	}
}

// tryWrite makes one non-blocking writev of o.vec (at most maxIov of its
// buffers) on the socket, and consumes from o.vec what it wrote. It
// reports whether everything was written; false with a nil error means
// the socket is full, or o.vec had more than maxIov buffers.
func (o *ownedConn) tryWrite() (done bool, err error) {
	t := &o.try
	if t.fn == nil {
		t.fn = o.writevOnce
	}
	iov := iovPool.Get().(*[]syscall.Iovec)
	t.iov = (*iov)[:0]
	for _, b := range o.vec {
		if len(b) > 0 && len(t.iov) < maxIov {
			v := syscall.Iovec{Base: &b[0]}
			v.SetLen(len(b))
			t.iov = append(t.iov, v)
		}
	}
	var cerr error
	t.wrote, t.errno = 0, 0
	if len(t.iov) > 0 {
		cerr = o.raw.Write(t.fn)
	}
	clear(t.iov) // keep no reference to the data
	*iov, t.iov = t.iov[:0], nil
	iovPool.Put(iov)
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
