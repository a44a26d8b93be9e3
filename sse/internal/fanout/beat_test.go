package fanout

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// checkBeats fails unless h is a min-heap whose clients know their index.
func checkBeats(t *testing.T, h beatHeap[*client]) {
	t.Helper()
	for i, b := range h {
		if int(b.x.beatAt) != i {
			t.Fatalf("entry %d: client's beatAt = %d, want %d", i, b.x.beatAt, i)
		}
		if i > 0 && h[(i-1)/2].due > b.due {
			t.Fatalf("entry %d (due %d) under its parent (due %d)", i, b.due, h[(i-1)/2].due)
		}
	}
}

func TestBeatsHeapOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h beatHeap[*client]
	var want []int64
	for range 1000 {
		due := r.Int64N(500) // with repeats
		h.push(beat[*client]{due: due, x: &client{}})
		want = append(want, due)
		if r.IntN(3) == 0 { // interleave pops
			slices.Sort(want)
			if got := h.pop().due; got != want[0] {
				t.Fatalf("pop = %d, want the smallest, %d", got, want[0])
			}
			want = want[1:]
		}
	}
	checkBeats(t, h)
	slices.Sort(want)
	for _, w := range want {
		if got := h.pop().due; got != w {
			t.Fatalf("pop = %d, want %d", got, w)
		}
	}
	if len(h) != 0 {
		t.Fatalf("%d entries left", len(h))
	}
}

// TestBeatsRemove removes entries from anywhere in the heap, as closing
// streams do, and checks the heap and what is left.
func TestBeatsRemove(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var h beatHeap[*client]
	var clients []*client
	for range 2000 {
		c := &client{}
		h.push(beat[*client]{due: r.Int64N(1000), x: c})
		clients = append(clients, c)
	}
	r.Shuffle(len(clients), func(i, j int) { clients[i], clients[j] = clients[j], clients[i] })
	kept := map[*client]bool{}
	for i, c := range clients {
		if i%4 == 0 {
			kept[c] = true
			continue
		}
		h.remove(int(c.beatAt))
		if c.beatAt != -1 {
			t.Fatalf("removed client: beatAt = %d, want -1", c.beatAt)
		}
	}
	checkBeats(t, h)
	if len(h) != len(kept) {
		t.Fatalf("%d entries left, want %d", len(h), len(kept))
	}
	for _, b := range h {
		if !kept[b.x] {
			t.Fatal("a removed client is still in the heap")
		}
	}
}
