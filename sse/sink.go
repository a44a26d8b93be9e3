package sse

import (
	"time"

	"github.com/coregx/stream/sse/internal/fanout"
)

// connSink is a Conn as the fan-out engine sees it (fanout.Sink): the
// engine's methods live on this type, so that they stay out of Conn's
// API. A Conn and its connSink are the same record: (*connSink)(c) costs
// nothing, and is the same key in the engine's maps every time.
type connSink Conn

// sinkOf returns c as the engine sees it.
func sinkOf(c *Conn) fanout.Sink { return (*connSink)(c) }

func (s *connSink) conn() *Conn { return (*Conn)(s) }

func (s *connSink) LockWrite()   { s.conn().lockWrite() }
func (s *connSink) UnlockWrite() { s.conn().unlockWrite() }

func (s *connSink) WriteAt(b fanout.Batch, bounded bool, start int64, stall func()) error {
	c := s.conn()
	return c.writeOut(b, bounded && c.deadlines, start, stall)
}

func (s *connSink) Continue() error { return s.conn().continueOut() }

func (s *connSink) Narrow() bool {
	o := s.own.Load()
	return o != nil && o.narrow.Load()
}

// Vectored: a connection the engine took over, plain TCP, is written
// with writev. The write lock must be held, so that it is not taken over
// meanwhile.
func (s *connSink) Vectored() bool {
	o := s.own.Load()
	return o != nil && o.tcp != nil
}

func (s *connSink) Bound(start int64) bool {
	c := s.conn()
	if !c.deadlines {
		return false
	}
	// Under c.mu, so that a write the stream's end cut short (see stop)
	// is not given its deadline back.
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cause == nil {
		_ = c.setWriteDeadline(time.Unix(0, start).Add(c.timeout))
	}
	return true
}

func (s *connSink) Unbound() error {
	c := s.conn()
	if err := c.clearDeadline(); err != nil {
		return c.fail(err)
	}
	return nil
}

func (s *connSink) Deadlineless() bool          { return !s.deadlines && s.timeout > 0 }
func (s *connSink) LastWrite() int64            { return s.last.Load() }
func (s *connSink) SendsHeartbeats() bool       { return s.beats }
func (s *connSink) Gone() bool                  { return s.conn().requestEnded() }
func (s *connSink) End(cause error)             { s.conn().shutdown(cause) }
func (s *connSink) Drop(cause error)            { s.conn().stop(cause, true) }
func (s *connSink) Err() error                  { return s.conn().Err() }
func (s *connSink) Watch(w fanout.Watcher) bool { return s.conn().watch(w) }
func (s *connSink) Unwatch(w fanout.Watcher)    { s.conn().unwatch(w) }
