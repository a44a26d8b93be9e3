package fanout

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// A hub's writes run on a pool of worker goroutines that take ready
// clients in turn. A client whose socket does not drain must never hold
// a worker while other clients wait, and no worker can tell in advance
// which write will block. So every write a worker makes is watched: one
// still running after stallLimit is handed off, the worker's goroutine
// becoming the client's own until that write returns (or fails: a
// hand-off is given the stream's write deadline at once; what was queued
// meanwhile then goes back to the pool), and a new worker takes its place
// in the pool. While writes keep stalling,
// the pool grows to twice the stalls each watchdog round found (up to
// maxWorkers), so that thousands of clients that stall at once are found
// in rounds that double, tens of milliseconds rather than stallLimit
// each; it falls back to base after a round without stalls, or once no
// client waits.
//
// A stream that can wait for room without a goroutine (a connection the
// sse package took over, on Linux) suspends a write that would block
// instead (Sink.WriteAt): the worker leaves the drain where it is, the
// write lock held, and goes on; the stream calls the client's Resume
// when the write may go on, and a worker takes the drain up again
// (resume). Clients that stop reading then cost no goroutine each, and
// ending thousands of them wakes none.

// stallLimit is how long a worker's write may run before the client is
// handed off. Writes to clients that read take microseconds.
const stallLimit = 5 * time.Millisecond

// maxWorkers bounds the pool's workers while writes stall; handed-off
// goroutines do not count.
const maxWorkers = 1024

// writerPool runs the goroutines that drain client queues. Workers start
// on demand, up to limit, and exit when no client is waiting, so an idle
// hub has none.
type writerPool struct {
	hub  *Engine
	base int // workers started freely

	mu sync.Mutex
	// The clients waiting for a worker: those whose sockets have room
	// first, then the narrow ones (see Sink.Narrow), which are served
	// when no other waits, and at least one turn in narrowTurn while
	// others do.
	ready  clientQueue
	narrow clientQueue
	// The clients whose suspended write may go on (see Resume): served
	// before any other, as the goroutine a blocked write was handed to
	// would go on at once.
	resumed clientQueue
	turns   int // clients taken from ready since the last narrow one
	limit   int // workers allowed now: base, raised while writes stall
	workers int // pool workers, not counting handed-off goroutines
	busy    int // workers draining a client
	stopped bool
	running sync.WaitGroup // every writing goroutine, handed-off ones included
	alive   atomic.Int64   // goroutines counted in running (for Close)

	slots    []*writeSlot // the slots of the pool's workers, for the watchdog
	idle     []*writeSlot // slots no worker uses, for the next to start
	watch    *time.Timer  // the watchdog; see checkWrites
	watching atomic.Bool  // watch is set to fire
}

// writeSlot is the write a worker has in progress, for the watchdog.
// A write in progress is state, its start in Unix nanoseconds; the writer
// clears it when the write returns, and the watchdog swaps it for handed
// when it hands the write off. Only hand-offs take mu.
type writeSlot struct {
	pool  *writerPool
	state atomic.Int64 // 0 between writes, the write's start, or handed
	conn  Sink         // the write's stream; read by the watchdog only once it handed the write off
	c     *client      // the write's client; the same
	mu    sync.Mutex   // held by the watchdog while it hands the write off
	dl    bool         // the watchdog set conn's deadline; guarded by mu

	buf   []byte   // scratch for the writes of the goroutine using the slot
	vec   [][]byte // the same for vectored streams (see Batch)
	stall func()   // handOff, made once: what a stream calls before its write blocks
	stuck func()   // marks c stuck, made once: stall once handed off
}

// handed is writeSlot.state once the watchdog handed the write off.
const handed = -1

// narrowTurn: while clients with room wait, a narrow one is served at
// least once in this many turns.
const narrowTurn = 8

// clientQueue is a FIFO of clients.
type clientQueue struct {
	items []*client
	head  int
}

func (q *clientQueue) len() int { return len(q.items) - q.head }

