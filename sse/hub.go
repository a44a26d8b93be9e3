package sse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultQueueSize is the number of events a [Hub] queues for one client
// when [HubOptions.QueueSize] is zero.
const DefaultQueueSize = 1024

// Defaults of the budget and shutdown settings of a [Hub] or [Server].
const (
	// DefaultMaxQueuedBytes bounds the bytes queued for all clients of a
	// hub or server together.
	DefaultMaxQueuedBytes = 256 << 20
	// DefaultShutdownRetry is the least reconnection time sent to
	// clients by Shutdown.
	DefaultShutdownRetry = time.Second
	// DefaultShutdownJitter is the spread of random time added to it.
	DefaultShutdownJitter = 5 * time.Second
)

// maxWrite is the most a writer gathers into one write.
const maxWrite = 64 << 10

// SlowPolicy says what a [Hub] or [Server] does with a client whose queue
// is full when a new event comes for it.
type SlowPolicy int

const (
	// SlowDisconnect ends the client's stream; the default. A client that
	// reconnects with Last-Event-ID to a [Server] gets what it missed
	// from the history, so nothing is lost.
	SlowDisconnect SlowPolicy = iota

	// SlowDropOldest discards the oldest queued event to make room.
	SlowDropOldest

	// SlowKeepLatest discards every queued event and keeps only the new
	// one, for streams where only the latest state matters.
	SlowKeepLatest
)

// String returns the policy's name.
func (p SlowPolicy) String() string {
	switch p {
	case SlowDisconnect:
		return "disconnect"
	case SlowDropOldest:
		return "drop-oldest"
	case SlowKeepLatest:
		return "keep-latest"
	}
	return fmt.Sprintf("SlowPolicy(%d)", int(p))
}

// HubOptions configures a [Hub]. The zero value gives the defaults.
type HubOptions struct {
	// QueueSize is how many events may wait for one client; what
	// happens to a client whose queue is full is set by SlowClients.
	// Zero means DefaultQueueSize (1024).
	QueueSize int

	// SlowClients is the policy for clients whose queue is full. The
	// zero value is SlowDisconnect.
	SlowClients SlowPolicy

	// MaxQueuedBytes bounds the bytes queued for all clients together
	// (an event queued for n clients counts n times). Beyond it, the
	// clients with the largest queues are disconnected first until the
	// total is back under the bound. Zero means DefaultMaxQueuedBytes
	// (256 MiB); a negative value removes the bound.
	MaxQueuedBytes int64

	// MaxWriters caps the goroutines that write to clients. Zero means 256.
	// A few per core are used while clients keep up; more are added only
	// while writes block on clients that do not read.
	MaxWriters int

	// Heartbeat, when not zero, overrides Upgrade.Heartbeat for the
	// streams [Hub.ServeHTTP] opens: the idle time after which a comment
	// is sent (15s by default); negative disables heartbeats.
	Heartbeat time.Duration

	// ShutdownRetry is the least reconnection time [Hub.Shutdown] asks
	// clients to wait; zero means DefaultShutdownRetry (1s).
	ShutdownRetry time.Duration

	// ShutdownJitter is the spread of the random time added to
	// ShutdownRetry for each client, so that clients do not all come
	// back at once. Zero means DefaultShutdownJitter (5s); negative
	// means none.
	ShutdownJitter time.Duration

	// Logger, when set, receives a record for each client disconnected
	// by the hub (slow, over budget) and for shutdowns.
	Logger *slog.Logger

	// Upgrade holds the options of the streams that [Hub.ServeHTTP] opens.
	Upgrade *UpgradeOptions
}

// HubStats is a snapshot of the counters of a [Hub] or [Server].
type HubStats struct {
	Clients         int    // registered clients now
	Topics          int    // topics followed by a client now (Server only)
	Broadcasts      uint64 // events broadcast (Hub) or published through Server.Publish
	Delivered       uint64 // live events written to clients
	Replayed        uint64 // events from history queued for resuming clients
	Dropped         uint64 // events discarded by SlowDropOldest or SlowKeepLatest
	QueuedBytes     int64  // bytes queued or being written now
	SlowDisconnects uint64 // clients disconnected because their queue was full

	// BudgetDisconnects counts clients disconnected because the bytes
	// queued for all clients passed MaxQueuedBytes.
	BudgetDisconnects uint64
	// ShutdownDisconnects counts streams ended by Close or Shutdown.
	ShutdownDisconnects uint64
	// ClientDisconnects counts registered streams that ended on their
	// own: the client went away, a write failed, or the Conn was closed.
	ClientDisconnects uint64
}

