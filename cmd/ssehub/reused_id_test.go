package main

import "testing"

// TestSpecReusedID: "If more than one update in the hub's history shares
// the same ID [...], a Last-Event-ID bearing that value MUST resolve to
// the earliest such update in the hub's history. The hub MUST then send
// all updates published after that one, including any later update
// carrying the same, reused ID." (draft-08, Reconciliation), on every
// broker.
func TestSpecReusedID(t *testing.T) {
	for _, c := range []struct {
		name   string
		broker func(*testing.T) string
	}{
		{"Memory", func(*testing.T) string { return "memory" }},
		{"Redis", redisBroker},
		{"NATS", natsBroker},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := startHub(t, nil, "-anonymous", "-broker", c.broker(t))
			tp := "https://example.com/reused"
			for _, u := range [][2]string{{"a", "1"}, {"x", "2"}, {"b", "3"}, {"x", "4"}, {"c", "5"}} {
				if id := h.mustPublish(t, form("topic", tp, "id", u[0], "data", u[1])); id != u[0] {
					t.Fatalf("publish with id %q: got id %q", u[0], id)
				}
			}
			s := h.subscribe(t, "match="+tp+"&last_event_id=x", nil)
			if got := s.res.Header.Get("Mercure-Last-Event-ID"); got != "x" {
				t.Errorf("got Mercure-Last-Event-ID %q, want x", got)
			}
			for i, want := range []string{ev("b", "3"), ev("x", "4"), ev("c", "5")} {
				if got := s.next(); got != want {
					t.Errorf("event %d: got %q, want %q", i, got, want)
				}
			}
			// The reuse is now the newest event: the ID still names the
			// earliest one.
			tp2 := "https://example.com/reused-newest"
			for _, u := range [][2]string{{"p", "1"}, {"y", "2"}, {"q", "3"}, {"y", "4"}} {
				if id := h.mustPublish(t, form("topic", tp2, "id", u[0], "data", u[1])); id != u[0] {
					t.Fatalf("publish with id %q: got id %q", u[0], id)
				}
			}
			s2 := h.subscribe(t, "match="+tp2+"&last_event_id=y", nil)
			for i, want := range []string{ev("q", "3"), ev("y", "4")} {
				if got := s2.next(); got != want {
					t.Errorf("newest reuse, event %d: got %q, want %q", i, got, want)
				}
			}
		})
	}
}
