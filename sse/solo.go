package sse

import (
	"net/http"
	"sync"
	"time"

	"github.com/coregx/stream/sse/internal/fanout"
)

// solo does for the Conns outside any hub what a hub does for its
// clients, with the same mechanisms: it sends the heartbeats of the
// Conns that asked for them (UpgradeOptions.Heartbeat) from a
// fanout.Schedule, and notices that the client of a Conn it watches went
// away with a fanout.Poll. It watches a Conn once someone waits for it to end (Done) or
// its connection was taken over (nothing else would end it when its
// handler returns), and only while no hub does.
//
// The Conns of one http.Server share a group, with one timer of each
// kind: checking ten thousand request contexts every fanout.PollEvery
// costs a fraction of a percent of a core, where a timer of its own per Conn
// would cost a fifth of one. A Conn whose request names no server
// (http.ServerContextKey: another server, a test's request) is a group of
// its own. Groups are not shared more widely because a group's timers
// and the goroutines they start must stay with their streams: in a
// testing/synctest bubble, a timer belongs to the bubble that made it,
// and a stream of one bubble ended from another (its Done channel closed
// there) is a fatal error; the streams of one server are always in the
// same bubble.
//
// A Conn is in solo only while it is open: its end takes it out (see
// Conn.stop), and a group that holds nothing is dropped with its timers,
// so that an idle process holds none. A heartbeat is written by a
// goroutine of its own, since a write may block up to its write timeout
// and must not hold up the others of its group; due heartbeats are rare,
// so that costs a goroutine only while one is written.
//
// solo.mu guards every group and is taken last but one (see the lock
// order at fanout.Engine): under it, solo reads a Conn's atomics and request context
// only, and ends or writes a Conn only after releasing it.
var solo soloSet

type soloSet struct {
	mu     sync.Mutex
	groups map[any]*soloGroup // by key (see soloKey); nil when none
}

// soloGroup is the lone Conns of one server (or one Conn).
type soloGroup struct {
	key     any
	beats   fanout.Schedule[*soloBeat]
	writing int                // heartbeats being written
	conns   map[*Conn]struct{} // watched for their clients leaving; nil when none is
	gone    fanout.Poll
}

// soloBeat is the heartbeat of a Conn that sends its own.
type soloBeat struct {
	g     *soloGroup
	c     *Conn
	every int64 // nanoseconds
	at    int32 // index in g.beats; -1: not in it
	off   bool  // the stream ended: it does not go back in
}

func (b *soloBeat) BeatIndex() *int32 { return &b.at }

// soloKey names c's group: the server of its request, or c itself.
func soloKey(c *Conn) any {
	if srv, _ := c.rctx.Value(http.ServerContextKey).(*http.Server); srv != nil {
		return srv
	}
	return c
}

// groupLocked returns c's group, making it.
func (s *soloSet) groupLocked(c *Conn) *soloGroup {
	k := soloKey(c)
	g := s.groups[k]
	if g == nil {
		g = &soloGroup{key: k}
		if s.groups == nil {
			s.groups = make(map[any]*soloGroup)
		}
		s.groups[k] = g
	}
	return g
}

// releaseLocked drops g, with its timers, once it holds nothing.
func (s *soloSet) releaseLocked(g *soloGroup) {
	if len(g.conns) > 0 || g.beats.Len() > 0 || g.writing > 0 {
		return
	}
	g.beats.StopLocked()
	g.gone.StopLocked()
	if s.groups[g.key] == g {
		delete(s.groups, g.key)
	}
	if len(s.groups) == 0 {
		s.groups = nil // a map does not shrink
	}
}

// startBeat schedules c's heartbeats, one after each interval of every
// without a write, and returns what stopBeat takes.
func (s *soloSet) startBeat(c *Conn, every time.Duration) *soloBeat {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupLocked(c)
	b := &soloBeat{g: g, c: c, every: int64(every), at: -1}
	g.beats.AddLocked(b, time.Now().UnixNano()+b.every, g.heartbeat)
	return b
}

// stopBeat ends b's heartbeats, for good.
func (s *soloSet) stopBeat(b *soloBeat) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b.off = true
	b.g.beats.DropLocked(b)
	s.releaseLocked(b.g)
}

// heartbeat runs on g's heartbeat timer. A due Conn that was silent for a
// whole interval leaves the schedule while its comment is written (see
// beat), the others go back in at their next due time.
func (g *soloGroup) heartbeat() {
	solo.mu.Lock()
	defer solo.mu.Unlock()
	g.beats.FiredLocked()
	now := time.Now().UnixNano()
	for {
		b, ok := g.beats.PopDueLocked(now)
		if !ok {
			break
		}
		if next := b.c.last.Load() + b.every; next > now {
			g.beats.PutLocked(b, next)
			continue
		}
		g.writing++
		go g.beat(b)
	}
	g.beats.ArmLocked(g.heartbeat)
}

// beat writes b's heartbeat and puts b back in, one interval later,
// unless the stream ended meanwhile.
func (g *soloGroup) beat(b *soloBeat) {
	err := b.c.write(heartbeatComment)
	solo.mu.Lock()
	defer solo.mu.Unlock()
	g.writing--
	if err == nil && !b.off {
		g.beats.AddLocked(b, time.Now().UnixNano()+b.every, g.heartbeat)
	}
	solo.releaseLocked(g)
}

// watch has c ended, at most fanout.PollEvery after its request's context ends.
func (s *soloSet) watch(c *Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupLocked(c)
	if g.conns == nil {
		g.conns = make(map[*Conn]struct{})
	}
	g.conns[c] = struct{}{}
	g.gone.ArmLocked(g.poll)
}

// unwatch undoes watch; the poll stops with the group's last Conn.
func (s *soloSet) unwatch(c *Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[soloKey(c)]
	if g == nil {
		return
	}
	delete(g.conns, c)
	if len(g.conns) == 0 {
		g.conns = nil
		g.gone.StopLocked()
	}
	s.releaseLocked(g)
}

// poll runs on g's poll timer: it ends the watched Conns whose request's
// context ended (their end unwatches them), and checks again later while
// others are left.
func (g *soloGroup) poll() {
	solo.mu.Lock()
	g.gone.FiredLocked()
	var gone []*Conn
	for c := range g.conns {
		if c.requestEnded() {
			gone = append(gone, c)
		}
	}
	if len(g.conns) > len(gone) {
		g.gone.ArmLocked(g.poll)
	}
	solo.mu.Unlock()
	for _, c := range gone {
		c.shutdown(errClientGone)
	}
}