// Hub broadcasts values of type T to every registered [Conn].
//
// Each value is encoded once, whatever the number of clients: a string
// becomes the event data; an [Event] or *Event is sent with its own
// fields; a [fmt.Stringer] is sent as the text of its String method; any
// other value is encoded with [encoding/json]. An encoding error is
// returned by [Hub.Broadcast] and nothing is sent.
//
// A Hub keeps no history and sends events as they are, without IDs of
// its own; for replay from Last-Event-ID and topics, use a [Server].
//
// # Slow clients
//
// One slow client never delays the others. Broadcast only appends the
// encoded event to each client's bounded queue; a small pool of writers
// drains the queues, gathering everything a client has queued into one
// write and one flush. When a client's queue is full (see
// [HubOptions.QueueSize]) the [HubOptions.SlowClients] policy applies: by
// default that client is disconnected and counted in
// [HubStats.SlowDisconnects]; Broadcast never waits for it.
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
	if opts == nil {
		opts = &HubOptions{}
	}
	var up UpgradeOptions
	if opts.Upgrade != nil {
		up = *opts.Upgrade
	}
	if opts.Heartbeat != 0 {
		up.Heartbeat = opts.Heartbeat
	}
	core := newHubCore(engineConfig{
		queueSize:   opts.QueueSize,
		maxWriters:  opts.MaxWriters,
		policy:      opts.SlowClients,
		maxBytes:    opts.MaxQueuedBytes,
		logger:      opts.Logger,
		retry:       opts.ShutdownRetry,
		retryJitter: opts.ShutdownJitter,
	})
	core.upgrade = &up
	return &Hub[T]{core: core}
}

// Run blocks until the hub is closed. The hub works without it; Run is
// kept so that code written for hubs with an event loop keeps working,
// and calling it more than once is harmless.
func (h *Hub[T]) Run() { h.core.run() }

// Register adds conn to the hub. Every broadcast that starts after
// Register returns reaches conn. A conn that ends is removed on its own.
// Register returns [ErrHubClosed] after [Hub.Close] (or once
// [Hub.Shutdown] started), and [ErrConnectionClosed] when conn has
// already ended.
func (h *Hub[T]) Register(conn *Conn) error {
	_, err := h.core.register(conn, h.core.def, nil, nil, false)
	return err
}

// Unregister removes conn from the hub and waits for a write to it in
// progress, so the handler may return right after. It does not close conn.
func (h *Hub[T]) Unregister(conn *Conn) { h.core.unregister(conn) }

// Clients returns the number of registered clients.
func (h *Hub[T]) Clients() int { return h.core.clients() }

// Stats returns a snapshot of the hub's counters.
func (h *Hub[T]) Stats() HubStats { return h.core.stats() }

// Broadcast sends v to every registered client (see [Hub] for how it is
// encoded). It does not wait for the writes. It returns [ErrHubClosed]
// after [Hub.Close] or once [Hub.Shutdown] started, and [ErrInvalidEvent]
// or the JSON error when v cannot be encoded; nothing is sent then.
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

// Close disconnects every client at once, waits for the writers and for
// [Hub.Run] to return, and returns nil. Register and Broadcast fail with
// [ErrHubClosed] afterwards. Close is idempotent.
func (h *Hub[T]) Close() error { return h.core.close() }

// Shutdown closes the hub gracefully: Register, Broadcast and new
// requests to [Hub.ServeHTTP] are refused at once (the latter with 503),
// each client is sent a "retry:" field asking it to wait
// [HubOptions.ShutdownRetry] plus a random part of
// [HubOptions.ShutdownJitter] before reconnecting, and each stream ends
// once its queue is written. Shutdown returns nil when every stream has
// ended and the writers are done. If ctx ends first, it closes the hub
// at once as [Hub.Close] does and returns ctx's error.
//
// To shut down with an [http.Server], register it there, so that the
// streams (which http.Server.Shutdown does not end) drain while the
// server waits:
//
//	srv.RegisterOnShutdown(func() { hub.Shutdown(ctx) })
//	srv.Shutdown(ctx)
func (h *Hub[T]) Shutdown(ctx context.Context) error { return h.core.shutdown(ctx) }

