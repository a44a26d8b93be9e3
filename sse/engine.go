package sse

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// client is one registered Conn with its queue of encoded events.
type client struct {
	conn   sink
	hub    *hubCore
	grp    *group
	index  int                 // position in grp.clients; -1 while parked
	filter func(*Message) bool // nil passes everything

	mu       sync.Mutex
	queue    [][]byte // nil while empty; see queue.go
	bytes    int64    // what queue is charged (see entryCost)
	inflight int64    // the same for the entries taken by a writer and not yet written
	since    int64    // when the oldest entry in queue was queued (or the client parked), in Unix nanoseconds
	sinceOut int64    // the same for the entries in flight
	outAt    int64    // when the write of the entries in flight began, in Unix nanoseconds

	extra  int32 // queue entries that are not live events
	nOut   int32 // entries in flight
	beatAt int32 // position in hubCore.beats; -1: none
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
	// meanwhile, which finishResume queues after the replay.
	pending *[]Message
}

// group is the clients that follow the same topics. Events are encoded
// once per group.
type group struct {
	key     string
	topics  []string // sorted; nil for a Hub's group
	clients []*client
	fanned  int64   // bytes of the events fanned out to the group so far; guarded by hubCore.mu
	park    parkLog // see park.go
}

// engineConfig is the configuration shared by Hub and Server, defaults
// applied.
type engineConfig struct {
	queueSize   int
	policy      SlowPolicy
	maxBytes    int64 // 0: no bound
	logger      *slog.Logger
	retry       time.Duration
	retryJitter time.Duration
	heartbeat   time.Duration // idle time before a client gets a comment; 0: none
}

