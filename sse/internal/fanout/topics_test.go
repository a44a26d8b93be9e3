package fanout

import (
	"fmt"
	"strings"
	"testing"
)

// TestFedWaitersBySeq checks that each delivery releases exactly the
// waiters on its topic whose position it reaches, whatever the order
// they came in, and that a canceled waiter is never released.
func TestFedWaitersBySeq(t *testing.T) {
	h := newTestEngine(t, testConfig())
	h.SetLive("t", Head{Seq: 1})
	if w := h.AwaitFed("t", 1); w != nil {
		t.Fatal("AwaitFed(1) with the feed at 1: got a waiter, want nil")
	}
	seqs := []uint64{4, 2, 3, 3, 6, 2}
	ws := make([]*FedWaiter, len(seqs))
	for i, seq := range seqs {
		ws[i] = h.AwaitFed("t", seq)
	}
	other := h.AwaitFed("u", 2)
	if !h.CancelFed("t", ws[3]) {
		t.Fatal("CancelFed of a waiting waiter: got false, want true")
	}
	released := func() string {
		var got []string
		for i, w := range ws {
			select {
			case <-w.fed:
				got = append(got, fmt.Sprint(i))
			default:
			}
		}
		return strings.Join(got, " ")
	}
	for _, step := range []struct {
		seq  uint64
		want string // the indexes of ws released so far
	}{
		{2, "1 5"},
		{3, "1 2 5"},
		{5, "0 1 2 5"},
	} {
		h.Deliver(Item{Topic: "t", Head: Head{Seq: step.seq, ID: fmt.Sprint(step.seq)}, Enc: wire("data: x\n\n")})
		if got := released(); got != step.want {
			t.Errorf("feed at %d: got waiters %q released, want %q", step.seq, got, step.want)
		}
	}
	if n := h.Inspect().FedWaiters; n != 2 {
		t.Errorf("got %d waiting, want 2 (6 on t, 2 on u)", n)
	}
	if h.CancelFed("t", ws[0]) {
		t.Error("CancelFed of a released waiter: got true, want false")
	}
	if !h.CancelFed("t", ws[4]) || !h.CancelFed("u", other) {
		t.Error("CancelFed of the waiting ones: got false, want true")
	}
	if n, m := h.Inspect().FedWaiters, len(h.fedWaits); n != 0 || m != 0 {
		t.Errorf("got %d waiting on %d topics, want none", n, m)
	}
}
