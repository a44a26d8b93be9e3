// Package fanout is the fan-out engine behind the sse package's Hub and
// Server: it queues each event for every client that follows it, has a
// pool of writers drain the queues, and keeps clients that stop reading
// from delaying the others. It sees a stream only as a [Sink].
//
// By file:
//
//	engine.go    the client, group and Engine records (with the lock
//	             order), and the fan-out of an event to a group
//	register.go  registering and removing clients
//	pool.go      the writers that drain client queues; hand-offs of
//	             blocked writes
//	park.go      parked clients and their group's shared log
//	budget.go    the queued-bytes budget
//	queue.go     pooled queue slices
//	beat.go      heartbeat schedules, for engines and lone streams alike
//	gone.go      noticing a client that went away, likewise
//	shutdown.go  Close and Shutdown
//	topics.go    a Server's topics: live delivery and replay
//	sink.go      what the engine needs of a stream
//	inspect.go   what the engine holds, for the tests of its users
//
// The sse package holds the streams themselves (Conn, and the
// connections taken over from net/http), the lone streams' heartbeats and
// watches (solo.go there), and what is a Server's own: brokers,
// subscriptions and the encoding of events and cursors.
package fanout

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// client is one registered stream with its queue of encoded events.
type client struct {
	conn   Sink
	hub    *Engine
	grp    *group
	filter func(any) bool // nil passes everything; given the value of a Server's live event

	mu       sync.Mutex
	queue    [][]byte // nil while empty; see queue.go
	bytes    int64    // what queue is charged (see entryCost)
	inflight int64    // the same for the entries taken by a writer and not yet written
	since    int64    // when the oldest entry in queue was queued (or the client parked), in Unix nanoseconds
	sinceOut int64    // the same for the entries in flight
	outAt    int64    // when the write of the entries in flight began, in Unix nanoseconds

	index  int32 // position in grp.clients; -1 while parked
	extra  int32 // queue entries that are not live events
	nOut   int32 // entries in flight
	beatAt int32 // position in Engine.beats; -1: none
	// Parking (park.go): stuck is set while a write to the client is
	// blocked; parked while the client is parked, at cursor in its
	// group's log.
	stuck     atomic.Bool
	parked    atomic.Bool
	scheduled bool // in the ready queue or being written
	removed   bool
	closing   bool // shutting down: end the stream once drained

	// What the client holds, for the budget (see heldLocked): the
	// position in its group's events (group.fanned before it) of the
	// oldest live event in queue and of the oldest in flight, -1 when
	// there is none; the bytes of the entries that are not shared with
	// other clients (extras).
	pos, posOut  int64
	ownQ, ownOut int64
	cursor       int64

	// pending is set while the client resumes: the live events that came
	// meanwhile, which FinishResume queues after the replay.
	pending *[]any

	// susp is the client's drain while its stream has suspended the
	// write (see pool.go's resume); only the drain that holds the write
	// lock uses it. gate counts who arrived of the two that must before
	// the write goes on: the stream's Resume and the worker that noted
	// the suspension.
	susp *suspended
	gate atomic.Int32
}

// group is the clients that follow the same topics. Events are encoded
// once per group.
type group struct {
	key     string
	topics  []string // sorted; nil for a Hub's group
	clients []*client
	fanned  int64   // bytes of the events fanned out to the group so far; guarded by Engine.mu
	park    parkLog // see park.go
}

// Config configures an Engine. New applies no defaults: the caller
// resolves them.
type Config struct {
	QueueSize    int           // events that may wait for one client
	Policy       Policy        // what happens to a client whose queue is full
	MaxBytes     int64         // the queued-bytes budget; 0: none
	Logger       *slog.Logger  // nil: no logging
	Retry        time.Duration // the retry hint of a shutdown
	RetryJitter  time.Duration // at most this much is added to Retry, at random
	Heartbeat    time.Duration // idle time before a client gets Comment; 0: none
	Comment      []byte        // the heartbeat, a complete comment
	WriteTimeout time.Duration // how long closing waits for the writers (positive)

	// Closed is what registering or broadcasting returns once closed.
	// Ended is what every error that ends a stream wraps; Gone ends a
	// stream whose client went away.
	Closed, Ended, Gone error
}