// ServeHTTP makes the hub an [http.Handler]: it upgrades the request with
// the hub's [HubOptions.Upgrade] options, registers the stream before the
// opening comment is sent (so a client that has seen it receives every
// later broadcast) and holds it open until the client goes away or the
// hub closes. It answers 503 Service Unavailable when the hub is closed
// or shutting down.
func (h *Hub[T]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.core.isClosed() {
		http.Error(w, ErrHubClosed.Error(), http.StatusServiceUnavailable)
		return
	}
	conn, err := upgrade(r.Context(), w, r, h.core.upgrade, func(c *Conn) error {
		_, err := h.core.register(c, h.core.def, nil, nil, false)
		return err
	})
	if !upgradeOK(w, err) {
		return
	}
	defer conn.Close()
	defer h.core.unregister(conn)
	<-conn.Done()
}

// upgradeOK answers the request when upgrade failed and reports whether
// it succeeded.
func upgradeOK(w http.ResponseWriter, err error) bool {
	switch {
	case err == nil:
		return true
	case errors.Is(err, ErrHubClosed):
		http.Error(w, ErrHubClosed.Error(), http.StatusServiceUnavailable)
	case errors.Is(err, ErrNoFlusher):
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
	return false
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
	conn   *Conn
	grp    *group
	index  int                 // position in grp.clients
	filter func(*Message) bool // nil passes everything

	mu        sync.Mutex
	queue     [][]byte
	spare     [][]byte
	bytes     int64 // bytes in queue
	inflight  int64 // bytes taken by a writer and not yet written
	extra     int   // queue entries that are not live events
	scheduled bool  // in the ready queue or being written
	removed   bool
	closing   bool      // shutting down: end the stream once drained
	resuming  bool      // live events go to pending until the replay is queued
	pending   []Message // live events that came while resuming
}

// group is the clients that follow the same topics. Events are encoded
// once per group.
type group struct {
	key     string
	topics  []string // sorted; nil for a Hub's group
	clients []*client
}

// engineConfig is the configuration shared by Hub and Server.
type engineConfig struct {
	queueSize   int
	maxWriters  int
	policy      SlowPolicy
	maxBytes    int64
	logger      *slog.Logger
	retry       time.Duration
	retryJitter time.Duration
}

// hubCore is the non-generic engine behind Hub and Server.
type hubCore struct {
	cfg     engineConfig
	upgrade *UpgradeOptions

	mu       sync.RWMutex
	byConn   map[*Conn]*client
	def      *group            // a Hub's only group
	groups   map[string]*group // by key
	byTopic  map[string][]*group
	heads    map[string]Position // newest event seen per topic (Server)
	live     map[string]bool     // topics with a running subscription (Server)
	nclients int
	closed   bool
	draining bool
	drained  chan struct{} // closed when draining and no client is left
	toWake   []*client     // scratch for fan-out, guarded by mu
	evict    []*client     // scratch for fan-out, guarded by mu
	done     chan struct{}
	runs     sync.WaitGroup

	pool writerPool

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

func newHubCore(cfg engineConfig) *hubCore {
	if cfg.queueSize <= 0 {
		cfg.queueSize = DefaultQueueSize
	}
	switch {
	case cfg.maxBytes == 0:
		cfg.maxBytes = DefaultMaxQueuedBytes
	case cfg.maxBytes < 0:
		cfg.maxBytes = 0
	}
	if cfg.retry <= 0 {
		cfg.retry = DefaultShutdownRetry
	}
	cfg.retryJitter = durationOr(cfg.retryJitter, DefaultShutdownJitter)
	h := &hubCore{
		cfg:     cfg,
		byConn:  make(map[*Conn]*client),
		def:     &group{},
		groups:  make(map[string]*group),
		byTopic: make(map[string][]*group),
		heads:   make(map[string]Position),
		live:    make(map[string]bool),
		done:    make(chan struct{}),
	}
	h.pool.hub = h
	h.pool.base = max(4, runtime.GOMAXPROCS(0))
	h.pool.max = cfg.maxWriters
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
func (h *hubCore) register(conn *Conn, g *group, topics []string, filter func(*Message) bool, resuming bool) (*client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.draining {
		return nil, ErrHubClosed
	}
	if c, ok := h.byConn[conn]; ok {
		return c, nil
	}
	if g == nil {
		for _, t := range topics {
			if !h.live[t] {
				return nil, fmt.Errorf("%w: topic %q has no subscription", ErrHubClosed, t)
			}
		}
		g = h.groupLocked(topics)
	}
	if !conn.watch(h) {
		return nil, conn.Err()
	}
	c := &client{conn: conn, grp: g, index: len(g.clients), filter: filter, resuming: resuming}
	h.byConn[conn] = c
	g.clients = append(g.clients, c)
	h.nclients++
	return c, nil
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

// removeLocked drops c from its group; h.mu must be held.
func (h *hubCore) removeLocked(c *client) {
	g := c.grp
	last := len(g.clients) - 1
	g.clients[c.index] = g.clients[last]
	g.clients[c.index].index = c.index
	g.clients[last] = nil
	g.clients = g.clients[:last]
	delete(h.byConn, c.conn)
	h.nclients--
	if len(g.clients) == 0 && g != h.def {
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
}

// dropQueueLocked empties c's queue, for a client being removed; c.mu
// must be held.
func (h *hubCore) dropQueueLocked(c *client) {
	c.removed = true
	h.queued.Add(-c.bytes)
	c.bytes, c.queue, c.pending, c.extra = 0, nil, nil, 0
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
		h.dropQueueLocked(c)
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
	conn.wmu.wait()
}

// connClosed is called by a Conn that ended. It may run on a writer that
// holds conn.wmu, so it must not wait for writes.
func (h *hubCore) connClosed(conn *Conn) {
	c := h.detach(conn)
	if c == nil {
		return
	}
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if closing {
		h.shutdownDisconnects.Add(1)
	} else {
		h.clientDisconnects.Add(1)
	}
}

func (h *hubCore) clients() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.nclients
}

func (h *hubCore) stats() HubStats {
	h.mu.RLock()
	clients, topics := h.nclients, len(h.byTopic)
	h.mu.RUnlock()
	return HubStats{
		Clients:             clients,
		Topics:              topics,
		Broadcasts:          h.broadcasts.Load(),
		Delivered:           h.delivered.Load(),
		Replayed:            h.replayed.Load(),
		Dropped:             h.dropped.Load(),
		QueuedBytes:         h.queued.Load(),
		SlowDisconnects:     h.slowDisconnects.Load(),
		BudgetDisconnects:   h.budgetDisconnects.Load(),
		ShutdownDisconnects: h.shutdownDisconnects.Load(),
		ClientDisconnects:   h.clientDisconnects.Load(),
	}
}

// broadcast queues msg, a complete encoded event, for every client of a
// Hub.
func (h *hubCore) broadcast(msg []byte) error {
	h.mu.Lock()
	if h.closed || h.draining {
		h.mu.Unlock()
		return ErrHubClosed
	}
	h.broadcasts.Add(1)
	wake, evict := h.toWake[:0], h.evict[:0]
	wake, evict = h.fanoutLocked(h.def, msg, nil, wake, evict)
	h.finishFanout(wake, evict)
	return nil
}

// fanoutLocked queues msg for the clients of g; h.mu must be held. m is
// the message being delivered by a Server, nil for a Hub. It appends the
// clients to wake and those to disconnect as too slow.
func (h *hubCore) fanoutLocked(g *group, msg []byte, m *Message, wake, evict []*client) ([]*client, []*client) {
	size := int64(len(msg))
	var added int64
	for _, c := range g.clients {
		if m != nil && c.filter != nil && !c.filter(m) {
			continue
		}
		c.mu.Lock()
		switch {
		case c.removed || c.closing:
		case c.resuming:
			c.pending = append(c.pending, *m)
		case len(c.queue) >= h.cfg.queueSize && h.cfg.policy == SlowDisconnect:
			added -= c.bytes
			c.bytes = 0
			c.removed, c.queue = true, nil
			evict = append(evict, c)
		default:
			if len(c.queue) >= h.cfg.queueSize {
				added -= h.makeRoomLocked(c)
			}
			c.queue = append(c.queue, msg)
			c.bytes += size
			added += size
			if !c.scheduled {
				c.scheduled = true
				wake = append(wake, c)
			}
		}
		c.mu.Unlock()
	}
	h.queued.Add(added)
	return wake, evict
}

// makeRoomLocked applies a dropping policy to c's full queue and returns
// the bytes freed; c.mu must be held.
func (h *hubCore) makeRoomLocked(c *client) int64 {
	var freed int64
	n := 1
	if h.cfg.policy == SlowKeepLatest {
		n = len(c.queue)
	}
	for _, b := range c.queue[:n] {
		freed += int64(len(b))
	}
	k := copy(c.queue, c.queue[n:])
	clear(c.queue[k:])
	c.queue = c.queue[:k]
	c.bytes -= freed
	c.extra = max(0, c.extra-n)
	h.dropped.Add(uint64(n))
	return freed
}

// finishFanout ends a fan-out: it enforces the byte budget, wakes the
// writers, unlocks h.mu and disconnects the slow clients.
func (h *hubCore) finishFanout(wake, evict []*client) {
	slow := len(evict)
	if h.cfg.maxBytes > 0 && h.queued.Load() > h.cfg.maxBytes {
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
	h.mu.Unlock()

	for i, c := range evict {
		c.conn.unwatch(h)
		if i < slow {
			h.slowDisconnects.Add(1)
			h.logf(slog.LevelInfo, "sse: disconnecting slow client", "queued", h.cfg.queueSize)
			c.conn.shutdown(fmt.Errorf("%w: client too slow: %d events queued", ErrConnectionClosed, h.cfg.queueSize))
		} else {
			h.budgetDisconnects.Add(1)
			h.logf(slog.LevelWarn, "sse: disconnecting client over the queued bytes budget", "budget", h.cfg.maxBytes)
			c.conn.shutdown(fmt.Errorf("%w: queued bytes over budget (%d)", ErrConnectionClosed, h.cfg.maxBytes))
		}
	}
}

// overBudgetLocked picks the clients with the largest queues until the
// bytes queued for the others fit the budget, marks them removed and
// appends them to evict; h.mu must be held.
func (h *hubCore) overBudgetLocked(evict []*client) []*client {
	type load struct {
		c *client
		n int64
	}
	var loads []load
	each := func(g *group) {
		for _, c := range g.clients {
			c.mu.Lock()
			if !c.removed && c.bytes+c.inflight > 0 {
				loads = append(loads, load{c, c.bytes + c.inflight})
			}
			c.mu.Unlock()
		}
	}
	each(h.def)
	for _, g := range h.groups {
		each(g)
	}
	slices.SortFunc(loads, func(a, b load) int { return int(b.n - a.n) })
	total := h.queued.Load()
	for _, l := range loads {
		if total <= h.cfg.maxBytes {
			break
		}
		total -= l.n
		l.c.mu.Lock()
		h.dropQueueLocked(l.c)
		l.c.mu.Unlock()
		evict = append(evict, l.c)
	}
	return evict
}

// queueExtraLocked appends entries that are not live events (replay,
// retry hints) to c's queue, whatever its length, and reports whether c
// must be woken; c.mu must be held.
func (h *hubCore) queueExtraLocked(c *client, bs ...[]byte) bool {
	for _, b := range bs {
		c.queue = append(c.queue, b)
		c.bytes += int64(len(b))
		h.queued.Add(int64(len(b)))
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

// shutdown drains and ends every stream; see Hub.Shutdown.
func (h *hubCore) shutdown(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return h.close()
	}
	if !h.draining {
		h.draining = true
		h.drained = make(chan struct{})
		n := h.nclients
		var wake []*client
		each := func(g *group) {
			for _, c := range g.clients {
				c.mu.Lock()
				c.closing = true
				if h.queueExtraLocked(c, h.retryHint()) {
					wake = append(wake, c)
				}
				c.mu.Unlock()
			}
		}
		each(h.def)
		for _, g := range h.groups {
			each(g)
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
	if drained != nil {
		select {
		case <-drained:
		case <-ctx.Done():
			h.close()
			return ctx.Err()
		}
	}
	return h.close()
}

func (h *hubCore) close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.pool.wait()
		h.runs.Wait()
		return nil
	}
	h.closed = true
	var list []*client
	for _, c := range h.byConn {
		list = append(list, c)
	}
	h.byConn = nil
	h.def.clients = nil
	h.groups, h.byTopic = nil, nil
	h.nclients = 0
	if h.drained != nil {
		close(h.drained)
		h.drained = nil
	}
	close(h.done)
	h.mu.Unlock()

	for _, c := range list {
		c.mu.Lock()
		h.dropQueueLocked(c)
		c.closing = true
		c.mu.Unlock()
		c.conn.unwatch(h)
		h.shutdownDisconnects.Add(1)
		c.conn.shutdown(fmt.Errorf("%w: %w", ErrConnectionClosed, ErrHubClosed))
	}
	h.pool.wait()
	h.runs.Wait()
	return nil
}

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