func (q *clientQueue) pop() *client {
	c := q.items[q.head]
	q.items[q.head] = nil
	if q.head++; q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head >= 64 && 2*q.head >= len(q.items) {
		// Never empty (a narrow queue under load): move the rest down,
		// so that the slice does not grow with every push.
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return c
}

// pushLocked queues c, where Sink.Narrow says; p.mu must be held.
func (p *writerPool) pushLocked(c *client) {
	if c.conn.Narrow() {
		p.narrow.items = append(p.narrow.items, c)
	} else {
		p.ready.items = append(p.ready.items, c)
	}
}

// push makes clients ready to be written and starts workers as needed.
func (p *writerPool) push(cs []*client) {
	if len(cs) == 0 {
		return
	}
	p.mu.Lock()
	for _, c := range cs {
		p.pushLocked(c)
	}
	n := p.toStartLocked()
	p.mu.Unlock()
	p.start(n)
}

// pushOne is push for one client, without a slice to allocate.
func (p *writerPool) pushOne(c *client) {
	p.mu.Lock()
	p.pushLocked(c)
	n := p.toStartLocked()
	p.mu.Unlock()
	p.start(n)
}

// toStartLocked counts the workers the ready queue needs, up to limit,
// and counts them as started; p.mu must be held.
func (p *writerPool) toStartLocked() int {
	waiting := p.ready.len() + p.narrow.len() + p.resumed.len()
	idle := p.workers - p.busy
	n := max(min(waiting-idle, p.limit-p.workers), 0)
	p.workers += n
	p.running.Add(n)
	p.alive.Add(int64(n))
	return n
}

// start starts n workers counted by toStartLocked.
func (p *writerPool) start(n int) {
	for range n {
		go p.work()
	}
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
	}
	var c *client
	switch {
	case p.resumed.len() > 0:
		c = p.resumed.pop()
	case p.narrow.len() > 0 && (p.ready.len() == 0 || p.turns >= narrowTurn-1):
		c = p.narrow.pop()
		p.turns = 0
	case p.ready.len() > 0:
		c = p.ready.pop()
		p.turns++
	default:
		p.workers--
		p.turns = 0
		if p.busy == 0 {
			// No client waits and no write runs: any stalls are over.
			// (A write running now may be one yet to be found.)
			p.limit = p.base
		}
		return nil
	}
	p.busy++
	return c
}

