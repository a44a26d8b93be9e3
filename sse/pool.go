package sse

import (
	"fmt"
	"sync"
)

// writerPool runs the goroutines that drain client queues. Workers start
// on demand and exit when no client is waiting, so an idle hub has none.
// A worker blocked on a client that does not read is busy, not idle: when
// clients wait and no worker is idle, more are started, up to max, so
// that stuck clients never delay the others.
type writerPool struct {
	hub  *hubCore
	base int // workers started at once for a burst
	max  int // workers at most

	mu      sync.Mutex
	ready   []*client
	head    int
	workers int
	busy    int // workers draining a client
	wg      sync.WaitGroup
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

// startWorkersLocked starts the workers the ready queue needs and unlocks
// p.mu.
func (p *writerPool) startWorkersLocked() {
	waiting := len(p.ready) - p.head
	idle := p.workers - p.busy
	start := min(waiting, p.base) - idle
	start = max(min(start, p.max-p.workers), 0)
	p.workers += start
	p.wg.Add(start)
	p.mu.Unlock()
	for range start {
		go p.work()
	}
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
	if p.head < len(p.ready) && p.busy == p.workers && p.workers < p.max {
		// Keep a worker free while clients wait: this one may block on
		// a client that does not read.
		p.workers++
		p.wg.Add(1)
		go p.work()
	}
	return c
}

// done marks a worker idle again after a drain.
func (p *writerPool) done() {
	p.mu.Lock()
	p.busy--
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

func (p *writerPool) wait() { p.wg.Wait() }

// drain writes everything queued for c in as few writes as it can, using
// b as scratch, and returns b for reuse.
func (p *writerPool) drain(c *client, b []byte) []byte {
	h := p.hub
	conn := c.conn
	conn.wmu.Lock()
	c.mu.Lock()
	q, n, extra := c.queue, c.bytes, c.extra
	c.queue, c.spare = c.spare, nil
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
				b = b[:0]
			}
			b = append(b, msg...)
			q[i] = nil
		}
		if err == nil && len(b) > 0 {
			err = conn.writeLocked(b)
		}
		if err == nil {
			h.delivered.Add(uint64(max(0, len(q)-extra)))
		}
	}
	conn.wmu.Unlock()
	clear(q)
	h.queued.Add(-n)

	c.mu.Lock()
	c.inflight = 0
	if cap(q) <= 64 {
		c.spare = q[:0]
	}
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
