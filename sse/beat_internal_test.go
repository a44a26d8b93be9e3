package sse

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestBeatsHeapOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h beats
	var want []int64
	for range 1000 {
		due := r.Int64N(500) // with repeats
		h.push(beat{due: due})
		want = append(want, due)
		if r.IntN(3) == 0 { // interleave pops
			slices.Sort(want)
			if got := h.pop().due; got != want[0] {
				t.Fatalf("pop = %d, want the smallest, %d", got, want[0])
			}
			want = want[1:]
		}
	}
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
