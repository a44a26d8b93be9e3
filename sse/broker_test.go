package sse_test

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coregx/stream/sse"
	"github.com/coregx/stream/sse/ssetest"
)

func TestMemoryBrokerConformance(t *testing.T) {
	ssetest.TestBroker(t, func(t *testing.T, l sse.HistoryLimits) sse.Broker { return sse.NewMemoryBroker(l) })
}

// datas lists the data of messages.
func datas(ms []sse.Message) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Event.Data)
	}
	return strings.Join(s, ",")
}

func TestMemoryBrokerLimits(t *testing.T) {
	for _, tc := range []struct {
		name    string
		limits  sse.HistoryLimits
		publish []string
		want    string
		gap     bool
	}{
		{"count", sse.HistoryLimits{MaxEvents: 3}, []string{"a", "b", "c", "d", "e"}, "c,d,e", true},
		{"bytes", sse.HistoryLimits{MaxBytes: 7}, []string{"aaa", "bbb", "ccc"}, "ccc", true},
		{"bytes fit", sse.HistoryLimits{MaxBytes: 12}, []string{"aa", "bb", "cc"}, "aa,bb,cc", false},
		{"unbounded count", sse.HistoryLimits{MaxEvents: -1}, []string{"a", "b", "c", "d"}, "a,b,c,d", false},
		{"default", sse.HistoryLimits{}, []string{"x", "y"}, "x,y", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := sse.NewMemoryBroker(tc.limits)
			defer b.Close()
			for _, d := range tc.publish {
				if _, err := b.Publish(t.Context(), "t", sse.NewEvent(d), nil); err != nil {
					t.Fatal(err)
				}
			}
			h, err := b.History(t.Context(), "t", "")
			if err != nil {
				t.Fatal(err)
			}
			if got := datas(h.Messages); got != tc.want || h.Gap != tc.gap {
				t.Errorf("History: got %q gap %v, want %q gap %v", got, h.Gap, tc.want, tc.gap)
			}
		})
	}
}

func TestMemoryBrokerDefaultCount(t *testing.T) {
	b := &sse.MemoryBroker{}
	defer b.Close()
	for i := range 1005 {
		b.Publish(t.Context(), "t", sse.NewEvent(fmt.Sprint(i)), nil)
	}
	h, _ := b.History(t.Context(), "t", "")
	if got, want := len(h.Messages), sse.DefaultHistoryEvents; got != want || h.Messages[0].Event.Data != "5" {
		t.Errorf("History: got %d events from %q, want %d from \"5\"", got, h.Messages[0].Event.Data, want)
	}
}

func TestMemoryBrokerAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := sse.NewMemoryBroker(sse.HistoryLimits{MaxAge: time.Minute})
		defer b.Close()
		pub := func(d string) sse.Message {
			m, err := b.Publish(t.Context(), "t", sse.NewEvent(d), nil)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		first := pub("old")
		time.Sleep(40 * time.Second)
		pub("mid")
		time.Sleep(30 * time.Second) // "old" is now 70s old
		h, _ := b.History(t.Context(), "t", "")
		if got := datas(h.Messages); got != "mid" || !h.Gap {
			t.Errorf("after 70s: got %q gap %v, want \"mid\" and a gap", got, h.Gap)
		}
		// The newest pruned event is a valid position: its reader
		// missed nothing.
		h, _ = b.History(t.Context(), "t", first.Event.ID)
		if got := datas(h.Messages); got != "mid" || h.Gap {
			t.Errorf("after the newest expired ID: got %q gap %v, want \"mid\" and no gap", got, h.Gap)
		}
		time.Sleep(time.Minute)
		// Nobody follows the topic and it retains nothing: it is
		// forgotten, its IDs are gaps and it starts anew.
		h, _ = b.History(t.Context(), "t", "")
		if len(h.Messages) != 0 || h.Gap || h.Head != (sse.Position{}) {
			t.Errorf("after all expired: got %+v, want nothing at all", h)
		}
		h, _ = b.History(t.Context(), "t", "2")
		if !h.Gap || len(h.Messages) != 0 || h.Head != (sse.Position{}) {
			t.Errorf("History(expired head of a forgotten topic): got %+v, want a gap and nothing else", h)
		}
		if m := pub("anew"); m.Seq != 1 {
			t.Errorf("first event of the forgotten topic: got seq %d, want 1", m.Seq)
		}
	})
}

// TestMemoryBrokerExpiredWhileFollowed checks that a followed topic whose
// events all expired keeps its newest position: a client that saw it
// resumes without a gap, and Seq numbers never start over.
func TestMemoryBrokerExpiredWhileFollowed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := sse.NewMemoryBroker(sse.HistoryLimits{MaxAge: time.Minute})
		defer b.Close()
		sub, err := b.Subscribe(t.Context(), "t", sse.Newest, func(sse.Message) {})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		last, err := b.Publish(t.Context(), "t", sse.NewEvent("x"), nil)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Minute)
		h, _ := b.History(t.Context(), "t", last.Event.ID)
		if h.Gap || len(h.Messages) != 0 || h.Head != last.Position() || h.After != last.Position() {
			t.Errorf("History(expired head): got %+v, want no gap, head and after %+v", h, last.Position())
		}
		if m, _ := b.Publish(t.Context(), "t", sse.NewEvent("y"), nil); m.Seq != 2 {
			t.Errorf("next event: got seq %d, want 2", m.Seq)
		}
	})
}

func TestMemoryBrokerEventTooLarge(t *testing.T) {
	b := sse.NewMemoryBroker(sse.HistoryLimits{MaxBytes: 100})
	defer b.Close()
	for _, tc := range []struct {
		name string
		ev   *sse.Event
		meta *sse.Meta
		want error
	}{
		{"fits", sse.NewEvent(strings.Repeat("x", 99)), nil, nil}, // ID "1"
		{"data", sse.NewEvent(strings.Repeat("x", 100)), nil, sse.ErrEventTooLarge},
		{"own ID fits", &sse.Event{ID: "i", Data: strings.Repeat("x", 99)}, nil, nil},
		{"own ID", &sse.Event{ID: "ii", Data: strings.Repeat("x", 99)}, nil, sse.ErrEventTooLarge},
		{"meta", sse.NewEvent("x"), &sse.Meta{Topics: []string{strings.Repeat("t", 100)}}, sse.ErrEventTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.Publish(t.Context(), "t", tc.ev, tc.meta)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("Publish: got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestMemoryBrokerCluster(t *testing.T) {
	b := sse.NewMemoryBroker(sse.HistoryLimits{MaxEvents: -1, MaxBytes: -1, MaxAge: -1})
	t.Cleanup(func() { b.Close() })
	ssetest.TestCluster(t, func(t *testing.T) sse.Broker { return b }, nil)
}

// BenchmarkMemoryBrokerCluster is ssetest.BenchmarkCluster on one
// MemoryBroker shared by three nodes: the baseline of the network
// brokers' figures.
func BenchmarkMemoryBrokerCluster(b *testing.B) {
	mb := sse.NewMemoryBroker(sse.HistoryLimits{})
	b.Cleanup(func() { mb.Close() })
	ssetest.BenchmarkCluster(b, func(testing.TB) sse.Broker { return mb }, *benchClients, *benchRate)
}

var (
	benchClients = flag.Int("cluster.clients", 100, "BenchmarkCluster: clients per node")
	benchRate    = flag.Int("cluster.rate", 1000, "BenchmarkCluster: events published per second")
)
