package sse

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultQueueSize is the number of events a [Hub] queues for one client
// when [HubOptions.QueueSize] is zero.
const DefaultQueueSize = 1024

// maxWrite is the most a writer gathers into one write.
const maxWrite = 64 << 10

// stallAfter is how long the ready queue may wait for any worker before
// the pool adds workers: every worker is then stuck writing to a client
// that does not read.
const stallAfter = 20 * time.Millisecond

// HubOptions configures a [Hub]. The zero value gives the defaults.
type HubOptions struct {
	// QueueSize is how many events may wait for one client. A client
	// whose queue is full when an event is broadcast is disconnected (see
	// [Hub]). Zero means DefaultQueueSize (1024).
	QueueSize int

	// MaxWriters caps the goroutines that write to clients. Zero means 256.
	// A few per core are used while clients keep up; more are added only
	// while writes block on clients that do not read.
	MaxWriters int

	// Upgrade holds the options of the streams that [Hub.ServeHTTP] opens.
	Upgrade *UpgradeOptions
}

// HubStats is a snapshot of a [Hub]'s counters.
type HubStats struct {
	Clients         int    // registered clients now
	Broadcasts      uint64 // events broadcast
	Delivered       uint64 // events written to clients
	SlowDisconnects uint64 // clients disconnected because their queue was full
}

// Hub broadcasts values of type T to every registered [Conn].
//
// Each value is encoded once, whatever the number of clients: a string
// becomes the event data; an [Event] or *Event is sent with its own
// fields; a [fmt.Stringer] is sent as the text of its String method; any
// other value is encoded with [encoding/json]. An encoding error is
// returned by [Hub.Broadcast] and nothing is sent.
//
// # Slow clients
//
// One slow client never delays the others. Broadcast only appends the
// encoded event to each client's bounded queue; a small pool of writers
// drains the queues, gathering everything a client has queued into one
// write and one flush. When a client's queue is full (see
// [HubOptions.QueueSize]) that client is disconnected and counted in
// [HubStats.SlowDisconnects]; Broadcast never waits for it. A client that
// reconnects with Last-Event-ID can then catch up from a replay log.
//
// All methods are safe for concurrent use. Every client sees broadcasts in
// the same order.
type Hub[T any] struct {
	core *hubCore
}

// NewHub returns a hub with the default options.
func NewHub[T any]() *Hub[T] {
	return NewHubWithOptions[T](nil)
}

// NewHubWithOptions returns a hub configured by opts; nil gives the
// defaults.
func NewHubWithOptions[T any](opts *HubOptions) *Hub[T] {
	return &Hub[T]{core: newHubCore(opts)}
}

// Run blocks until the hub is closed. The hub works without it; Run is
// kept so that code written for hubs with an event loop keeps working,
// and calling it more than once is harmless.
func (h *Hub[T]) Run() { h.core.run() }

// Register adds conn to the hub. Every broadcast that starts after
// Register returns reaches conn. A conn that ends is removed on its own.
// Register returns [ErrHubClosed] after [Hub.Close], and
// [ErrConnectionClosed] when conn has already ended.
func (h *Hub[T]) Register(conn *Conn) error { return h.core.register(conn) }

// Unregister removes conn from the hub and waits for a write to it in
// progress, so the handler may return right after. It does not close conn.
func (h *Hub[T]) Unregister(conn *Conn) { h.core.unregister(conn) }

// Clients returns the number of registered clients.
func (h *Hub[T]) Clients() int { return h.core.clients() }

// Stats returns a snapshot of the hub's counters.
func (h *Hub[T]) Stats() HubStats { return h.core.stats() }

// Broadcast sends v to every registered client (see [Hub] for how it is
// encoded). It does not wait for the writes. It returns [ErrHubClosed]
// after [Hub.Close], and [ErrInvalidEvent] or the JSON error when v cannot
// be encoded; nothing is sent then.
func (h *Hub[T]) Broadcast(v T) error {
	msg, err := encodeValue(v)
	if err != nil {
		return err
	}
	return h.core.broadcast(msg)
}

// BroadcastJSON sends v encoded with [encoding/json] as the event data,
// whatever T is.
func (h *Hub[T]) BroadcastJSON(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("sse: encoding event data: %w", err)
	}
	return h.core.broadcast((&Event{Data: string(data)}).appendWire(nil))
}

// Close disconnects every client, waits for the writers and for [Hub.Run]
// to return, and returns nil. Register and Broadcast fail with
// [ErrHubClosed] afterwards. Close is idempotent.
func (h *Hub[T]) Close() error { return h.core.close() }

