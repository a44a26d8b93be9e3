package sse

import (
	"context"
	"fmt"
	"io"
	"time"
)

// idleTimer cancels a connection that receives nothing for too long. Its
// zero value (no timeout) does nothing.
type idleTimer struct {
	d time.Duration
	t *time.Timer
}

func newIdleTimer(d time.Duration, cancel context.CancelCauseFunc) *idleTimer {
	it := &idleTimer{d: d}
	if d > 0 {
		it.t = time.AfterFunc(d, func() {
			cancel(fmt.Errorf("%w: nothing received for %v", ErrIdleTimeout, d))
		})
	}
	return it
}

func (it *idleTimer) reset() {
	if it.t != nil {
		it.t.Reset(it.d)
	}
}

func (it *idleTimer) pause() {
	if it.t != nil {
		it.t.Stop()
	}
}

func (it *idleTimer) stop() { it.pause() }

// idleReader restarts the idle timer whenever bytes arrive.
type idleReader struct {
	r io.Reader
	t *idleTimer
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.t.reset()
	}
	return n, err
}
