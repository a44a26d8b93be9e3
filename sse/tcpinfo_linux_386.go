package sse

import (
	"syscall"
	"unsafe"
)

// siocOutqNSD is SIOCOUTQNSD: the bytes a TCP socket holds not yet sent.
const siocOutqNSD = 0x894B

// tcpInfoOf, on linux/386, where getsockopt goes through socketcall,
// asks only what is unsent (SIOCOUTQNSD) and reports ti short of the
// receive window, which is then unknown (see windowOf).
func tcpInfoOf(fd uintptr, ti *tcpInfo) (int, syscall.Errno) {
	var unsent int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, siocOutqNSD, uintptr(unsafe.Pointer(&unsent))); e != 0 {
		return 0, e
	}
	ti.notsent = uint32(max(unsent, 0))
	return int(unsafe.Offsetof(ti.notsent)) + 4, 0
}
