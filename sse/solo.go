package sse

import (
	"sync"
	"time"
)

// solo does for the Conns outside any hub what a hub does for its
// clients, with the same mechanisms: it sends the heartbeats of the Conns
// that asked for them (UpgradeOptions.Heartbeat) from one beatSchedule,
// and it notices that the client of a Conn it watches went away with one
// goneWatch. It watches a Conn once someone waits for it to end (Done) or
// its connection was taken over (nothing else would end it when its
// handler returns), and only while no hub does.
//
// A Conn is in solo only while it is open: its end takes it out (see
// Conn.stop), and an idle process holds no timer and no goroutine for it.
// A heartbeat is written by a goroutine of its own, since a write may
// block up to its write timeout and must not hold up the others; due
// heartbeats are rare, so that costs a goroutine only while one is
// written.
//
// solo.mu is taken last (see the lock order at hubCore): under it, solo
// reads a Conn's atomics and request context only, and ends or writes a
// Conn only after releasing it.
var solo soloStreams

type soloStreams struct {
	mu    sync.Mutex
	beats beatSchedule[*soloBeat]
	conns map[*Conn]struct{} // watched for their clients leaving; nil when none is
	gone  goneWatch
}

// soloBeat is the heartbeat of a Conn that sends its own.
type soloBeat struct {
	c     *Conn
	every int64 // nanoseconds
	at    int32 // index in solo.beats; -1: not in it
	off   bool  // the stream ended: it does not go back in
}

func (b *soloBeat) beatIndex() *int32 { return &b.at }

// startBeat schedules c's heartbeats, one after each interval of every
// without a write, and returns what stopBeat takes.
func (s *soloStreams) startBeat(c *Conn, every time.Duration) *soloBeat {
	b := &soloBeat{c: c, every: int64(every), at: -1}
	s.mu.Lock()
	s.beats.addLocked(b, time.Now().UnixNano()+b.every, s.heartbeat)
	s.mu.Unlock()
	return b
}

// stopBeat ends b's heartbeats, for good.
func (s *soloStreams) stopBeat(b *soloBeat) {
	s.mu.Lock()
	b.off = true
	s.beats.dropLocked(b)
	s.mu.Unlock()
}

// heartbeat runs on the heartbeat timer. A due Conn that was silent for a
// whole interval leaves the schedule while its comment is written (see
// beat), the others go back in at their next due time.
func (s *soloStreams) heartbeat() {
	s.mu.Lock()
	s.beats.firedLocked()
	now := time.Now().UnixNano()
	for {
		b, ok := s.beats.popDueLocked(now)
		if !ok {
			break
		}
		if next := b.c.lastWrite() + b.every; next > now {
			s.beats.putLocked(b, next)
			continue
		}
		go s.beat(b)
	}
	s.beats.armLocked(s.heartbeat)
	s.mu.Unlock()
}

// beat writes b's heartbeat and puts b back in, one interval later,
// unless the stream ended meanwhile.
func (s *soloStreams) beat(b *soloBeat) {
	err := b.c.write(heartbeatComment)
	s.mu.Lock()
	if err == nil && !b.off {
		s.beats.addLocked(b, time.Now().UnixNano()+b.every, s.heartbeat)
	}
	s.mu.Unlock()
}

// watch has c ended, at most pollEvery after its request's context ends.
func (s *soloStreams) watch(c *Conn) {
	s.mu.Lock()
	if s.conns == nil {
		s.conns = make(map[*Conn]struct{})
	}
	s.conns[c] = struct{}{}
	s.gone.armLocked(s.poll)
	s.mu.Unlock()
}

// unwatch undoes watch; the timer stops with the last Conn.
func (s *soloStreams) unwatch(c *Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if len(s.conns) == 0 {
		s.conns = nil // a map does not shrink
		s.gone.stopLocked()
	}
	s.mu.Unlock()
}

// poll runs on the poll timer: it ends the watched Conns whose request's
// context ended (their end unwatches them), and checks again later while
// others are left.
func (s *soloStreams) poll() {
	s.mu.Lock()
	s.gone.firedLocked()
	var gone []*Conn
	for c := range s.conns {
		if c.gone() {
			gone = append(gone, c)
		}
	}
	if len(s.conns) > len(gone) {
		s.gone.armLocked(s.poll)
	}
	s.mu.Unlock()
	for _, c := range gone {
		c.shutdown(errClientGone)
	}
}
