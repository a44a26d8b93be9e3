package sse

import (
	"fmt"
	"sync"
	"time"
)

// stallAfter is how long clients may wait while every worker is busy and
// none finishes a drain before the pool starts more workers: the busy
// ones are then taken to be blocked on clients that do not read.
const stallAfter = 5 * time.Millisecond

// writerPool runs the goroutines that drain client queues. Workers start
// on demand, up to base, and exit when no client is waiting, so an idle
// hub has none. A worker blocked on a client that does not read is busy,
// not idle: when clients wait and no worker has finished a drain for
// stallAfter, base more are started, up to max, so that stuck clients
// never hold up the others. Healthy load therefore runs on base workers.
type writerPool struct {
	hub  *hubCore
	base int // workers started freely
	max  int // workers at most, counting those started for stalls

	mu       sync.Mutex
	ready    []*client
	head     int
	workers  int
	busy     int       // workers draining a client
	stuck    int       // busy workers taken to be blocked; see checkStall
	lastDone time.Time // when a worker last finished a drain
	stall    *time.Timer
	armed    bool // stall is set to fire
	stopped  bool // the hub closed: arm no more
	wg       sync.WaitGroup
}

// push makes clients ready to be written and starts workers as needed.
func (p *writerPool) push(cs []*client) {
	if len(cs) == 0 {
		return
	}
	p.mu.Lock()
	p.ready = append(p.ready, cs...)
	p.startWorkersLocked()
}

// pushOne is push for one client, without a slice to allocate.
func (p *writerPool) pushOne(c *client) {
	p.mu.Lock()
	p.ready = append(p.ready, c)
	p.startWorkersLocked()
}

// startWorkersLocked starts the workers the ready queue needs, up to
// base workers that are not stuck, and unlocks p.mu.
func (p *writerPool) startWorkersLocked() {
	waiting := len(p.ready) - p.head
	idle := p.workers - p.busy
	start := max(min(waiting-idle, p.base-(p.workers-p.stuck), p.max-p.workers), 0)
	if waiting > idle+start {
		p.armLocked()
	}
	p.startLocked(start)
}

// startLocked starts n workers and unlocks p.mu.
func (p *writerPool) startLocked(n int) {
	p.workers += n
	p.wg.Add(n)
	p.mu.Unlock()
	for range n {
		go p.work()
	}
}

// armLocked sets the stall check, when it is not set already.
func (p *writerPool) armLocked() {
	if p.armed || p.stopped || p.workers >= p.max {
		return
	}
	p.armed = true
	if p.stall == nil {
		p.stall = time.AfterFunc(stallAfter, p.checkStall)
	} else {
		p.stall.Reset(stallAfter)
	}
}

// checkStall runs stallAfter after clients found every worker busy. If
// they still wait and no drain finished meanwhile, every busy worker is
// taken to be stuck on a client that does not read, and base more
// workers start; while drains finish, it checks again later. Stuck
// workers do not count against base, so later bursts start workers at
// once; the count is corrected as drains finish.
func (p *writerPool) checkStall() {
	p.mu.Lock()
	p.armed = false
	waiting := len(p.ready) - p.head
	if waiting == 0 || p.workers > p.busy {
		p.mu.Unlock()
		return
	}
	if time.Since(p.lastDone) < stallAfter {
		p.armLocked()
		p.mu.Unlock()
		return
	}
	p.stuck = p.busy
	n := min(p.base, waiting, p.max-p.workers)
	if waiting > n {
		p.armLocked()
	}
	p.startLocked(n)
}

func (p *writerPool) pop() *client {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.head == len(p.ready) {
		p.workers--
		p.ready, p.head = p.ready[:0], 0
		return nil
	}
	c := p.ready[p.head]
	p.ready[p.head] = nil
	p.head++
	p.busy++
	if p.head < len(p.ready) && p.busy == p.workers {
		p.armLocked()
	}
	return c
}

// done marks a worker idle again after a drain.
func (p *writerPool) done() {
	now := time.Now()
	p.mu.Lock()
	p.busy--
	p.stuck = min(p.stuck, p.busy)
	p.lastDone = now
	p.mu.Unlock()
}

func (p *writerPool) work() {
	defer p.wg.Done()
	var b []byte
	for {
		c := p.pop()
		if c == nil {
			return
		}
		b = p.drain(c, b[:0])
		p.done()
		if cap(b) > 4*maxWrite {
			b = nil
		}
	}
}

// wait stops the stall checks and waits for the workers to exit.
func (p *writerPool) wait() {
	p.mu.Lock()
	p.stopped = true
	if p.stall != nil {
		p.stall.Stop()
		p.armed = false
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// drain writes everything queued for c in as few writes as it can, using
// b as scratch, and returns b for reuse.
func (p *writerPool) drain(c *client, b []byte) []byte {
	h := p.hub
	conn := c.conn
	conn.lockWrite()
	c.mu.Lock()
	q, n, extra := c.queue, c.bytes, c.extra
	c.queue = nil
	c.inflight, c.bytes, c.extra = n, 0, 0
	removed := c.removed
	c.mu.Unlock()

	var err error
	if !removed {
		for i, msg := range q {
			if len(b) > 0 && len(b)+len(msg) > maxWrite {
				if err = conn.writeLocked(b); err != nil {
					break
				}
				h.lastWrite.Store(conn.last.Load())
				b = b[:0]
			}
			b = append(b, msg...)
			q[i] = nil
		}
		if err == nil && len(b) > 0 {
			err = conn.writeLocked(b)
		}
		if err == nil {
			h.delivered.Add(uint64(max(0, len(q)-int(extra))))
			h.lastWrite.Store(conn.last.Load())
		}
	}
	conn.unlockWrite()
	clear(q)
	h.queued.Add(-n)

	putQueue(q)

	c.mu.Lock()
	c.inflight = 0
	again := len(c.queue) > 0 && !c.removed && err == nil
	c.scheduled = again
	finished := !again && c.closing && !c.removed && err == nil
	c.mu.Unlock()
	if again {
		p.pushOne(c)
	}
	if finished {
		conn.shutdown(fmt.Errorf("%w: server shutting down", ErrConnectionClosed))
	}
	return b
}
