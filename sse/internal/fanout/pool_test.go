package fanout

import (
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
)

// TestPoolServesNarrowLast checks the order in which the writers take
// waiting clients: those with room first, in the order they came, and a
// narrow one every narrowTurn turns while others wait, then the narrow
// ones in order.
func TestPoolServesNarrowLast(t *testing.T) {
	p := &writerPool{} // limit 0: no worker starts, next is called here
	var cs []*client
	var names []string
	name := map[*client]string{}
	for i := range 12 {
		c := &client{conn: &testSink{narrow: i%3 == 0}}
		n := fmt.Sprintf("r%d", i)
		if i%3 == 0 {
			n = fmt.Sprintf("n%d", i)
		}
		name[c] = n
		cs = append(cs, c)
	}
	p.push(cs[:6])
	for _, c := range cs[6:] {
		p.pushOne(c)
	}
	for c := p.next(false); c != nil; c = p.next(true) {
		names = append(names, name[c])
	}
	// r: 1 2 4 5 7 8 10 11; n: 0 3 6 9.
	want := "r1 r2 r4 r5 r7 r8 r10 n0 r11 n3 n6 n9"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("order: got %s, want %s", got, want)
	}
	if p.ready.len() != 0 || p.narrow.len() != 0 || p.busy != 0 {
		t.Errorf("after all were taken: ready %d, narrow %d, busy %d; want 0, 0, 0", p.ready.len(), p.narrow.len(), p.busy)
	}
}

// TestClientQueueStaysSmall checks that a queue that never empties, one
// in, one out, keeps its order and does not grow with every push.
func TestClientQueueStaysSmall(t *testing.T) {
	var q clientQueue
	cs := make([]*client, 10)
	for i := range cs {
		cs[i] = &client{index: int32(i)}
		q.items = append(q.items, cs[i])
	}
	for i := range 100000 {
		c := cs[i%len(cs)]
		q.items = append(q.items, c)
		if got := q.pop(); got != c {
			t.Fatalf("pop %d: got client %d, want %d", i, got.index, c.index)
		}
	}
	if q.len() != len(cs) || cap(q.items) > 256 {
		t.Errorf("after 100 000 pushes and pops: %d queued, capacity %d; want %d, at most 256", q.len(), cap(q.items), len(cs))
	}
}

// TestVectoredBatches checks what a vectored stream is handed: the
// events as they are queued, in batches of at most MaxWrite bytes (or one
// event, when larger) and maxVecEvents events, each with an empty entry
// before and after for the stream's framing, every event once, in order.
func TestVectoredBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestEngine(t, testConfig())
		s := newTestSink()
		s.vectored = true
		registerAll(t, h, s)
		// Queued while a write is in progress: one drain takes them all.
		s.LockWrite()
		var want strings.Builder
		sizes := []int{10, 3000, MaxWrite + 5, 20}
		for i := range 1500 {
			n := sizes[i%len(sizes)]
			if i >= 100 {
				n = 1 // many small events: the maxVecEvents bound
			}
			msg := strings.Repeat(string(rune('a'+i%26)), n)
			if err := h.Broadcast([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			want.WriteString(msg)
		}
		s.UnlockWrite()
		synctest.Wait()
		if got := s.written(); got != want.String() {
			t.Fatalf("written: %d bytes, want %d (every event once, in order)", len(got), want.Len())
		}
		h.Unregister(s)
		s.mu.Lock()
		defer s.mu.Unlock()
		many := 0 // batches of maxVecEvents events
		for i, b := range s.batches {
			if b[0] != '|' || b[len(b)-1] != '|' {
				t.Errorf("batch %d: no empty framing entries around the events", i)
			}
			size, n := len(b)-2, s.entries[i]
			if size != s.sizes[i] {
				t.Errorf("batch %d: Size %d, want its %d bytes", i, s.sizes[i], size)
			}
			if n > maxVecEvents || size > MaxWrite && n > 1 {
				t.Errorf("batch %d: %d events, %d bytes; want at most %d events and %d bytes, or one event", i, n, size, maxVecEvents, MaxWrite)
			}
			if n == maxVecEvents {
				many++
			}
		}
		if many == 0 {
			t.Errorf("no batch of %d events: the bound was not reached", maxVecEvents)
		}
	})
}
