package sse_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coregx/stream/sse"
	"github.com/coregx/stream/sse/ssetest"
)

func TestMemoryBrokerConformance(t *testing.T) {
	ssetest.TestBroker(t, func(t *testing.T) sse.Broker { return &sse.MemoryBroker{} })
}

func TestMemoryBrokerConformanceUnbounded(t *testing.T) {
	ssetest.TestBroker(t, func(t *testing.T) sse.Broker {
		return sse.NewMemoryBroker(sse.HistoryLimits{MaxEvents: -1, MaxBytes: -1, MaxAge: -1})
	})
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
				if _, err := b.Publish(t.Context(), "t", sse.NewEvent(d)); err != nil {
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
		b.Publish(t.Context(), "t", sse.NewEvent(fmt.Sprint(i)))
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
			m, err := b.Publish(t.Context(), "t", sse.NewEvent(d))
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
		h, _ = b.History(t.Context(), "t", first.Event.ID)
		if got := datas(h.Messages); got != "mid" || !h.Gap {
			t.Errorf("after expired ID: got %q gap %v, want \"mid\" and a gap", got, h.Gap)
		}
		time.Sleep(time.Minute)
		h, _ = b.History(t.Context(), "t", "")
		if len(h.Messages) != 0 || h.Head.Seq != 2 {
			t.Errorf("after all expired: got %d events head %+v, want none and head seq 2", len(h.Messages), h.Head)
		}
		// The newest event's ID stays a valid position after it expired.
		h, _ = b.History(t.Context(), "t", h.Head.ID)
		if h.Gap || len(h.Messages) != 0 {
			t.Errorf("History(expired head): got gap %v and %d events, want no gap and none", h.Gap, len(h.Messages))
		}
		if _, err := b.Subscribe(t.Context(), "t", first.Seq, func(sse.Message) {}); !errors.Is(err, sse.ErrGap) {
			t.Errorf("Subscribe(expired position): got %v, want ErrGap", err)
		}
	})
}
