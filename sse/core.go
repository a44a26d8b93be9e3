package sse

import (
	"net/http"

	"github.com/coregx/stream/sse/internal/fanout"
)

// hubCore is what a Hub and a Server share: the fan-out engine
// (internal/fanout), which writes their streams, and how their own
// handlers (ServeHTTP) open streams and hold them.
type hubCore struct {
	*fanout.Engine
	upgrade UpgradeOptions // of the streams its handlers open
	own     ownPolicy      // whether it takes their connections over (see owned.go)
}

// newHubCore makes the engine of a Hub or Server configured by opts,
// defaults applied; closedErr is what registering or broadcasting returns
// once it is closed.
func newHubCore(opts Options, closedErr error) *hubCore {
	cfg := fanout.Config{
		QueueSize:    opts.QueueSize,
		Policy:       fanout.Policy(opts.SlowClients),
		MaxBytes:     opts.MaxQueuedBytes,
		Logger:       opts.Logger,
		Retry:        opts.ShutdownRetry,
		RetryJitter:  durationOr(opts.ShutdownJitter, defaultShutdownJitter),
		Heartbeat:    durationOr(opts.Heartbeat, defaultHeartbeat),
		Comment:      heartbeatComment,
		WriteTimeout: durationOr(opts.WriteTimeout, defaultWriteTimeout),
		Closed:       closedErr,
		Ended:        ErrConnectionClosed,
		Gone:         errClientGone,
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = defaultQueueSize
	}
	switch {
	case cfg.MaxBytes == 0:
		cfg.MaxBytes = defaultMaxQueuedBytes
	case cfg.MaxBytes < 0:
		cfg.MaxBytes = 0
	}
	if cfg.Retry <= 0 {
		cfg.Retry = defaultShutdownRetry
	}
	if cfg.WriteTimeout <= 0 {
		// Closing waits this long for a write that has no deadline.
		cfg.WriteTimeout = defaultWriteTimeout
	}
	return &hubCore{
		Engine:  fanout.New(cfg),
		upgrade: UpgradeOptions{WriteTimeout: opts.WriteTimeout, Retry: opts.Retry, Header: opts.Header},
		own:     ownPolicyOf(&opts),
	}
}

// The streams its own handlers (ServeHTTP) open.

// open upgrades r into a stream with the engine's options and connection
// policy; ready registers it before the client learns it is live (see
// upgrade).
func (h *hubCore) open(w http.ResponseWriter, r *http.Request, ready func(*Conn) error) (*Conn, error) {
	return upgrade(r.Context(), w, r, &h.upgrade, ready, &h.own)
}

// detaches reports whether its handlers return once a stream is open
// (Options.Detach).
func (h *hubCore) detaches() bool { return h.own.detach }

// streamDone calls Options.OnStreamEnd, if set, for r.
func (h *hubCore) streamDone(r *http.Request, err error) {
	if f := h.own.onEnd; f != nil {
		f(r, err)
	}
}

// adopt takes conn's connection over, as the engine's policy says, for a
// stream registered by Hub.Register: from now on the engine writes it.
func (h *hubCore) adopt(conn *Conn) {
	conn.lockWrite()
	conn.takeOverLocked(h.own, false)
	conn.unlockWrite()
}

// served is what a hub's own handler (ServeHTTP) holds for one request.
// It is released once, by end: when the stream ended (ended by the
// handler, or by the stream itself once detached), or when none was
// opened.
type served struct {
	core     *hubCore
	r        *http.Request
	conn     *Conn
	refused  error  // why no stream was opened
	release  func() // what else the request held (a Server's topics); may be nil
	detached bool
}

func (sv *served) end() {
	if sv.conn != nil {
		sv.core.Unregister(sinkOf(sv.conn))
		sv.conn.Close()
		sv.refused = sv.conn.Err()
	}
	if sv.release != nil {
		sv.release()
	}
	sv.core.streamDone(sv.r, sv.refused)
}

// done runs end unless the stream was detached, which then runs it; the
// handler defers it.
func (sv *served) done() {
	if !sv.detached {
		sv.end()
	}
}

// hold keeps the open stream until it ends: by detaching it when the
// engine says so and it can (Options.Detach), by waiting otherwise.
func (sv *served) hold() {
	if sv.core.detaches() && sv.conn.detach(sv.end) {
		sv.detached = true
		return
	}
	waitEnd(sv.conn)
}
