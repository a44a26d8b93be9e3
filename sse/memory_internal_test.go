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
			m, err := b.Publish(t.Context(), topic, NewEvent(data).WithID(id), nil)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		state := func(topic string) (msgs int) {
			b.mu.Lock()
			tp := b.topics[topic]
			b.mu.Unlock()
			tp.mu.Lock()
			defer tp.mu.Unlock()
			return len(tp.retained())
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
		if n := state("idle"); n != 100 {
			t.Fatalf("after 50s: idle topic retains %d events, want 100", n)
		}

		time.Sleep(20 * time.Second)
		pub("busy", "y", "") // sweeps again: everything in "idle" is 70s old
		b.mu.Lock()
		_, kept := b.topics["idle"]
		b.mu.Unlock()
		if kept {
			t.Errorf("after 70s: idle topic with nothing retained and no subscriber still held, want it forgotten")
		}
		if m := pub("idle", "z", ""); m.Seq != 1 {
			t.Errorf("next event in the forgotten topic: seq %d, want 1 (a new topic)", m.Seq)
		}
	})
}

// TestMemoryBrokerFollowedTopicKeepsHead checks that a sweep gives back
// the memory of a followed topic's expired events but keeps its newest
// position, so that Seq numbers never start over under a subscriber.
func TestMemoryBrokerFollowedTopicKeepsHead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewMemoryBroker(HistoryLimits{MaxAge: time.Minute})
		defer b.Close()
		sub, err := b.Subscribe(t.Context(), "idle", Newest, func(Message) {})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		for range 100 {
			if _, err := b.Publish(t.Context(), "idle", NewEvent("x"), nil); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(70 * time.Second)
		if _, err := b.Publish(t.Context(), "busy", NewEvent("y"), nil); err != nil { // sweeps
			t.Fatal(err)
		}
		b.mu.Lock()
		tp := b.topics["idle"]
		b.mu.Unlock()
		tp.mu.Lock()
		n, c, head := len(tp.retained()), cap(tp.msgs), tp.head
		tp.mu.Unlock()
		if n != 0 || c != 0 || head.Seq != 100 {
			t.Errorf("after the sweep: %d events retained, capacity %d, head seq %d; want 0, 0, 100", n, c, head.Seq)
		}
		m, err := b.Publish(t.Context(), "idle", NewEvent("z"), nil)
		if err != nil || m.Seq != 101 {
			t.Errorf("next event: got seq %d, %v, want 101", m.Seq, err)
		}
	})
}

func TestMemoryBrokerSweepsAtMostEveryQuarterOfMaxAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewMemoryBroker(HistoryLimits{MaxAge: time.Minute})
		defer b.Close()
		if _, err := b.Publish(t.Context(), "idle", NewEvent("x"), nil); err != nil { // first use sweeps
			t.Fatal(err)
		}
		time.Sleep(61 * time.Second)
		if _, err := b.Publish(t.Context(), "busy", NewEvent("y"), nil); err != nil { // sweeps: "idle" expired
			t.Fatal(err)
		}
		if _, err := b.Publish(t.Context(), "idle2", NewEvent("x"), nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(61 * time.Second) // "idle2" expired, but ...
		b.swept.Store(time.Now().Add(-14 * time.Second).UnixNano())
		if _, err := b.Publish(t.Context(), "busy", NewEvent("y"), nil); err != nil { // ... the last sweep was 14s ago
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
