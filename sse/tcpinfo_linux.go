//go:build linux && !386

package sse

import (
	"syscall"
	"unsafe"
)

// tcpInfoOf fills ti from fd and reports how much of it the kernel gave.
func tcpInfoOf(fd uintptr, ti *tcpInfo) (int, syscall.Errno) {
	n := uint32(unsafe.Sizeof(*ti))
	_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(ti)), uintptr(unsafe.Pointer(&n)), 0)
	return int(n), e
}
