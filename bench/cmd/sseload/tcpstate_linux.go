package main

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// tcpEstablished is the TCP state of an open connection (tcpi_state).
const tcpEstablished = unix.BPF_TCP_ESTABLISHED

// tcpState returns the TCP state of socket fd, from TCP_INFO.
func tcpState(fd uintptr) (uint8, bool) {
	info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, false
	}
	return info.State, true
}

// tcpStateName names a TCP state as ss(8) does.
func tcpStateName(st uint8) string {
	switch st {
	case unix.BPF_TCP_ESTABLISHED:
		return "ESTAB"
	case unix.BPF_TCP_CLOSE_WAIT:
		return "CLOSE-WAIT"
	case unix.BPF_TCP_CLOSE:
		return "CLOSE"
	case unix.BPF_TCP_LAST_ACK:
		return "LAST-ACK"
	case unix.BPF_TCP_FIN_WAIT1:
		return "FIN-WAIT-1"
	case unix.BPF_TCP_FIN_WAIT2:
		return "FIN-WAIT-2"
	case unix.BPF_TCP_TIME_WAIT:
		return "TIME-WAIT"
	}
	return "state " + strconv.Itoa(int(st))
}

// recvQueued returns the bytes waiting in socket fd's receive queue.
func recvQueued(fd uintptr) (int, bool) {
	n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	return n, err == nil
}
