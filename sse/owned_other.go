//go:build !linux

package sse

import (
	"syscall"
	"time"
)

// canTryWrite: elsewhere a write to an owned connection may block before
// the engine knows; its watchdog finds it (see internal/fanout/pool.go).
const canTryWrite = false

type tryState struct{}

func (o *ownedConn) tryWrite() (done bool, err error) { return false, nil }

// limitUnsent: see the Linux version.
func limitUnsent(syscall.RawConn) {}

// sizeUp: see the Linux version.
func (o *ownedConn) sizeUp() {}

// caughtUp: see the Linux version.
func (o *ownedConn) caughtUp() bool { return true }

// endStateOf: see the Linux version; closeEnded does not ask it here.
type endState struct {
	out, closed bool
	acked       uint64
	rtt         time.Duration
}

func endStateOf(syscall.RawConn) (endState, bool) { return endState{}, false }