// hubCore is the non-generic engine behind Hub and Server. It sees its
// streams only as sinks (see sink.go).
//
// Who does what, once each:
//
//   - Heartbeats: a beatSchedule, one timer and a heap of due times
//     (beat.go). The engine has one for its clients; the Conns that send
//     their own (UpgradeOptions.Heartbeat) share one per server (solo.go),
//     and engines skip them (sink.sendsHeartbeats).
//   - Noticing a client that left: a stream whose connection the engine
//     took over reads it (owned.go); for the others, a goneWatch (gone.go)
//     has the engine ask about their request's context every pollEvery
//     (sink.gone), rather than each stream watching it with a callback of
//     its own.
//   - Write deadlines: the stream sets them (sink.bound, writeAt); the
//     writer pool decides when a write needs one (pool.go).
//
// Lock order, outermost first; a goroutine holding one may take only
// those after it:
//
//  1. a stream's write lock (sink.lockWrite): a failed write ends the
//     stream, which tells its hub, which takes hubCore.mu;
//  2. hubCore.mu;
//  3. client.mu;
//  4. writerPool.mu (push, under hubCore.mu);
//  5. writeSlot.mu (the watchdog, under writerPool.mu);
//  6. Conn.mu, held only briefly (sink.watch under hubCore.mu);
//  7. solo.mu (see solo.go), taken last.
//
// Nothing blocks under any of them: the write lock is waited for (drain,
// unregister) with none held. A function named …Locked is called with the
// lock it names held and returns with it held; finishFanout is the one
// function that releases hubCore.mu it did not take.
type hubCore struct {
	cfg     engineConfig
	upgrade UpgradeOptions // of the streams the hub or server opens
	own     ownPolicy      // whether it takes their connections over (see owned.go)
	// closedErr is what registering or broadcasting returns once closed:
	// ErrHubClosed or ErrServerClosed.
	closedErr error

	mu        sync.RWMutex
	def       *group            // a Hub's only group
	groups    map[string]*group // by key
	bySink    map[sink]*client  // every client, by its stream
	byTopic   map[string][]*group
	heads     map[string]Position // newest event seen per topic (Server)
	live      map[string]bool     // topics with a running subscription (Server)
	nclients  int
	closed    bool
	draining  bool
	drained   chan struct{} // closed when draining and no client is left
	closing   atomic.Bool   // close is waiting for the queues to be written
	lastWrite atomic.Int64  // when a writer last wrote while closing, in Unix nanoseconds

	beats    beatSchedule[*client] // heartbeats; see beat.go
	gone     goneWatch             // polls the clients' request contexts; see gone.go
	toWake   []*client             // scratch for fan-out, guarded by mu
	evict    []*client             // scratch for fan-out, guarded by mu
	done     chan struct{}
	runs     sync.WaitGroup
	dropping sync.WaitGroup // goroutines disconnecting clients (see finishFanout)

	pool writerPool

	// The budget (Options.MaxQueuedBytes), guarded by mu: what the
	// queues may have grown by, at most, since heldLocked last counted
	// what they hold, and how much they could grow then and stay within
	// the budget. See finishFanout.
	grown, slack int64
	park         []*client // scratch for fan-out, guarded by mu

	// fedWaits holds the resuming requests of a Server waiting for
	// heads[topic] to reach a position, by topic; guarded by mu. See
	// awaitFed.
	fedWaits map[string][]*fedWaiter

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

// newHubCore makes the engine of a Hub or Server; closedErr is what
// registering or broadcasting returns once it is closed.
func newHubCore(opts Options, closedErr error) *hubCore {
	cfg := engineConfig{
		queueSize:   opts.QueueSize,
		policy:      opts.SlowClients,
		maxBytes:    opts.MaxQueuedBytes,
		logger:      opts.Logger,
		retry:       opts.ShutdownRetry,
		retryJitter: durationOr(opts.ShutdownJitter, defaultShutdownJitter),
		heartbeat:   durationOr(opts.Heartbeat, defaultHeartbeat),
	}
	if cfg.queueSize <= 0 {
		cfg.queueSize = defaultQueueSize
	}
	switch {
	case cfg.maxBytes == 0:
		cfg.maxBytes = defaultMaxQueuedBytes
	case cfg.maxBytes < 0:
		cfg.maxBytes = 0
	}
	if cfg.retry <= 0 {
		cfg.retry = defaultShutdownRetry
	}
	h := &hubCore{
		cfg:       cfg,
		upgrade:   UpgradeOptions{WriteTimeout: opts.WriteTimeout, Retry: opts.Retry, Header: opts.Header},
		own:       ownPolicyOf(&opts),
		closedErr: closedErr,
		def:       &group{},
		bySink:    make(map[sink]*client),
		groups:    make(map[string]*group),
		byTopic:   make(map[string][]*group),
		heads:     make(map[string]Position),
		live:      make(map[string]bool),
		done:      make(chan struct{}),
	}
	h.pool.hub = h
	h.pool.base = max(4, runtime.GOMAXPROCS(0))
	h.pool.limit = h.pool.base
	return h
}

func (h *hubCore) run() {
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

// isClosed reports whether the hub refuses new clients.
func (h *hubCore) isClosed() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.closed || h.draining
}

func (h *hubCore) logf(level slog.Level, msg string, args ...any) {
	if h.cfg.logger != nil {
		h.cfg.logger.Log(context.Background(), level, msg, args...)
	}
}

// register adds conn to group g (nil: the group of topics, made as
// needed). A resuming client gets no live events until finishResume.
func (h *hubCore) register(conn sink, g *group, topics []string, filter func(*Message) bool, resuming bool) (*client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.draining {
		return nil, h.closedErr
	}
	if c := h.bySink[conn]; c != nil {
		return c, nil
	}
	if g == nil {
		for _, t := range topics {
			if !h.live[t] {
				return nil, fmt.Errorf("%w: topic %q has no subscription", h.closedErr, t)
			}
		}
		g = h.groupLocked(topics)
	}
	h.warnNoDeadline(conn)
	c := &client{conn: conn, hub: h, grp: g, index: len(g.clients), beatAt: -1, filter: filter, pos: -1, posOut: -1}
	if !conn.watch(c) {
		return nil, conn.Err()
	}
	h.bySink[conn] = c
	if resuming {
		c.pending = new([]Message)
	}
	g.clients = append(g.clients, c)
	h.nclients++
	h.scheduleBeatLocked(c)
	h.armPollLocked()
	return c, nil
}

// registerAll adds conn to a Hub's only group; see register.
func (h *hubCore) registerAll(conn sink) error {
	_, err := h.register(conn, h.def, nil, nil, false)
	return err
}

// groupLocked returns the group of topics (sorted, distinct), making it.
func (h *hubCore) groupLocked(topics []string) *group {
	key := groupKey(topics)
	g := h.groups[key]
	if g == nil {
		g = &group{key: key, topics: topics}
		h.groups[key] = g
		for _, t := range topics {
			h.byTopic[t] = append(h.byTopic[t], g)
		}
	}
	return g
}

// groupKey names a set of topics unambiguously.
func groupKey(topics []string) string {
	var b []byte
	for _, t := range topics {
		b = fmt.Appendf(b, "%d:%s,", len(t), t)
	}
	return string(b)
}

// eachClientLocked calls f for every client, parked ones included; h.mu
// must be held, and f must not add or remove clients, nor park or unpark
// them (see allClientsLocked).
func (h *hubCore) eachClientLocked(f func(*client)) {
	for _, c := range h.def.clients {
		f(c)
	}
	h.def.eachParkedLocked(f)
	for _, g := range h.groups {
		for _, c := range g.clients {
			f(c)
		}
		g.eachParkedLocked(f)
	}
}

// allClientsLocked returns every client; h.mu must be held.
func (h *hubCore) allClientsLocked() []*client {
	list := make([]*client, 0, h.nclients)
	h.eachClientLocked(func(c *client) { list = append(list, c) })
	return list
}

// streamEnded makes c the closeWatcher of its stream.
func (c *client) streamEnded() { c.hub.clientClosed(c) }

// removeLocked drops c from its group and reports whether it was there;
// h.mu must be held.
func (h *hubCore) removeLocked(c *client) bool {
	g := c.grp
	switch {
	case c.parked.Load():
		h.unparkedLocked(c)
	case c.index < 0 || c.index >= len(g.clients) || g.clients[c.index] != c:
		return false // removed already, or the hub closed
	default:
		last := len(g.clients) - 1
		g.clients[c.index] = g.clients[last]
		g.clients[c.index].index = c.index
		g.clients[last] = nil
		g.clients = g.clients[:last]
	}
	h.dropBeatLocked(c)
	delete(h.bySink, c.conn)
	h.nclients--
	if len(g.clients) == 0 && g.park.live == 0 && g != h.def {
		delete(h.groups, g.key)
		for _, t := range g.topics {
			gs := slices.DeleteFunc(h.byTopic[t], func(x *group) bool { return x == g })
			if len(gs) == 0 {
				delete(h.byTopic, t)
			} else {
				h.byTopic[t] = gs
			}
		}
	}
	if h.draining && h.nclients == 0 {
		close(h.drained)
		h.drained = nil
	}
	return true
}

// dropQueueLocked empties c's queue, for a client being removed; c.mu
// must be held.
func (h *hubCore) dropQueueLocked(c *client) {
	c.removed = true
	h.queued.Add(-c.bytes)
	clear(c.queue)
	putQueue(c.queue)
	c.bytes, c.queue, c.pending, c.extra = 0, nil, nil, 0
	c.pos, c.ownQ = -1, 0
}

// detach drops c from the hub and its queue, and reports whether it was
// still there.
func (h *hubCore) detach(c *client) bool {
	h.mu.Lock()
	ok := h.removeLocked(c)
	h.mu.Unlock()
	if ok {
		c.mu.Lock()
		h.dropQueueLocked(c)
		c.mu.Unlock()
	}
	return ok
}

func (h *hubCore) unregister(conn sink) {
	h.mu.RLock()
	c := h.bySink[conn]
	h.mu.RUnlock()
	if c == nil || !h.detach(c) {
		conn.waitWrites() // dropped meanwhile: its end may still run
		return
	}
	conn.unwatch(c)
	if conn.Err() != nil {
		// The stream ended and its handler got here before the hub
		// was told (see clientClosed), which then finds it gone.
		h.countEnded(c)
	}
	// Wait for a writer that took the queue before it was dropped.
	conn.waitWrites()
}

// clientClosed is called when c's Conn ended. It may run on a writer that
// holds the Conn's write lock, so it must not wait for writes.
func (h *hubCore) clientClosed(c *client) {
	if h.detach(c) {
		h.countEnded(c)
	}
}

// countEnded counts c, whose stream ended on its own and was detached.
func (h *hubCore) countEnded(c *client) {
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if closing {
		h.shutdownDisconnects.Add(1)
	} else {
		h.clientDisconnects.Add(1)
	}
}

// countBroadcast counts an event published through a Server.
func (h *hubCore) countBroadcast() { h.broadcasts.Add(1) }

func (h *hubCore) clients() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.nclients
}