func (p *writerPool) work() {
	defer func() {
		p.alive.Add(-1)
		p.running.Done()
	}()
	p.mu.Lock()
	var s *writeSlot
	if n := len(p.idle); n > 0 {
		s = p.idle[n-1]
		p.idle = p.idle[:n-1]
	} else {
		s = &writeSlot{pool: p}
		s.stall = s.handOff
		s.stuck = func() { s.c.stuck.Store(true) }
		p.slots = append(p.slots, s)
	}
	p.mu.Unlock()
	drains := 0
	for c := p.next(false); c != nil; c = p.next(true) {
		again := p.drain(c, s)
		for again && c.parked.Load() && s.state.Load() != handed {
			// Its write went through and the log holds more of its
			// events (see unparkLocked): it is catching up, and takes
			// them now rather than after every other waiting client.
			again = p.drain(c, s)
			if drains++; drains%yieldEvery == 0 {
				runtime.Gosched()
			}
		}
		if s.state.Load() == handed {
			// Handed off: the pool counts this goroutine no more. Its
			// blocked write is done (or failed): what was queued
			// meanwhile goes back to the pool, which gathers it with
			// what comes next. Writing it here, at once, would make
			// each client that reads slowly a goroutine of its own
			// writing every event as it comes: thousands of them, a
			// write per event each.
			if again {
				p.pushOne(c)
			}
			return
		}
		if again {
			p.pushOne(c)
		}
		if cap(s.buf) > 4*MaxWrite {
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

// wait stops the watchdog and waits for the writing goroutines to exit,
// for at most d when d is positive. It returns how many it left behind:
// goroutines blocked in writes that cannot be cut short.
func (p *writerPool) wait(d time.Duration) int {
	p.mu.Lock()
	p.stopped = true
	if p.watch != nil {
		p.watch.Stop()
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() {
		p.running.Wait()
		close(done)
	}()
	if d <= 0 {
		<-done
		return 0
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return 0
	case <-t.C:
		return int(p.alive.Load())
	}
}

// write writes b to conn, whose write lock the caller holds, under the
// watchdog, and records the progress for Close (see Engine.Close).
func (s *writeSlot) write(conn Sink, b Batch) error {
	err := s.watched(conn, b)
	if err == nil && s.pool.hub.closing.Load() {
		s.pool.hub.lastWrite.Store(time.Now().UnixNano())
	}
	return err
}

// watched makes one write. A pool worker's write runs without a deadline
// (setting and clearing one around each write costs two timer updates in
// the runtime's poller, 7 % of a writer's time on loopback): the watchdog
// gives a write still running after stallLimit the deadline it would have
// had from the start, and hands its client off. A handed-off goroutine
// writes under deadlines from the start.
func (s *writeSlot) watched(conn Sink, b Batch) error {
	if s.state.Load() == handed {
		b.R = nil // a goroutine of its own: it may block
		return conn.WriteAt(b, true, 0, s.stuck)
	}
	start := time.Now().UnixNano()
	s.conn = conn
	s.state.Store(start)
	if !s.pool.watching.Load() {
		s.pool.armWatch(stallLimit)
	}
	err := conn.WriteAt(b, false, start, s.stall)
	if s.state.CompareAndSwap(start, 0) {
		return err
	}
	// Handed off meanwhile: wait for the watchdog to be done with the
	// slot, and clear the deadline it gave this write (a suspended one
	// keeps its own; see Sink.WriteAt).
	s.mu.Lock()
	dl := s.dl
	s.dl = false
	s.mu.Unlock()
	if dl && (err == nil || err == ErrSuspended) {
		// A failure ends the stream; a suspended write learns it when
		// it goes on.
		if uerr := conn.Unbound(); uerr != nil && err == nil {
			err = uerr
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

// checkWrites runs on the watchdog: it hands off every worker whose write
// has run for stallLimit, giving the write its deadline, starts workers
// in their place, and sets itself again for the first write that will
// have run that long, if any.
func (p *writerPool) checkWrites() {
	// Stop watching before looking: a write that starts from now on
	// sets the watchdog again, and one that started before is seen.
	p.watching.Store(false)
	now := time.Now()
	next := time.Duration(-1)
	p.mu.Lock()
	kept := p.slots[:0]
	n := 0 // hand-offs
	for _, s := range p.slots {
		start := s.state.Load()
		if start > 0 {
			if ran := time.Duration(now.UnixNano() - start); ran < stallLimit {
				if wait := stallLimit - ran; next < 0 || wait < next {
					next = wait
				}
			} else {
				s.mu.Lock()
				if s.state.CompareAndSwap(start, handed) {
					s.dl = s.conn.Bound(start)
					s.c.stuck.Store(true)
				}
				s.mu.Unlock()
			}
		}
		if s.state.Load() == handed {
			n++
		} else {
			kept = append(kept, s)
		}
	}
	clear(p.slots[len(kept):])
	p.slots = kept
	// Each round sizes the pool by the stalls it found: twice as many
	// workers again as were stuck, so that a mass of stalls is worked
	// through in rounds that double, while a few slow writes (a busy
	// machine delays writes too) add only a few workers, for a round.
	p.limit = min(p.base+2*n, maxWorkers)
	start := 0
	if n > 0 {
		p.workers -= n
		p.busy -= n
		if !p.stopped {
			start = p.toStartLocked()
		}
		p.hub.stalled.Add(uint64(n))
	}
	p.mu.Unlock()
	p.start(start)
	if next >= 0 {
		p.armWatch(next)
	}
}

// handOff hands the slot's write off at once, from the writing goroutine
// itself, as the watchdog does for a write that ran for stallLimit: the
// stream found, without waiting, that the write would block (a client
// that does not read; see Sink.WriteAt). Thousands of clients that stall
// at once thus cost the pool a system call each, not stallLimit.
func (s *writeSlot) handOff() {
	p := s.pool
	p.mu.Lock()
	start := s.state.Load()
	if start <= 0 {
		p.mu.Unlock() // the watchdog was first
		return
	}
	s.mu.Lock()
	if s.state.CompareAndSwap(start, handed) {
		s.dl = s.conn.Bound(start)
		s.c.stuck.Store(true)
	}
	s.mu.Unlock()
	if i := slices.Index(p.slots, s); i >= 0 {
		p.slots = slices.Delete(p.slots, i, i+1)
	}
	p.workers--
	p.busy--
	n := 0
	if !p.stopped {
		n = p.toStartLocked()
	}
	p.hub.stalled.Add(1)
	p.mu.Unlock()
	p.start(n)
}

// drain writes everything queued for c in as few writes as it can,
// through s, gathering them in s.buf. It reports whether more was queued
// meanwhile, to be written next.
func (p *writerPool) drain(c *client, s *writeSlot) (again bool) {
	if c.susp != nil {
		return p.resume(c, s)
	}
	h := p.hub
	b := s.buf[:0]
	conn := c.conn
	s.c = c
	conn.LockWrite()
	if c.parked.Load() {
		// Its events are in its group's log (see park.go).
		h.mu.Lock()
		c.mu.Lock()
		if c.parked.Load() && !c.removed {
			h.unparkLocked(c, true)
		}
		h.mu.Unlock()
	} else {
		c.mu.Lock()
	}
	q, n, extra := c.queue, c.bytes, c.extra
	c.queue = nil
	c.inflight, c.bytes, c.extra = n, 0, 0
	c.sinceOut = c.since
	c.posOut, c.ownOut, c.nOut = c.pos, c.ownQ, int32(len(q))
	c.pos, c.ownQ = -1, 0
	c.outAt = time.Now().UnixNano()
	removed := c.removed
	c.mu.Unlock()

	var err error
	switch {
	case removed:
	case conn.Vectored():
		var left [][]byte
		if left, err = s.writeEvents(conn, q, c); err == ErrSuspended {
			// The stream waits for room without a goroutine: the
			// write lock stays held, and the write goes on when
			// the stream calls c.Resume (see resume).
			c.susp = &suspended{q: q, left: left, n: n, extra: extra}
			c.stuck.Store(true)
			if s.state.Load() != handed {
				h.stalled.Add(1) // (the watchdog counted it otherwise)
			}
			s.buf = b
			p.suspended(c)
			return false
		}
	default:
		// One allocation of the size needed, not doublings: a worker that
		// replaces a handed-off one starts with no buffer, and thousands
		// of clients stalling at once would otherwise have each
		// replacement regrow one to MaxWrite.
		b = slices.Grow(b, int(min(n, MaxWrite)))
		for _, msg := range q {
			if len(b) > 0 && len(b)+len(msg) > MaxWrite {
				if err = s.write(conn, Batch{P: b}); err != nil {
					break
				}
				b = b[:0]
			}
			b = append(b, msg...)
		}
		if err == nil && len(b) > 0 {
			err = s.write(conn, Batch{P: b})
		}
	}
	s.buf = b
	return p.drained(c, q, n, extra, removed, err)
}

// drained ends a drain of c, whose write lock is held, once the write of
// q (n bytes, extra of them extras) returned err: it releases the lock
// and the entries, and reports whether more was queued meanwhile.
func (p *writerPool) drained(c *client, q [][]byte, n int64, extra int32, removed bool, err error) (again bool) {
	h := p.hub
	conn := c.conn
	if err == nil && !removed {
		h.delivered.Add(uint64(max(0, len(q)-int(extra))))
	}
	conn.UnlockWrite()
	clear(q)
	h.queued.Add(-n)

	putQueue(q)

	c.stuck.Store(false) // its writes returned
	c.mu.Lock()
	c.inflight = 0
	c.posOut, c.ownOut, c.nOut = -1, 0, 0
	again = (len(c.queue) > 0 || c.parked.Load()) && !c.removed && err == nil
	c.scheduled = again
	finished := !again && c.closing && !c.removed && err == nil
	c.mu.Unlock()
	if finished {
		conn.End(h.shuttingDown)
	}
	return again
}

// suspended is a drain whose write the stream suspended (see
// Sink.WriteAt): what it took from the queue (q, n bytes, extra extras),
// and the events of q not yet handed to the stream.
type suspended struct {
	q, left [][]byte
	n       int64
	extra   int32
}

// Resume has c's suspended write go on: the next worker free takes c,
// before the clients waiting to be written, and resume continues the
// write. The stream calls it once per suspension, possibly before the
// worker that saw the write suspended has noted it: the second of the
// two to arrive (see suspended) hands c on.
func (c *client) Resume() {
	if c.gate.Add(1) == 2 {
		c.hub.pool.pushResumed(c)
	}
}

// suspended is the worker's side of Resume: the drain of c is noted as
// suspended, c.susp set. The suspended write counts as a writing
// goroutine until it goes on (resume), so that Close waits for it as for
// a blocked write; the worker calling it is counted, so the count is
// not zero meanwhile.
func (p *writerPool) suspended(c *client) {
	p.running.Add(1)
	if c.gate.Add(1) == 2 {
		p.pushResumed(c)
	}
}

// pushResumed queues c, whose suspended write may go on: before the
// clients waiting to be written when its client took data, as the
// goroutine a blocked write was handed to would have gone on at once;
// with them when its stream ended, since only what it held is left to
// let go of (thousands of clients dropped at once must not hold up the
// others).
func (p *writerPool) pushResumed(c *client) {
	if c.conn.Err() != nil {
		p.pushOne(c)
		return
	}
	p.mu.Lock()
	p.resumed.items = append(p.resumed.items, c)
	n := p.toStartLocked()
	p.mu.Unlock()
	p.start(n)
}

// resume goes on with the drain of c that its stream suspended, the
// write lock still held: what the stream kept, then the events left, and
// then it ends the drain, unless the stream suspends the write again.
func (p *writerPool) resume(c *client, s *writeSlot) (again bool) {
	sp := c.susp
	s.c = c
	c.gate.Store(0) // both sides of the last suspension arrived
	p.running.Done()
	err := c.conn.Continue()
	if err == nil && len(sp.left) > 0 {
		sp.left, err = s.writeEvents(c.conn, sp.left, c)
	}
	if err == ErrSuspended {
		p.suspended(c)
		return false
	}
	c.susp = nil
	return p.drained(c, sp.q, sp.n, sp.extra, false, err)
}

// maxVecEvents is the most events a vectored write takes: with the
// framing around them, as many buffers as one writev takes.
const maxVecEvents = 1022

// writeEvents writes q, events queued for a vectored stream, in batches
// of at most MaxWrite bytes (or one event, when larger) and maxVecEvents
// events, without copying them. The stream may suspend a batch's write
// (told r): it then returns ErrSuspended and the events after that
// batch.
func (s *writeSlot) writeEvents(conn Sink, q [][]byte, r Resumer) (left [][]byte, err error) {
	v := s.vec[:0]
	for len(q) > 0 && err == nil {
		v = append(v[:0], nil)
		size := 0
		for len(q) > 0 && len(v) <= maxVecEvents && (size == 0 || size+len(q[0]) <= MaxWrite) {
			v = append(v, q[0])
			size += len(q[0])
			q = q[1:]
		}
		v = append(v, nil)
		err = s.write(conn, Batch{V: v, Size: size, R: r})
		clear(v) // keep no reference to the events
	}
	if cap(v) > 2*maxVecEvents {
		v = nil
	}
	s.vec = v[:0]
	return q, err
}

// setTimer sets *t to call f after d, making the timer the first time.
func setTimer(t **time.Timer, d time.Duration, f func()) {
	if *t == nil {
		*t = time.AfterFunc(d, f)
	} else {
		(*t).Reset(d)
	}
}
