package sse

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestMemoryBrokerSweepsIdleTopics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewMemoryBroker(HistoryLimits{MaxAge: time.Minute})
		defer b.Close()
		pub := func(topic, data, id string) Message {
			t.Helper()
			m, err := b.Publish(t.Context(), topic, NewEvent(data).WithID(id))
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		state := func(topic string) (msgs int, own int, capacity int, head Position) {
			b.mu.Lock()
			tp := b.topics[topic]
			b.mu.Unlock()
			tp.mu.Lock()
			defer tp.mu.Unlock()
			return len(tp.retained()), len(tp.own), cap(tp.msgs), tp.head
		}

		for i := range 100 {
			id := ""
			if i%2 == 0 {
				id = "own-" + string(rune('a'+i%26))
			}
			pub("idle", "x", id)
		}
		time.Sleep(50 * time.Second)
		pub("busy", "y", "") // sweeps: nothing in "idle" is a minute old yet
		if n, _, _, _ := state("idle"); n != 100 {
			t.Fatalf("after 50s: idle topic retains %d events, want 100", n)
		}

		time.Sleep(20 * time.Second)
		pub("busy", "y", "") // sweeps again: everything in "idle" is 70s old
		n, own, c, head := state("idle")
		if n != 0 || own != 0 || c != 0 {
			t.Errorf("after 70s: idle topic retains %d events, %d publisher IDs, capacity %d; want all 0", n, own, c)
		}
		if head.Seq != 100 {
			t.Errorf("after the sweep: head seq %d, want 100", head.Seq)
		}
		if m := pub("idle", "z", ""); m.Seq != 101 {
			t.Errorf("next event in the swept topic: seq %d, want 101 (seqs never start over)", m.Seq)
		}
	})
}

func TestMemoryBrokerSweepsAtMostEveryQuarterOfMaxAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewMemoryBroker(HistoryLimits{MaxAge: time.Minute})
		defer b.Close()
		if _, err := b.Publish(t.Context(), "idle", NewEvent("x")); err != nil { // first use sweeps
			t.Fatal(err)
		}
		time.Sleep(61 * time.Second)
		if _, err := b.Publish(t.Context(), "busy", NewEvent("y")); err != nil { // sweeps: "idle" expired
			t.Fatal(err)
		}
		if _, err := b.Publish(t.Context(), "idle2", NewEvent("x")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(61 * time.Second) // "idle2" expired, but ...
		b.swept.Store(time.Now().Add(-14 * time.Second).UnixNano())
		if _, err := b.Publish(t.Context(), "busy", NewEvent("y")); err != nil { // ... the last sweep was 14s ago
			t.Fatal(err)
		}
		b.mu.Lock()
		tp := b.topics["idle2"]
		b.mu.Unlock()
		tp.mu.Lock()
		n := len(tp.retained())
		tp.mu.Unlock()
		if n != 1 {
			t.Errorf("14s after a sweep (MaxAge 1m): idle2 retains %d events, want 1 (no sweep yet)", n)
		}
	})
}
