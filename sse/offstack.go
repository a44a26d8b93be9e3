package sse

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Opening a stream calls deep into net/http: the first flush writes the
// response header through a function with a frame of almost 3 KiB. On the
// handler's goroutine, which lives as long as the stream, that would double
// its stack for good (a stack shrinks only while less than a quarter of it
// is in use, and an idle handler sits under net/http's own deep frames).
// On a goroutine started per stream it costs as much in another way: the
// runtime reuses the exited goroutine with a stack of its adaptive starting
// size, so the next connection's goroutines start larger. So the deep part
// of Upgrade and Register runs on a few long-lived helper goroutines, which
// linger a little after their last task and then exit.

// helperLinger is how long an idle helper waits for another task: long
// enough to serve a burst of connections, short enough that helpers are
// gone soon after.
const helperLinger = 100 * time.Millisecond

// lingerOverride, when set, replaces helperLinger (in nanoseconds); for
// tests.
var lingerOverride atomic.Int64

func linger() time.Duration {
	if d := lingerOverride.Load(); d != 0 {
		return time.Duration(d)
	}
	return helperLinger
}

// task is work handed to a helper.
type task interface{ run() }

// helper is a goroutine that runs tasks, one at a time.
type helper struct {
	tasks chan task
	done  chan any // the panic value of the task, or nil
	idle  bool     // in helpers.idle; guarded by helpers.mu
}

var helpers struct {
	mu   sync.Mutex
	idle []*helper // most recently idle last
}

// offstack runs t on a helper goroutine and returns when t is done. A
// panic in t is raised again on the caller's goroutine.
func offstack(t task) {
	if inBubble() {
		// Goroutines outside a testing/synctest bubble must not touch
		// its channels and timers, and goroutines inside it must end
		// with it: run inline, where stack size does not matter.
		t.run()
		return
	}
	h := takeHelper()
	if h == nil {
		h = &helper{tasks: make(chan task), done: make(chan any)}
		go h.loop(t)
	} else {
		h.tasks <- t
	}
	if p := <-h.done; p != nil {
		panic(p)
	}
}

// takeHelper returns an idle helper, or nil when none is idle.
func takeHelper() *helper {
	helpers.mu.Lock()
	defer helpers.mu.Unlock()
	n := len(helpers.idle)
	if n == 0 {
		return nil
	}
	h := helpers.idle[n-1]
	helpers.idle[n-1] = nil
	helpers.idle = helpers.idle[:n-1]
	h.idle = false
	return h
}

// loop runs t and the tasks handed over after it, and exits after
// helperLinger without one.
func (h *helper) loop(t task) {
	timer := time.NewTimer(linger())
	for {
		p := runTask(t)
		// Idle before the caller goes on, so that its next task (Register
		// after Upgrade) finds this helper; one who takes it waits in
		// the select below for it.
		helpers.mu.Lock()
		h.idle = true
		helpers.idle = append(helpers.idle, h)
		helpers.mu.Unlock()
		h.done <- p
		timer.Reset(linger())

		select {
		case t = <-h.tasks:
			continue
		case <-timer.C:
		}
		helpers.mu.Lock()
		if h.idle {
			i := slices.Index(helpers.idle, h)
			helpers.idle = slices.Delete(helpers.idle, i, i+1)
			helpers.mu.Unlock()
			return
		}
		helpers.mu.Unlock()
		t = <-h.tasks // taken while the timer fired: its task is on the way
	}
}

// runTask runs t and returns what it panicked with, if it did.
func runTask(t task) (p any) {
	defer func() { p = recover() }()
	t.run()
	return nil
}

// processStart is the wall clock when the package was initialised, which
// happens outside any testing/synctest bubble.
var processStart = time.Now().Round(0)

// inBubble reports whether the caller may be in a testing/synctest bubble,
// whose fake clock starts at midnight UTC on 2000-01-01, long before any
// real process started. A wall clock stepped back since the process
// started also reads as true; that only costs the caller stack.
func inBubble() bool {
	return time.Now().Round(0).Before(processStart)
}