// ServeHTTP makes the hub an [http.Handler]: it upgrades the request with
// the hub's [HubOptions.Upgrade] options, registers the stream before the
// opening comment is sent (so a client that has seen it receives every
// later broadcast) and holds it open until the client goes away or the
// hub closes. It answers 503 Service Unavailable when the hub is closed.
func (h *Hub[T]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.core.isClosed() {
		http.Error(w, ErrHubClosed.Error(), http.StatusServiceUnavailable)
		return
	}
	conn, err := upgrade(r.Context(), w, r, h.core.opts.Upgrade, h.core.register)
	switch {
	case errors.Is(err, ErrHubClosed):
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	case errors.Is(err, ErrNoFlusher):
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	case err != nil:
		return
	}
	defer conn.Close()
	defer h.core.unregister(conn)
	<-conn.Done()
}

// encodeValue encodes one broadcast value as a complete event.
func encodeValue(v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		return (&Event{Data: x}).appendWire(nil), nil
	case *Event:
		if x == nil {
			return nil, fmt.Errorf("%w: nil *Event", ErrInvalidEvent)
		}
		return x.AppendText(nil)
	case Event:
		return x.AppendText(nil)
	case fmt.Stringer:
		return (&Event{Data: x.String()}).appendWire(nil), nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("sse: encoding event data: %w", err)
	}
	return (&Event{Data: string(data)}).appendWire(nil), nil
}

// client is one registered Conn with its queue of encoded events.
type client struct {
	conn  *Conn
	index int // position in hubCore.list

	mu        sync.Mutex
	queue     [][]byte
	spare     [][]byte
	scheduled bool // in the ready queue or being written
	removed   bool
}

// hubCore is the non-generic engine behind Hub.
type hubCore struct {
	opts      HubOptions
	queueSize int

	mu     sync.RWMutex
	byConn map[*Conn]*client
	list   []*client
	closed bool
	toWake []*client // scratch for broadcast, guarded by mu
	evict  []*client // scratch for broadcast, guarded by mu
	done   chan struct{}
	runs   sync.WaitGroup

	pool writerPool

	broadcasts      atomic.Uint64
	delivered       atomic.Uint64
	slowDisconnects atomic.Uint64
}

func newHubCore(opts *HubOptions) *hubCore {
	h := &hubCore{byConn: make(map[*Conn]*client), done: make(chan struct{})}
	if opts != nil {
		h.opts = *opts
	}
	h.queueSize = h.opts.QueueSize
	if h.queueSize <= 0 {
		h.queueSize = DefaultQueueSize
	}
	h.pool.hub = h
	h.pool.base = max(4, runtime.GOMAXPROCS(0))
	h.pool.max = h.opts.MaxWriters
	if h.pool.max <= 0 {
		h.pool.max = 256
	}
	h.pool.max = max(h.pool.max, h.pool.base)
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

func (h *hubCore) isClosed() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.closed
}

func (h *hubCore) register(conn *Conn) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrHubClosed
	}
	if _, ok := h.byConn[conn]; ok {
		return nil
	}
	if !conn.watch(h) {
		return conn.Err()
	}
	c := &client{conn: conn, index: len(h.list)}
	h.byConn[conn] = c
	h.list = append(h.list, c)
	return nil
}

// removeLocked drops c from the client list; h.mu must be held.
func (h *hubCore) removeLocked(c *client) {
	last := len(h.list) - 1
	h.list[c.index] = h.list[last]
	h.list[c.index].index = c.index
	h.list[last] = nil
	h.list = h.list[:last]
	delete(h.byConn, c.conn)
}

// detach drops conn from the hub and its queue; it reports the client, or
// nil when conn was not registered.
func (h *hubCore) detach(conn *Conn) *client {
	h.mu.Lock()
	c := h.byConn[conn]
	if c != nil {
		h.removeLocked(c)
	}
	h.mu.Unlock()
	if c != nil {
		c.mu.Lock()
		c.removed = true
		c.queue = nil
		c.mu.Unlock()
	}
	return c
}

func (h *hubCore) unregister(conn *Conn) {
	if h.detach(conn) == nil {
		return
	}
	conn.unwatch(h)
	// Wait for a writer that took the queue before it was dropped.
	conn.wmu.Lock()
	conn.wmu.Unlock() //nolint:staticcheck // a barrier, not a critical section
}

// connClosed is called by a Conn that ended. It may run on a writer that
// holds conn.wmu, so it must not wait for writes.
func (h *hubCore) connClosed(conn *Conn) { h.detach(conn) }

