package sse

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/coregx/stream/sse/internal/fanout"
)

// A Server's live feed and replay: what the engine (internal/fanout)
// delivers and queues, encoded here, and the cursors of streams that
// follow several topics.

// liveFilter is f as the engine takes it: given a live event's value,
// which deliver makes a *Message.
func liveFilter(f func(*Message) bool) func(any) bool {
	if f == nil {
		return nil
	}
	return func(v any) bool { return f(v.(*Message)) }
}

// deliver hands m, a live event from a broker subscription, to the
// engine, for the clients following its topic. It is called for each
// topic in order.
func (s *Server) deliver(m Message) {
	d := &delivery{m: m}
	s.core.Deliver(fanout.Item{
		Topic: m.Topic,
		Head:  fanout.Head{Seq: m.Seq, ID: m.Event.ID},
		Value: &d.m,
		Enc:   d,
	})
}

// delivery is a live event on its way to the engine: the message its
// clients' filters are given, and its encoding (fanout.Encoder).
type delivery struct {
	m     Message
	plain []byte // the event as it is, for the groups of one topic
}

// Wire encodes the event for the clients of topics: as it is for one
// topic (once for all such groups), with a cursor of every topic's
// newest ID for several.
func (d *delivery) Wire(topics []string, id func(topic string) string) []byte {
	if len(topics) == 1 {
		if d.plain == nil {
			d.plain = d.m.Event.appendWire(make([]byte, 0, d.m.Event.wireSize()))
		}
		return d.plain
	}
	ev := d.m.Event
	ev.ID = cursorID(topics, func(i int) string { return id(topics[i]) })
	return ev.appendWire(make([]byte, 0, ev.wireSize()))
}

// resume reads the history after lastID for each topic and queues it
// for conn, registered as resuming with filter, before its live events.
func (s *Server) resume(ctx context.Context, conn *Conn, topics []string, lastID string, filter func(*Message) bool) error {
	ids, known := parseCursor(topics, lastID)
	hists := make([]History, len(topics))
	for i, t := range topics {
		h, err := s.broker.History(ctx, t, ids[i])
		if err != nil {
			conn.shutdown(fmt.Errorf("%w: reading history: %w", ErrConnectionClosed, err))
			return err
		}
		if !known[i] {
			h.Gap, h.After = true, Position{}
		}
		// A network broker feeds this node a moment after it stores:
		// the client may have seen, on another node, events this
		// node's live feed has yet to bring. Wait for them, or they
		// would reach the client twice.
		if fed, err := s.waitFed(ctx, conn, t, h.After.Seq); !fed {
			if err != nil {
				conn.shutdown(fmt.Errorf("%w: %w", ErrConnectionClosed, err))
			}
			return err
		}
		hists[i] = h
	}
	s.core.FinishResume(sinkOf(conn), func(pending []any, head func(string) fanout.Head) ([][]byte, uint64) {
		return replay(topics, ids, hists, pending, head, filter)
	})
	return nil
}

// maxFeedWait bounds how long a resuming client waits for this node's
// live feed of a topic to reach the position it asked for.
const maxFeedWait = 10 * time.Second

// waitFed waits until the live feed of topic brought the event whose
// Seq is seq. It reports false, with no error, when ctx or conn ended
// first, and false with an error when the feed stayed behind for
// maxFeedWait.
func (s *Server) waitFed(ctx context.Context, conn *Conn, topic string, seq uint64) (bool, error) {
	w := s.core.AwaitFed(topic, seq)
	if w == nil {
		return true, nil
	}
	limit := time.NewTimer(maxFeedWait)
	defer limit.Stop()
	select {
	case <-w.Fed():
		return true, nil
	case <-ctx.Done():
	case <-conn.Done():
	case <-limit.C:
		if !s.core.CancelFed(topic, w) {
			return true, nil // released as the time ran out
		}
		return false, fmt.Errorf("sse: the live feed of topic %q stayed behind the client's position for %v", topic, maxFeedWait)
	}
	s.core.CancelFed(topic, w)
	return false, nil
}

// parseCursor reads a Last-Event-ID as the position in each of the
// sorted topics. On one topic the ID is taken as it is. On several, it
// must be a cursor as cursorID writes; a topic missing from it, or any
// malformed cursor, makes the position unknown (known[i] false).
func parseCursor(topics []string, lastID string) (ids []string, known []bool) {
	ids, known = make([]string, len(topics)), make([]bool, len(topics))
	if len(topics) == 1 {
		ids[0], known[0] = lastID, true
		return ids, known
	}
	q, err := url.ParseQuery(lastID)
	if err != nil {
		return ids, known
	}
	for i, t := range topics {
		if v := q[t]; len(v) == 1 {
			ids[i], known[i] = v[0], true
		}
	}
	return ids, known
}

// replay returns the events queued for a resuming client, in chunks of
// at most fanout.MaxWrite bytes, and how many: the gap events and the
// retained events of hists (the history after ids, the positions it asked
// for, in each of topics), merged with pending, the live events that came
// while it was read, and passed through filter. head gives each topic's
// newest event the live feed brought: later ones come live. The engine
// calls it under its lock (see fanout.Engine.FinishResume).
func replay(topics, ids []string, hists []History, pending []any, head func(string) fanout.Head, filter func(*Message) bool) ([][]byte, uint64) {
	multi := len(topics) > 1
	lists := make([][]*Message, len(topics))
	cur := make([]string, len(topics)) // what the client has seen, per topic
	for i, t := range topics {
		hist, head := hists[i], head(t)
		last := hist.After.Seq
		var list []*Message
		for j := range hist.Messages {
			// Later events come live: the client is live from now on.
			if m := &hist.Messages[j]; m.Seq > last && m.Seq <= head.Seq {
				list, last = append(list, m), m.Seq
			}
		}
		for _, v := range pending {
			if m := v.(*Message); m.Topic == t && m.Seq > last {
				list, last = append(list, m), m.Seq
			}
		}
		lists[i] = list
		switch {
		case len(list) == 0:
			cur[i] = head.ID
		case !hist.Gap:
			cur[i] = ids[i]
		}
	}

	var chunks [][]byte
	var buf []byte
	add := func(ev Event) {
		if len(buf) > 0 && len(buf)+ev.wireSize() > fanout.MaxWrite {
			chunks, buf = append(chunks, buf), nil
		}
		buf = ev.appendWire(buf)
	}
	for i, t := range topics {
		if !hists[i].Gap {
			continue
		}
		data := hists[i].Oldest.ID
		if multi {
			data = cursorID([]string{t}, func(int) string { return data })
		}
		add(Event{Type: GapEventType, Data: data})
	}
	var n uint64
	for i := range topics {
		for _, m := range lists[i] {
			cur[i] = m.Event.ID
			if filter != nil && !filter(m) {
				continue
			}
			ev := m.Event
			if multi {
				ev.ID = cursorID(topics, func(i int) string { return cur[i] })
			}
			add(ev)
			n++
		}
	}
	if len(buf) > 0 {
		chunks = append(chunks, buf)
	}
	return chunks, n
}

// cursorID writes the position in each of the sorted topics, id(i) being
// the ID in topics[i], as a cursor: "a=1&b=2".
func cursorID(topics []string, id func(i int) string) string {
	var b strings.Builder
	for i, t := range topics {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(t))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(id(i)))
	}
	return b.String()
}
