package sse

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// goid returns the current goroutine's ID, read from its stack header.
func goid(t *testing.T) uint64 {
	var b [64]byte
	line := b[:runtime.Stack(b[:], false)]
	line = bytes.TrimPrefix(line, []byte("goroutine "))
	id, err := strconv.ParseUint(string(line[:bytes.IndexByte(line, ' ')]), 10, 64)
	if err != nil {
		t.Fatalf("parsing goroutine header %q: %v", b[:], err)
	}
	return id
}

type funcTask func()

func (f funcTask) run() { f() }

// waitNoHelpers waits until no helper goroutine is left idle.
func waitNoHelpers(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * helperLinger)
	for {
		helpers.mu.Lock()
		idle := len(helpers.idle)
		helpers.mu.Unlock()
		if idle == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d helpers still idle %v after their last task", idle, 10*helperLinger)
		}
		time.Sleep(helperLinger / 4)
	}
}

func TestOffstackRunsOnHelper(t *testing.T) {
	waitNoHelpers(t)
	lingerOverride.Store(int64(time.Minute)) // the helper cannot leave between the tasks
	defer func() {
		lingerOverride.Store(0)
		offstack(funcTask(func() {})) // the helper waits helperLinger again after it
		waitNoHelpers(t)
	}()
	caller := goid(t)
	var first, second uint64
	offstack(funcTask(func() { first = goid(t) }))
	offstack(funcTask(func() { second = goid(t) }))
	if first == caller {
		t.Fatalf("task ran on the caller's goroutine %d", caller)
	}
	if second != first {
		t.Errorf("second task ran on goroutine %d, want the idle helper %d", second, first)
	}
}

func TestOffstackHelpersExitWhenIdle(t *testing.T) {
	offstack(funcTask(func() {}))
	helpers.mu.Lock()
	idle := len(helpers.idle)
	helpers.mu.Unlock()
	if idle == 0 {
		t.Fatal("no helper idle right after a task")
	}
	waitNoHelpers(t)
}

func TestOffstackConcurrent(t *testing.T) {
	const n = 50
	var started sync.WaitGroup
	started.Add(n)
	release := make(chan struct{})
	var mu sync.Mutex
	ids := map[uint64]bool{}
	var done sync.WaitGroup
	for range n {
		done.Go(func() {
			offstack(funcTask(func() {
				mu.Lock()
				ids[goid(t)] = true
				mu.Unlock()
				started.Done()
				<-release // every task holds its helper until all started
			}))
		})
	}
	started.Wait()
	close(release)
	done.Wait()
	if len(ids) != n {
		t.Errorf("%d concurrent tasks ran on %d goroutines, want %d", n, len(ids), n)
	}
}

func TestOffstackPanic(t *testing.T) {
	type boom struct{ n int }
	func() {
		defer func() {
			if p := recover(); p != (boom{7}) {
				t.Errorf("recovered %v, want the task's panic value %v", p, boom{7})
			}
		}()
		offstack(funcTask(func() { panic(boom{7}) }))
		t.Error("offstack returned after its task panicked")
	}()
	ran := false
	offstack(funcTask(func() { ran = true }))
	if !ran {
		t.Error("the task after a panic did not run")
	}
}

func TestOffstackInBubble(t *testing.T) {
	if inBubble() {
		t.Fatal("inBubble() = true outside a bubble")
	}
	synctest.Test(t, func(t *testing.T) {
		if !inBubble() {
			t.Fatal("inBubble() = false inside a bubble")
		}
		caller := goid(t)
		var ran uint64
		offstack(funcTask(func() { ran = goid(t) }))
		if ran != caller {
			t.Errorf("in a bubble the task ran on goroutine %d, want the caller %d", ran, caller)
		}
	})
}