func (h *hubCore) clients() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.list)
}

func (h *hubCore) stats() HubStats {
	return HubStats{
		Clients:         h.clients(),
		Broadcasts:      h.broadcasts.Load(),
		Delivered:       h.delivered.Load(),
		SlowDisconnects: h.slowDisconnects.Load(),
	}
}

// broadcast queues msg, a complete encoded event, for every client.
func (h *hubCore) broadcast(msg []byte) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrHubClosed
	}
	h.broadcasts.Add(1)
	wake, evict := h.toWake[:0], h.evict[:0]
	for _, c := range h.list {
		c.mu.Lock()
		switch {
		case len(c.queue) >= h.queueSize:
			c.removed = true
			c.queue = nil
			evict = append(evict, c)
		default:
			c.queue = append(c.queue, msg)
			if !c.scheduled {
				c.scheduled = true
				wake = append(wake, c)
			}
		}
		c.mu.Unlock()
	}
	for _, c := range evict {
		h.removeLocked(c)
	}
	h.pool.push(wake)
	clear(wake)
	h.toWake = wake[:0]
	// evict is used after unlocking, so it cannot be kept as scratch.
	h.evict = nil
	h.mu.Unlock()

	for _, c := range evict {
		h.slowDisconnects.Add(1)
		c.conn.unwatch(h)
		c.conn.shutdown(fmt.Errorf("%w: client too slow: %d events queued", ErrConnectionClosed, h.queueSize))
	}
	return nil
}

func (h *hubCore) close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.runs.Wait()
		return nil
	}
	h.closed = true
	list := h.list
	h.list, h.byConn = nil, nil
	close(h.done)
	h.mu.Unlock()

	for _, c := range list {
		c.mu.Lock()
		c.removed = true
		c.queue = nil
		c.mu.Unlock()
		c.conn.unwatch(h)
		c.conn.shutdown(fmt.Errorf("%w: %w", ErrConnectionClosed, ErrHubClosed))
	}
	h.pool.wait()
	h.runs.Wait()
	return nil
}

// writerPool runs the goroutines that drain client queues. Workers start
// on demand and exit when no client is waiting, so an idle hub has none.
type writerPool struct {
	hub  *hubCore
	base int // workers started freely
	max  int // workers at most, counting those added for stalls

	mu      sync.Mutex
	ready   []*client
	head    int
	workers int
	lastPop time.Time
	wg      sync.WaitGroup
}

// push makes clients ready to be written and starts workers as needed.
func (p *writerPool) push(cs []*client) {
	if len(cs) == 0 {
		return
	}
	p.mu.Lock()
	p.markWaitStart()
	p.ready = append(p.ready, cs...)
	p.startWorkersLocked()
}

// pushOne is push for one client, without a slice to allocate.
func (p *writerPool) pushOne(c *client) {
	p.mu.Lock()
	p.markWaitStart()
	p.ready = append(p.ready, c)
	p.startWorkersLocked()
}

// markWaitStart starts the stall clock when the ready queue was empty.
func (p *writerPool) markWaitStart() {
	if p.head == len(p.ready) {
		p.lastPop = time.Now()
	}
}

// startWorkersLocked starts the workers the ready queue needs and unlocks
// p.mu.
func (p *writerPool) startWorkersLocked() {
	waiting := len(p.ready) - p.head
	start := min(waiting, p.base) - p.workers
	if start <= 0 && p.workers < p.max && time.Since(p.lastPop) > stallAfter {
		// Every worker is stuck on a client that does not read.
		start = min(p.base, p.max-p.workers)
	}
	start = max(start, 0)
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
	p.lastPop = time.Now()
	return c
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
		if cap(b) > 4*maxWrite {
			b = nil
		}
	}
}

func (p *writerPool) wait() { p.wg.Wait() }

// drain writes everything queued for c in as few writes as it can, using
// b as scratch, and returns b for reuse.
func (p *writerPool) drain(c *client, b []byte) []byte {
	conn := c.conn
	conn.wmu.Lock()
	c.mu.Lock()
	q := c.queue
	c.queue, c.spare = c.spare, nil
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
			p.hub.delivered.Add(uint64(len(q)))
		}
	}
	conn.wmu.Unlock()
	clear(q)

	c.mu.Lock()
	if cap(q) <= 64 {
		c.spare = q[:0]
	}
	again := len(c.queue) > 0 && !c.removed && err == nil
	c.scheduled = again
	c.mu.Unlock()
	if again {
		p.pushOne(c)
	}
	return b
}
