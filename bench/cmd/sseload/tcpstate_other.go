//go:build !linux

package main

// tcpEstablished is the TCP state of an open connection.
const tcpEstablished = 1

// tcpState is not available here: the stalled scenario then reports no
// client-side close times.
func tcpState(fd uintptr) (uint8, bool) { return 0, false }

// tcpStateName names a TCP state.
func tcpStateName(st uint8) string { return "unknown" }

// recvQueued is not available here.
func recvQueued(fd uintptr) (int, bool) { return 0, false }