// Policy is what the engine does with a client whose queue is full; the
// values are those of the sse package's SlowPolicy.
type Policy int

const (
	Disconnect Policy = iota // disconnect it, once its write is blocked
	DropOldest               // drop its oldest live event
	KeepLatest               // drop every live event it has queued
)

// MaxWrite is the most a writer gathers into one write.
const MaxWrite = 64 << 10

// Engine is the engine of a Hub or a Server. It sees its streams only as
// sinks (see sink.go).
//
// Who does what, once each:
//
//   - Heartbeats: a Schedule, one timer and a heap of due times
//     (beat.go). The engine has one for its clients; the Conns that send
//     their own share one per server (the sse package's solo.go), and
//     engines skip them (Sink.SendsHeartbeats).
//   - Noticing a client that left: a stream whose connection the engine
//     took over reads it (the sse package's owned.go); for the others, a Poll (gone.go)
//     has the engine ask about their request's context every PollEvery
//     (Sink.Gone), rather than each stream watching it with a callback of
//     its own.
//   - Write deadlines: the stream sets them (Sink.Bound, WriteAt), and
//     times a write it suspended itself; the writer pool decides when a
//     write needs one (pool.go).
//
// Lock order, outermost first; a goroutine holding one may take only
// those after it:
//
//  1. a stream's write lock (Sink.LockWrite): a failed write ends the
//     stream, which tells its hub, which takes Engine.mu. A suspended
//     write (Sink.WriteAt) holds it without a goroutine until the worker
//     that resumes it is done;
//  2. Engine.mu;
//  3. client.mu;
//  4. writerPool.mu (push, under Engine.mu);
//  5. writeSlot.mu (the watchdog, under writerPool.mu);
//  6. the sse package's Conn.mu, held only briefly (Sink.Watch under
//     Engine.mu);
//  7. its solo.mu (see solo.go there);
//  8. its connWatch.mu (see owned_watch_linux.go there), taken last: taking a
//     connection over and ending it take it under the write lock.
//
// Nothing blocks under any of them: the write lock is waited for (drain,
// unregister) with none held. A function named …Locked is called with the
// lock it names held and returns with it held; finishFanout is the one
// function that releases Engine.mu it did not take. A client's filter,
// user code, runs under Engine.mu (a fan-out), and under the stream's
// write lock, Engine.mu and client.mu too (a writer taking a parked
// client's events from the log): it must not call the engine.
type Engine struct {
	cfg          Config
	shuttingDown error               // ends a stream whose engine is closing once it is drained
	headID       func(string) string // headIDLocked, for Encoder.Wire

	mu        sync.RWMutex
	def       *group            // a Hub's only group
	groups    map[string]*group // by key
	bySink    map[Sink]*client  // every client, by its stream
	byTopic   map[string][]*group
	heads     map[string]Head // newest event seen per topic (Server)
	live      map[string]bool // topics with a running subscription (Server)
	nclients  int
	closed    bool
	draining  bool
	drained   chan struct{} // closed when draining and no client is left
	closing   atomic.Bool   // close is waiting for the queues to be written
	lastWrite atomic.Int64  // when a writer last wrote while closing, in Unix nanoseconds

	beats    Schedule[*client] // heartbeats; see beat.go
	gone     Poll              // polls the clients' request contexts; see gone.go
	toWake   []*client         // scratch for fan-out, guarded by mu
	evict    []*client         // scratch for fan-out, guarded by mu
	done     chan struct{}
	runs     sync.WaitGroup
	dropping sync.WaitGroup // goroutines disconnecting clients (see finishFanout)

	pool writerPool

	// The budget (Config.MaxBytes), guarded by mu: what the
	// queues may have grown by, at most, since heldLocked last counted
	// what they hold, and how much they could grow then and stay within
	// the budget. See finishFanout.
	grown, slack int64
	park         []*client // scratch for fan-out, guarded by mu

	// fedWaits holds the resuming requests of a Server waiting for
	// heads[topic] to reach a position, by topic; guarded by mu. See
	// AwaitFed.
	fedWaits map[string][]*FedWaiter

	warnedNoDeadline    atomic.Bool
	stalled             atomic.Uint64 // writes handed off by the pool
	abandoned           atomic.Uint64 // writes Close stopped waiting for
	broadcasts          atomic.Uint64
	delivered           atomic.Uint64
	replayed            atomic.Uint64
	dropped             atomic.Uint64
	queued              atomic.Int64
	slowDisconnects     atomic.Uint64
	budgetDisconnects   atomic.Uint64
	shutdownDisconnects atomic.Uint64
	clientDisconnects   atomic.Uint64
}

