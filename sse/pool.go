package sse

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
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
	busy     int    // workers draining a client
	stuck    int    // busy workers taken to be blocked; see checkStall
	drains   uint64 // drains finished so far
	armDrain uint64 // drains when the stall check was set
	stall    *time.Timer
	armed    bool // stall is set to fire
	stopped  bool // the hub closed: arm no more
	wg       sync.WaitGroup

	slots    []*writeSlot // every slot made, for the watchdog; a worker uses one
	idle     []*writeSlot // slots no worker uses, for the next to start
	watch    *time.Timer  // the watchdog; see writeSlot
	watching atomic.Bool  // watch is set to fire
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
	p.armDrain = p.drains
	setTimer(&p.stall, stallAfter, p.checkStall)
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
	if p.drains != p.armDrain { // progress since the check was set
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

// next takes the next client to drain, first marking the worker's last
// drain finished when it had one; it returns nil, and retires the worker,
// when no client is waiting. One lock serves both, since every drain but
// the last is followed by another.
func (p *writerPool) next(finished bool) *client {
	p.mu.Lock()
	defer p.mu.Unlock()
	if finished {
		p.busy--
		p.stuck = min(p.stuck, p.busy)
		p.drains++
	}
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

func (p *writerPool) work() {
	defer p.wg.Done()
	p.mu.Lock()
	var s *writeSlot
	if n := len(p.idle); n > 0 {
		s = p.idle[n-1]
		p.idle = p.idle[:n-1]
	} else {
		s = &writeSlot{pool: p}
		p.slots = append(p.slots, s)
	}
	p.mu.Unlock()
	drains := 0
	for c := p.next(false); c != nil; c = p.next(true) {
		p.drain(c, s)
		if cap(s.buf) > 4*maxWrite {
			s.buf = nil
		}
		if drains++; drains%yieldEvery == 0 {
			runtime.Gosched()
		}
	}
	p.mu.Lock()
	if len(p.idle) >= p.base || cap(s.buf) > keepBuf {
		// Idle slots keep small buffers only, and only base of them:
		// after a stall there may be many.
		s.buf = nil
	}
	p.idle = append(p.idle, s)
	p.mu.Unlock()
}

// yieldEvery is how many drains a worker makes between yields to the
// scheduler. A worker busy with a long fan-out never blocks, so without
// them the runtime's monitor finds the same goroutine running for 10 ms,
// preempts it, takes its P away when that lands in a write (a handoff to
// another thread) and, having done so, keeps polling every 20 µs. At
// 10 000 clients and 10 events/s on two cores, the monitor took 6.2 % of
// the server's CPU (perf); with a yield every 32 drains, 2.2 %, and the
// yields 0.4 %.
const yieldEvery = 32

// keepBuf is the largest write buffer an idle slot keeps.
const keepBuf = 16 << 10

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
	p.mu.Lock()
	if p.watch != nil {
		p.watch.Stop()
	}
	p.mu.Unlock()
}

// watchAfter is how long a hub's write may run before it gets a deadline.
// Writes to clients that read finish in microseconds, so setting and
// clearing a deadline around each (two timer updates in the runtime's
// poller, 7 % of a writer's time on loopback) is left to the writes still
// running after watchAfter: the watchdog gives those the deadline they
// would have had from the start, the write's start plus the stream's
// write timeout, and the writer clears it when the write returns.
const watchAfter = 50 * time.Millisecond

// writeSlot is the write a worker has in progress, for the watchdog.
type writeSlot struct {
	pool  *writerPool
	mu    sync.Mutex
	conn  *Conn // nil between writes
	start time.Time
	dl    bool // the watchdog set conn's deadline for this write

	buf []byte // scratch for the writes of the worker using the slot
}

// write writes p to conn, whose write lock the caller holds, under the
// watchdog, and records the progress for Close (see hubCore.close).
func (s *writeSlot) write(conn *Conn, p []byte) error {
	err := s.watched(conn, p)
	if err == nil && s.pool.hub.closing.Load() {
		s.pool.hub.lastWrite.Store(time.Now().UnixNano())
	}
	return err
}

func (s *writeSlot) watched(conn *Conn, p []byte) error {
	if !conn.deadlines {
		return conn.writeOut(p, false, 0)
	}
	start := time.Now()
	s.mu.Lock()
	s.conn, s.start, s.dl = conn, start, false
	s.mu.Unlock()
	if !s.pool.watching.Load() {
		s.pool.armWatch(watchAfter)
	}
	err := conn.writeOut(p, false, start.UnixNano())
	s.mu.Lock()
	dl := s.dl
	s.conn, s.dl = nil, false
	s.mu.Unlock()
	if dl && err == nil {
		if e := conn.clearDeadline(); e != nil {
			err = conn.fail(e)
		}
	}
	return err
}

// armWatch sets the watchdog to fire after d, unless it is set already.
func (p *writerPool) armWatch(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || !p.watching.CompareAndSwap(false, true) {
		return
	}
	setTimer(&p.watch, d, p.checkWrites)
}

// checkWrites runs on the watchdog: it gives every write running for
// watchAfter its deadline, and sets itself again for the first write that
// will have run that long, if any.
func (p *writerPool) checkWrites() {
	// Stop watching before looking: a write that starts from now on
	// sets the watchdog again, and one that started before is seen.
	p.watching.Store(false)
	p.mu.Lock()
	slots := slices.Clone(p.slots)
	p.mu.Unlock()
	now := time.Now()
	next := time.Duration(-1)
	for _, s := range slots {
		s.mu.Lock()
		if s.conn != nil && !s.dl {
			if ran := now.Sub(s.start); ran >= watchAfter {
				_ = s.conn.rc().SetWriteDeadline(s.start.Add(s.conn.timeout))
				s.dl = true
			} else if wait := watchAfter - ran; next < 0 || wait < next {
				next = wait
			}
		}
		s.mu.Unlock()
	}
	if next >= 0 {
		p.armWatch(next)
	}
}

// drain writes everything queued for c in as few writes as it can,
// through s, gathering them in s.buf.
func (p *writerPool) drain(c *client, s *writeSlot) {
	h := p.hub
	b := s.buf[:0]
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
				if err = s.write(conn, b); err != nil {
					break
				}
				b = b[:0]
			}
			b = append(b, msg...)
			q[i] = nil
		}
		if err == nil && len(b) > 0 {
			err = s.write(conn, b)
		}
		if err == nil {
			h.delivered.Add(uint64(max(0, len(q)-int(extra))))
		}
	}
	conn.unlockWrite()
	s.buf = b
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
		conn.shutdown(errShuttingDown)
	}
}

// setTimer sets *t to call f after d, making the timer the first time.
func setTimer(t **time.Timer, d time.Duration, f func()) {
	if *t == nil {
		*t = time.AfterFunc(d, f)
	} else {
		(*t).Reset(d)
	}
}
