package fanout

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Close and Shutdown.

// queueExtraLocked appends entries that are not live events (replay,
// retry hints) to c's queue, whatever its length, and reports whether c
// must be woken; c.mu must be held.
func (h *Engine) queueExtraLocked(c *client, bs ...[]byte) bool {
	if c.parked.Load() {
		// Its events first (see park.go).
		h.unparkLocked(c, false)
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
func (h *Engine) retryHint() []byte {
	d := h.cfg.Retry
	if h.cfg.RetryJitter > 0 {
		d += rand.N(h.cfg.RetryJitter)
	}
	return fmt.Appendf(nil, "retry: %d\n\n", d.Milliseconds())
}

// closeStall is how long Close waits for a write to finish while streams
// are left to drain: the writers left are taken to be blocked on clients
// that do not read, and their streams are ended at once.
const closeStall = 100 * time.Millisecond

// Shutdown drains and ends every stream, each after a retry hint; see
// the sse package's Hub.Shutdown.
func (h *Engine) Shutdown(ctx context.Context) error {
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

// Close writes what was broadcast before it, then ends every stream; see
// the sse package's Hub.Close. It does not wait for writes that make no
// progress.
func (h *Engine) Close() error {
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
func (h *Engine) drain(hint bool) <-chan struct{} {
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
		h.Logf(slog.LevelInfo, "sse: shutting down", "clients", n)
	}
	drained := h.drained
	h.mu.Unlock()
	for _, c := range idle {
		c.conn.End(h.shuttingDown)
	}
	return drained
}

// closeNow ends every stream left at once and waits for the writers
// and for Run.
func (h *Engine) closeNow() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.dropping.Wait()
		h.pool.wait(h.cfg.WriteTimeout)
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
		c.conn.Unwatch(c)
		h.shutdownDisconnects.Add(1)
		c.conn.Drop(fmt.Errorf("%w: %w", h.cfg.Ended, h.cfg.Closed))
	}
	h.dropping.Wait()
	if n := h.pool.wait(h.cfg.WriteTimeout); n > 0 {
		h.abandoned.Add(uint64(n))
		h.Logf(slog.LevelWarn, "sse: close abandoned writes that could not be cut short", "writes", n)
	}
	h.runs.Wait()
	return nil
}

// closeLocked marks the engine closed and lets go of every client, which it
// returns for closeNow to end; h.mu must be held. Every client is
// unparked and out of its group's list when it returns, under h.mu: a
// writer (drain) or a stream's end (removeLocked) that takes h.mu
// afterwards, while closeNow is still ending the others, must find its
// client neither parked nor listed.
func (h *Engine) closeLocked() []*client {
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
	h.beats.ClearLocked()
	h.gone.StopLocked()
	return list
}

// warnNoDeadline logs, once per hub, that a stream's writes cannot be
// given a deadline: a client that stops reading then blocks its write
// until the client goes away, and Close abandons that write.
func (h *Engine) warnNoDeadline(conn Sink) {
	if !conn.Deadlineless() || !h.warnedNoDeadline.CompareAndSwap(false, true) {
		return
	}
	h.Logf(slog.LevelWarn, "sse: the ResponseWriter does not support write deadlines (a wrapper without Unwrap?): a client that stops reading can block a write until Close gives up on it")
}