// New makes an engine configured by cfg.
func New(cfg Config) *Engine {
	h := &Engine{
		cfg:          cfg,
		shuttingDown: fmt.Errorf("%w: server shutting down", cfg.Ended),
		def:          &group{},
		bySink:       make(map[Sink]*client),
		groups:       make(map[string]*group),
		byTopic:      make(map[string][]*group),
		heads:        make(map[string]Head),
		live:         make(map[string]bool),
		done:         make(chan struct{}),
	}
	h.headID = h.headIDLocked
	h.pool.hub = h
	h.pool.base = max(4, runtime.GOMAXPROCS(0))
	h.pool.limit = h.pool.base
	return h
}

// Run blocks until the engine is closed.
func (h *Engine) Run() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.runs.Add(1)
	h.mu.Unlock()
	<-h.done
	h.runs.Done()
}

// IsClosed reports whether the engine refuses new clients: it is closed,
// or shutting down.
func (h *Engine) IsClosed() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.closed || h.draining
}

// Logf logs msg with args when the engine has a logger.
func (h *Engine) Logf(level slog.Level, msg string, args ...any) {
	if h.cfg.Logger != nil {
		h.cfg.Logger.Log(context.Background(), level, msg, args...)
	}
}

// CountBroadcast counts an event published through a Server.
func (h *Engine) CountBroadcast() { h.broadcasts.Add(1) }

// Clients returns the number of registered clients.
func (h *Engine) Clients() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.nclients
}

// Stats is what Engine.Stats returns: the fields of the sse package's
// Stats, in the same order, documented there.
type Stats struct {
	Clients             int
	Topics              int
	Broadcasts          uint64
	Delivered           uint64
	Replayed            uint64
	Dropped             uint64
	QueuedBytes         int64
	SlowDisconnects     uint64
	BudgetDisconnects   uint64
	ShutdownDisconnects uint64
	ClientDisconnects   uint64
	StalledWrites       uint64
	AbandonedWrites     uint64
}

// Stats returns the engine's counters and what its queues hold now.
func (h *Engine) Stats() Stats {
	h.mu.RLock()
	clients, topics := h.nclients, len(h.byTopic)
	held := h.heldLocked()
	h.mu.RUnlock()
	return Stats{
		Clients:             clients,
		Topics:              topics,
		Broadcasts:          h.broadcasts.Load(),
		Delivered:           h.delivered.Load(),
		Replayed:            h.replayed.Load(),
		Dropped:             h.dropped.Load(),
		QueuedBytes:         held,
		SlowDisconnects:     h.slowDisconnects.Load(),
		BudgetDisconnects:   h.budgetDisconnects.Load(),
		ShutdownDisconnects: h.shutdownDisconnects.Load(),
		ClientDisconnects:   h.clientDisconnects.Load(),
		StalledWrites:       h.stalled.Load(),
		AbandonedWrites:     h.abandoned.Load(),
	}
}

// Broadcast queues msg, a complete encoded event, for every client of a
// Hub. It returns Config.Closed once the engine is closed or shutting
// down.
func (h *Engine) Broadcast(msg []byte) error {
	h.mu.Lock()
	if h.closed || h.draining {
		h.mu.Unlock()
		return h.cfg.Closed
	}
	h.broadcasts.Add(1)
	wake, evict := h.toWake[:0], h.evict[:0]
	wake, evict = h.fanoutLocked(h.def, msg, nil, time.Now().UnixNano(), wake, evict)
	h.finishFanout(wake, evict)
	return nil
}