func (h *hubCore) stats() Stats {
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

// broadcast queues msg, a complete encoded event, for every client of a
// Hub.
func (h *hubCore) broadcast(msg []byte) error {
	h.mu.Lock()
	if h.closed || h.draining {
		h.mu.Unlock()
		return h.closedErr
	}
	h.broadcasts.Add(1)
	wake, evict := h.toWake[:0], h.evict[:0]
	wake, evict = h.fanoutLocked(h.def, msg, nil, time.Now().UnixNano(), wake, evict)
	h.finishFanout(wake, evict)
	return nil
}

// fanoutLocked queues msg for the clients of g; h.mu must be held. m is
// the message being delivered by a Server, nil for a Hub; now is the time
// in Unix nanoseconds. It appends the clients to wake and those to
// disconnect as too slow.
func (h *hubCore) fanoutLocked(g *group, msg []byte, m *Message, now int64, wake, evict []*client) ([]*client, []*client) {
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
			*c.pending = append(*c.pending, *m)
		case len(c.queue) >= h.cfg.queueSize && h.cfg.policy == SlowDisconnect && c.blockedLocked(now):
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
			// SlowDisconnect: it waits for a writer, and the writers
			// being behind does not make it slow. The budget bounds
			// it.
			if len(c.queue) >= h.cfg.queueSize && h.cfg.policy != SlowDisconnect {
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
	evict = h.logLocked(g, msg, pos, now, park, evict)
	clear(park)
	h.park = park[:0]
	g.fanned += int64(len(msg))
	return wake, evict
}

// entryCost is what a queue entry costs beyond its event's bytes, which
// are shared: the slice header that refers to them.
const entryCost = 24

// blockedLocked reports whether c makes no progress: its write was handed
// off as blocked, or has run for stallLimit at now (Unix nanoseconds);
// c.mu must be held.
func (c *client) blockedLocked(now int64) bool {
	return c.stuck.Load() || c.inflight > 0 && c.outAt <= now-int64(stallLimit)
}

// wakeBatch is how many clients a fan-out queues an event for before it
// hands them to the writers: with many clients, writing starts while the
// walk goes on (at 10 000 clients the walk takes a millisecond or two).
const wakeBatch = 256

// makeRoomLocked applies a dropping policy to c's full queue and returns
// the bytes freed; c.mu must be held. Only live events are dropped. The
// queue's first c.extra entries are not: extras are queued only while the
// queue holds no live event (a replay, which finishResume queues before
// any, and which a resuming client must get whole; a heartbeat, queued
// only to an unscheduled, hence empty, queue), or once fan-outs have
// stopped (retry hints).
func (h *hubCore) makeRoomLocked(c *client) int64 {
	live := c.queue[c.extra:]
	n := min(1, len(live))
	if h.cfg.policy == SlowKeepLatest {
		n = len(live)
	}
	var freed, shared int64
	for _, b := range live[:n] {
		shared += int64(len(b))
	}
	freed = shared + int64(n)*entryCost
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
func (h *hubCore) finishFanout(wake, evict []*client) {
	slow := len(evict)
	if h.cfg.maxBytes > 0 && h.queued.Load() > h.cfg.maxBytes && h.grown >= h.slack {
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
		h.logf(slog.LevelInfo, "sse: disconnecting slow clients", "clients", slow, "queued", h.cfg.queueSize)
		slowErr = fmt.Errorf("%w: client too slow: %d events queued", ErrConnectionClosed, h.cfg.queueSize)
	}
	if n := len(evict) - slow; n > 0 {
		h.budgetDisconnects.Add(uint64(n))
		h.logf(slog.LevelWarn, "sse: disconnecting clients over the queued bytes budget", "clients", n, "budget", h.cfg.maxBytes)
		budgetErr = fmt.Errorf("%w: queued bytes over budget (%d)", ErrConnectionClosed, h.cfg.maxBytes)
	}
	drop := func() {
		for i, c := range evict {
			c.conn.unwatch(c)
			if i < slow {
				c.conn.drop(slowErr)
			} else {
				c.conn.drop(budgetErr)
			}
		}
	}
	if len(evict) <= asyncDrops {
		drop()
		return
	}
	// Thousands of clients that stopped reading at once reach a full
	// queue at once: resetting their connections takes a system call or
	// two each, which the broadcast that found them does not wait for.
	go func() {
		defer h.dropping.Done()
		drop()
	}()
}

// asyncDrops is how many clients a fan-out disconnects itself; beyond
// that, a goroutine of its own does (see finishFanout).
const asyncDrops = 64

// heldLocked returns what the queues of the clients hold now: the bytes
// of every event queued or in flight, once however many clients it is
// queued for, and entryCost per queue entry; h.mu must be held (read).
//
// A group's clients get its events in order, each queue a run of them
// up to the newest (less those a filter skips or a dropping policy
// dropped), so the group's events held are those from the oldest any of
// its clients still holds. Clients already removed are not counted: one
// evicted may still have a write in flight, cut short but not yet
// returned, and counting it would evict the clients that drain in its
// place.
func (h *hubCore) heldLocked() int64 {
	var held int64
	count := func(g *group) {
		oldest := g.fanned
		f := func(c *client) {
			c.mu.Lock()
			if !c.removed {
				own, pos := c.heldLocked()
				held += own
				if pos >= 0 && pos < oldest {
					oldest = pos
				}
			}
			c.mu.Unlock()
		}
		for _, c := range g.clients {
			f(c)
		}
		g.eachParkedLocked(f)
		held += g.fanned - oldest + entryCost*int64(len(g.park.events)-g.park.off)
	}
	count(h.def)
	for _, g := range h.groups {
		count(g)
	}
	return held
}

// heldLocked returns what c holds on its own (entries, extras) and the
// position of the oldest live event it holds in its group's events, -1
// when none; hubCore.mu and c.mu must be held.
func (c *client) heldLocked() (own, pos int64) {
	own = c.ownQ + c.ownOut + entryCost*int64(len(c.queue)+int(c.nOut))
	pos = c.pos
	if c.posOut >= 0 && (pos < 0 || c.posOut < pos) {
		pos = c.posOut
	}
	if c.parked.Load() {
		if p := c.parkedPosLocked(); p >= 0 && (pos < 0 || p < pos) {
			pos = p
		}
	}
	return own, pos
}

// overBudgetLocked counts what the queues hold (see heldLocked) and, when
// it is over the budget, picks the clients that made no progress for
// longest until the rest fits, marks them removed and appends them to
// evict; h.mu must be held. A client that drains has only recent bytes
// unsent, however many: it goes last.
func (h *hubCore) overBudgetLocked(evict []*client) []*client {
	type load struct {
		c       *client
		own     int64
		pos     int64 // of the oldest live event it holds; -1: none
		oldest  int64
		stalled int64 // when its blocked write began; 0: none is blocked
		gone    bool
	}
	// Per group, its clients' loads by position, and the first of them
	// not evicted: the group holds its events from that one's position.
	type groupLoads struct {
		g     *group
		byPos []int // indices in loads
		first int
	}
	var loads []load
	var groups []*groupLoads
	var held int64
	stalledBefore := time.Now().UnixNano() - int64(stallLimit)
	add := func(g *group) {
		gl := &groupLoads{g: g}
		held += entryCost * int64(len(g.park.events)-g.park.off)
		cs := slices.Clip(g.clients) // appending must not write into g.clients
		g.eachParkedLocked(func(c *client) { cs = append(cs, c) })
		for _, c := range cs {
			c.mu.Lock()
			if !c.removed {
				own, pos := c.heldLocked()
				l := load{c: c, own: own, pos: pos, oldest: c.since}
				if c.inflight > 0 {
					l.oldest = c.sinceOut
					if c.outAt <= stalledBefore {
						l.stalled = c.outAt
					}
				}
				held += own
				if pos >= 0 {
					gl.byPos = append(gl.byPos, len(loads))
				}
				loads = append(loads, l)
			}
			c.mu.Unlock()
		}
		slices.SortFunc(gl.byPos, func(a, b int) int { return cmp.Compare(loads[a].pos, loads[b].pos) })
		if len(gl.byPos) > 0 {
			held += g.fanned - loads[gl.byPos[0]].pos
		}
		groups = append(groups, gl)
	}
	add(h.def)
	for _, g := range h.groups {
		add(g)
	}
	if held > h.cfg.maxBytes {
		groupOf := make(map[*group]*groupLoads, len(groups))
		for _, gl := range groups {
			groupOf[gl.g] = gl
		}
		order := make([]int, len(loads))
		for i := range order {
			order[i] = i
		}
		// Clients whose write is blocked go first, the longest blocked
		// first: they make no progress. Then the others by their oldest
		// unsent byte. A client merely waiting for a writer is not
		// stalled: when thousands stall at once, the writers reach the
		// clients queued behind them late, and their oldest byte is then
		// the oldest of all although they read everything they are sent.
		slices.SortFunc(order, func(i, j int) int {
			a, b := &loads[i], &loads[j]
			switch {
			case a.stalled != 0 && b.stalled != 0:
				return cmp.Compare(a.stalled, b.stalled)
			case a.stalled != 0:
				return -1
			case b.stalled != 0:
				return 1
			}
			return cmp.Compare(a.oldest, b.oldest)
		})
		for _, i := range order {
			if held <= h.cfg.maxBytes {
				break
			}
			l := &loads[i]
			l.gone = true
			held -= l.own
			if l.pos >= 0 {
				// The group holds less only when l was its oldest.
				gl := groupOf[l.c.grp]
				from := loads[gl.byPos[gl.first]].pos
				for gl.first < len(gl.byPos) && loads[gl.byPos[gl.first]].gone {
					gl.first++
				}
				to := gl.g.fanned
				if gl.first < len(gl.byPos) {
					to = loads[gl.byPos[gl.first]].pos
				}
				held -= to - from
			}
			l.c.mu.Lock()
			h.dropQueueLocked(l.c)
			l.c.mu.Unlock()
			evict = append(evict, l.c)
		}
	}
	// Until the queues grew by more than that, they fit.
	h.grown, h.slack = 0, max(h.cfg.maxBytes-held, 0)
	return evict
}

// queueExtraLocked appends entries that are not live events (replay,
// retry hints) to c's queue, whatever its length, and reports whether c
// must be woken; c.mu must be held.
func (h *hubCore) queueExtraLocked(c *client, bs ...[]byte) bool {
	if c.parked.Load() {
		// Its events first (see park.go).
		h.unparkLocked(c)
	}
	if c.bytes == 0 && len(bs) > 0 {
		c.since = time.Now().UnixNano()
	}
	for _, b := range bs {
		n := int64(len(b))
		c.queue = appendQueue(c.queue, b)
		c.bytes += n + entryCost
		c.ownQ += n
		h.queued.Add(n + entryCost)
		h.grown += n + entryCost
		c.extra++
	}
	if c.scheduled || len(c.queue) == 0 {
		return false
	}
	c.scheduled = true
	return true
}

// retryHint returns a retry field asking a client to wait the shutdown
// delay with jitter.
func (h *hubCore) retryHint() []byte {
	d := h.cfg.retry
	if h.cfg.retryJitter > 0 {
		d += rand.N(h.cfg.retryJitter)
	}
	return fmt.Appendf(nil, "retry: %d\n\n", d.Milliseconds())
}

// errShuttingDown ends a stream whose hub is closing once it is drained.
var errShuttingDown = fmt.Errorf("%w: server shutting down", ErrConnectionClosed)

// closeStall is how long Close waits for a write to finish while streams
// are left to drain: the writers left are taken to be blocked on clients
// that do not read, and their streams are ended at once.
const closeStall = 100 * time.Millisecond

// shutdown drains and ends every stream; see Hub.Shutdown.
func (h *hubCore) shutdown(ctx context.Context) error {
	drained := h.drain(true)
	if drained != nil {
		select {
		case <-drained:
		case <-ctx.Done():
			h.closeNow()
			return ctx.Err()
		}
	}
	return h.closeNow()
}

// close writes what was broadcast before it, then ends every stream; see
// Hub.Close. It does not wait for writes that make no progress.
func (h *hubCore) close() error {
	h.lastWrite.Store(time.Now().UnixNano())
	h.closing.Store(true)
	drained := h.drain(false)
	timer := time.NewTimer(closeStall)
	defer timer.Stop()
	for drained != nil {
		select {
		case <-drained:
			drained = nil
		case <-timer.C:
			idle := time.Duration(time.Now().UnixNano() - h.lastWrite.Load())
			if idle >= closeStall {
				drained = nil
			} else {
				timer.Reset(closeStall - idle)
			}
		}
	}
	return h.closeNow()
}

// drain stops the hub taking registrations and broadcasts and has every
// stream end once its queue is written, after a retry hint when hint is
// set. It returns a channel closed when no stream is left, or nil when
// none is or the hub is closed.
func (h *hubCore) drain(hint bool) <-chan struct{} {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	var idle []*client // nothing to write: end now
	if !h.draining {
		h.draining = true
		h.drained = make(chan struct{})
		n := h.nclients
		var wake []*client
		for _, c := range h.allClientsLocked() {
			c.mu.Lock()
			c.closing = true
			switch {
			case hint:
				if h.queueExtraLocked(c, h.retryHint()) {
					wake = append(wake, c)
				}
			case !c.scheduled && len(c.queue) == 0 && !c.removed:
				idle = append(idle, c)
			}
			c.mu.Unlock()
		}
		h.pool.push(wake)
		if n == 0 {
			close(h.drained)
			h.drained = nil
		}
		h.logf(slog.LevelInfo, "sse: shutting down", "clients", n)
	}
	drained := h.drained
	h.mu.Unlock()
	for _, c := range idle {
		c.conn.end(errShuttingDown)
	}
	return drained
}

// closeNow ends every stream left at once and waits for the writers
// and for Run.
func (h *hubCore) closeNow() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.dropping.Wait()
		h.pool.wait(h.writeTimeout())
		h.runs.Wait()
		return nil
	}
	list := h.closeLocked()
	h.mu.Unlock()

	for _, c := range list {
		c.mu.Lock()
		h.dropQueueLocked(c)
		c.closing = true
		c.mu.Unlock()
		c.conn.unwatch(c)
		h.shutdownDisconnects.Add(1)
		c.conn.drop(fmt.Errorf("%w: %w", ErrConnectionClosed, h.closedErr))
	}
	h.dropping.Wait()
	if n := h.pool.wait(h.writeTimeout()); n > 0 {
		h.abandoned.Add(uint64(n))
		h.logf(slog.LevelWarn, "sse: close abandoned writes that could not be cut short", "writes", n)
	}
	h.runs.Wait()
	return nil
}

// closeLocked marks the hub closed and lets go of every client, which it
// returns for closeNow to end; h.mu must be held. Every client is
// unparked and out of its group's list when it returns, under h.mu: a
// writer (drain) or a stream's end (removeLocked) that takes h.mu
// afterwards, while closeNow is still ending the others, must find its
// client neither parked nor listed.
func (h *hubCore) closeLocked() []*client {
	h.closed = true
	list := h.allClientsLocked()
	forget := func(g *group) {
		g.eachParkedLocked(func(c *client) { c.parked.Store(false) })
		h.queued.Add(-g.park.bytes)
		g.park = parkLog{base: g.park.base}
		g.clients = nil
	}
	forget(h.def)
	for _, g := range h.groups {
		forget(g)
	}
	h.groups, h.byTopic, h.bySink = nil, nil, nil
	h.nclients = 0
	if h.drained != nil {
		close(h.drained)
		h.drained = nil
	}
	close(h.done)
	h.beats.clearLocked()
	h.gone.stopLocked()
	return list
}

// writeTimeout is how long closing waits for the writers: a write that
// has a deadline ends by then; one that has none (see warnNoDeadline) is
// abandoned.
func (h *hubCore) writeTimeout() time.Duration {
	if d := durationOr(h.upgrade.WriteTimeout, defaultWriteTimeout); d > 0 {
		return d
	}
	return defaultWriteTimeout
}

// warnNoDeadline logs, once per hub, that a stream's writes cannot be
// given a deadline: a client that stops reading then blocks its write
// until the client goes away, and Close abandons that write.
func (h *hubCore) warnNoDeadline(conn sink) {
	if !conn.deadlineless() || !h.warnedNoDeadline.CompareAndSwap(false, true) {
		return
	}
	h.logf(slog.LevelWarn, "sse: the ResponseWriter does not support write deadlines (a wrapper without Unwrap?): a client that stops reading can block a write until Close gives up on it")
}