// fanoutLocked queues msg for the clients of g; h.mu must be held. m is
// the Item.Value of the event a Server delivers, nil for a Hub; now is the time
// in Unix nanoseconds. It appends the clients to wake and those to
// disconnect as too slow.
func (h *Engine) fanoutLocked(g *group, msg []byte, m any, now int64, wake, evict []*client) ([]*client, []*client) {
	size := int64(len(msg)) + entryCost
	pos := g.fanned
	var added, entries int64
	park := h.park[:0]
	for _, c := range g.clients {
		if m != nil && c.filter != nil && !c.filter(m) {
			continue
		}
		c.mu.Lock()
		switch {
		case c.removed || c.closing:
		case c.pending != nil: // resuming
			*c.pending = append(*c.pending, m)
		case len(c.queue) >= h.cfg.QueueSize && h.cfg.Policy == Disconnect && c.blockedLocked(now):
			added -= c.bytes
			c.bytes = 0
			clear(c.queue)
			putQueue(c.queue)
			c.removed, c.queue = true, nil
			c.pos, c.ownQ = -1, 0
			evict = append(evict, c)
		case h.parkableLocked(c):
			// Parked under c.mu, so that its writer, about to find
			// its queue empty, sees it has events in the log.
			c.parked.Store(true)
			c.cursor = g.park.end()
			park = append(park, c)
		default:
			// A full queue of a client that drains grows on under
			// Disconnect: it waits for a writer, and the writers
			// being behind does not make it slow. The budget bounds
			// it.
			if len(c.queue) >= h.cfg.QueueSize && h.cfg.Policy != Disconnect {
				added -= h.makeRoomLocked(c)
			}
			if c.bytes == 0 {
				c.since = now
			}
			if c.pos < 0 {
				c.pos = pos
			}
			c.queue = appendQueue(c.queue, msg)
			c.bytes += size
			added += size
			entries++
			if !c.scheduled {
				c.scheduled = true
				wake = append(wake, c)
			}
		}
		c.mu.Unlock()
		if len(wake) == wakeBatch {
			// Let the writers start on these while the walk goes on.
			h.queued.Add(added)
			added = 0
			h.pool.push(wake)
			clear(wake)
			wake = wake[:0]
		}
	}
	h.queued.Add(added)
	h.grown += int64(len(msg)) + entries*entryCost
	evict = h.logLocked(g, msg, m, pos, now, park, evict)
	clear(park)
	h.park = park[:0]
	g.fanned += int64(len(msg))
	return wake, evict
}

// entryCost is what a queue entry costs beyond its event's bytes, which
// are shared: the slice header that refers to them.
const entryCost = 24

// blockedLocked reports whether c makes no progress: the writing of its
// events in flight has run for slowStall at now (Unix nanoseconds); c.mu
// must be held.
func (c *client) blockedLocked(now int64) bool {
	return c.inflight > 0 && c.outAt <= now-int64(slowStall)
}

// slowStall is how long the writing of a client's events in flight (one
// drain: what its queue held when a writer took it, or one write's worth
// of its backlog in its group's log) must have been running, its queue
// full again, for Disconnect to count it slow. A client that stopped
// reading is found in that time, and so is one too slow to take its
// queue in half a second, while one that reads in bursts (a process short
// of CPU for a moment, a network that hiccups) gets through a drain in
// less. A parked client taking its backlog a write at a time is timed
// write by write: one that reads more slowly than events come, but takes
// each write within slowStall, falls behind until the queued-bytes
// budget disconnects it (the longest behind first), not Disconnect.
const slowStall = 500 * time.Millisecond

// wakeBatch is how many clients a fan-out queues an event for before it
// hands them to the writers: with many clients, writing starts while the
// walk goes on (at 10 000 clients the walk takes a millisecond or two).
const wakeBatch = 256

// makeRoomLocked applies a dropping policy to c's full queue and returns
// the bytes freed; c.mu must be held. Only live events are dropped. The
// queue's first c.extra entries are not: extras are queued only while the
// queue holds no live event (a replay, which FinishResume queues before
// any, and which a resuming client must get whole; a heartbeat, queued
// only to an unscheduled, hence empty, queue), or once fan-outs have
// stopped (retry hints).
func (h *Engine) makeRoomLocked(c *client) int64 {
	n := min(1, len(c.queue)-int(c.extra))
	if h.cfg.Policy == KeepLatest {
		n = len(c.queue) - int(c.extra)
	}
	return h.dropLiveLocked(c, n)
}

// dropLiveLocked drops the n oldest live events of c's queue (never its
// extras, which come first), counts them as dropped and returns the bytes
// freed; c.mu must be held.
func (h *Engine) dropLiveLocked(c *client, n int) int64 {
	live := c.queue[c.extra:]
	var shared int64
	for _, b := range live[:n] {
		shared += int64(len(b))
	}
	freed := shared + int64(n)*entryCost
	k := copy(live, live[n:])
	clear(live[k:])
	c.queue = c.queue[:int(c.extra)+k]
	c.bytes -= freed
	// The oldest live event left comes at least the dropped bytes later
	// in the group's events (more when the client skips some).
	if k == 0 {
		c.pos = -1
	} else if n > 0 {
		c.pos += shared
	}
	h.dropped.Add(uint64(n))
	return freed
}

// finishFanout ends a fan-out: it enforces the budget, wakes the
// writers, unlocks h.mu and disconnects the slow clients.
//
// The budget bounds what the queues hold, each event counted once
// however many clients it is queued for (see heldLocked). Counting that
// takes a walk over every client, so it is counted only when it may be
// over: when what the queues are charged, each event counted once per
// client (h.queued), is over the budget, and the queues may have grown by
// more than they could when last counted.
func (h *Engine) finishFanout(wake, evict []*client) {
	slow := len(evict)
	if h.cfg.MaxBytes > 0 && h.queued.Load() > h.cfg.MaxBytes && h.grown >= h.slack {
		evict = h.overBudgetLocked(evict)
	}
	for _, c := range evict {
		h.removeLocked(c)
	}
	h.pool.push(wake)
	clear(wake)
	h.toWake = wake[:0]
	// evict is used after unlocking, so it cannot be kept as scratch.
	h.evict = nil
	if len(evict) > asyncDrops {
		h.dropping.Add(1)
	}
	h.mu.Unlock()
	if len(evict) == 0 {
		return
	}

	// One log line and one error for each reason, however many clients.
	var slowErr, budgetErr error
	if slow > 0 {
		h.slowDisconnects.Add(uint64(slow))
		h.Logf(slog.LevelInfo, "sse: disconnecting slow clients", "clients", slow, "queued", h.cfg.QueueSize)
		slowErr = fmt.Errorf("%w: client too slow: %d events queued", h.cfg.Ended, h.cfg.QueueSize)
	}
	if n := len(evict) - slow; n > 0 {
		h.budgetDisconnects.Add(uint64(n))
		h.Logf(slog.LevelWarn, "sse: disconnecting clients over the queued bytes budget", "clients", n, "budget", h.cfg.MaxBytes)
		budgetErr = fmt.Errorf("%w: queued bytes over budget (%d)", h.cfg.Ended, h.cfg.MaxBytes)
	}
	drop := func(yield bool) {
		for i, c := range evict {
			c.conn.Unwatch(c)
			if i < slow {
				c.conn.Drop(slowErr)
			} else {
				c.conn.Drop(budgetErr)
			}
			if yield && i%dropYieldEvery == dropYieldEvery-1 {
				runtime.Gosched()
			}
		}
	}
	if len(evict) <= asyncDrops {
		drop(false)
		return
	}
	// Thousands of clients that stopped reading at once reach a full
	// queue at once: resetting their connections takes a system call or
	// two each, which the broadcast that found them does not wait for.
	// Each reset also wakes the goroutine blocked in the client's write,
	// and the scheduler runs the goroutines it woke before those woken
	// after: dropping them in batches, yielding in between, lets the
	// writers of the other clients run among them.
	go func() {
		defer h.dropping.Done()
		drop(true)
	}()
}

// dropYieldEvery is how many clients a goroutine dropping thousands drops
// between yields to the scheduler (see finishFanout).
const dropYieldEvery = 32

// asyncDrops is how many clients a fan-out disconnects itself; beyond
// that, a goroutine of its own does (see finishFanout).
const asyncDrops = 64
