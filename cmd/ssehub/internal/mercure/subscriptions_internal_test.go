package mercure

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// remoteEvent is the update a hub of node writes for the subscription of
// subscriber to the exact matcher match.
func remoteEvent(seq uint64, node, match, subscriber string, active bool) Followed {
	s := &subscription{matchType: Exact, match: match, subscriber: subscriber}
	data, _ := json.Marshal(s.doc(active))
	return Followed{Seq: seq, ID: "id" + strconv.FormatUint(seq, 10), Type: subscriptionEventType, Data: string(data),
		Topics: []string{s.topic(), nodeTopicPrefix + node}}
}

func heartbeat(seq uint64, node string) Followed {
	return Followed{Seq: seq, ID: "id" + strconv.FormatUint(seq, 10), Type: subscriptionEventType, Topics: []string{nodeTopicPrefix + node}}
}

// topicsOf returns the topics of a listing.
func topicsOf(ls []listed) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.topic)
	}
	return out
}

func TestRegistryFollowsOtherHubs(t *testing.T) {
	e := NewEngine(EngineConfig{})
	defer e.Shutdown(context.Background())
	now := time.Unix(1000, 0)
	reg := &registry{engine: e, node: nodeTopicPrefix + "self", ttl: 30 * time.Second, now: func() time.Time { return now },
		active: map[string]*subscription{}, remote: map[string]remoteSubscription{}, seen: map[string]time.Time{}, advanced: make(chan struct{})}
	topic := func(match, subscriber string) string {
		return (&subscription{matchType: Exact, match: match, subscriber: subscriber}).topic()
	}
	check := func(step string, wantLast string, want ...string) {
		t.Helper()
		ls, last := reg.list(context.Background(), subscriptionsPath+"/")
		if got := topicsOf(ls); !slices.Equal(got, want) || last != wantLast {
			t.Errorf("%s: got %q and %q, want %q and %q", step, got, last, want, wantLast)
		}
	}
	check("empty", Earliest)

	reg.apply(remoteEvent(1, "x", "urn:a", "urn:uuid:1", true))
	reg.apply(remoteEvent(2, "y", "urn:b", "urn:uuid:2", true))
	reg.apply(remoteEvent(3, "self", "urn:c", "urn:uuid:3", true)) // its own: known first hand
	reg.apply(Followed{Seq: 4, ID: "id4", Type: subscriptionEventType, Data: `{"active":true}`,
		Topics: []string{topic("urn:d", "urn:uuid:4")}}) // no node: not a hub of the cluster
	reg.apply(Followed{Seq: 5, ID: "id5", Data: "x", Topics: []string{"https://example.com/x"}})
	check("created", "id5", topic("urn:a", "urn:uuid:1"), topic("urn:b", "urn:uuid:2"))
	ls, _ := reg.list(context.Background(), topic("urn:a", "urn:uuid:1"))
	if want := `{"active":true,"id":"` + topic("urn:a", "urn:uuid:1") + `","match":"urn:a","match_type":"exact","subscriber":"urn:uuid:1","type":"subscription"}`; len(ls) != 1 || string(ls[0].doc) != want {
		t.Errorf("document: got %q, want %s", ls, want)
	}

	// y beats, x is silent: after the TTL only y's subscription stays.
	now = now.Add(20 * time.Second)
	reg.apply(heartbeat(6, "y"))
	now = now.Add(15 * time.Second)
	check("x silent", "id6", topic("urn:b", "urn:uuid:2"))
	now = now.Add(10 * time.Second)
	check("y still beating within the TTL", "id6", topic("urn:b", "urn:uuid:2"))

	reg.apply(remoteEvent(7, "y", "urn:b", "urn:uuid:2", false))
	check("ended", "id7")

	reg.apply(remoteEvent(8, "z", "urn:e", "urn:uuid:5", true))
	reg.reset()
	check("reset", "id8")
}

func TestFilterDropsNodeTopics(t *testing.T) {
	var seen [][]string
	pass := func(topics []string, private bool) bool {
		seen = append(seen, topics)
		return true
	}
	r, _ := http.NewRequest("GET", "/", nil)
	f := filterFor(r.WithContext(context.WithValue(r.Context(), streamKey{}, &streamState{pass: pass})))
	node := nodeTopicPrefix + "n"
	for _, c := range []struct {
		topics []string
		want   bool
	}{
		{[]string{node}, false},      // a heartbeat
		{[]string{"/s", node}, true}, // a subscription event
		{[]string{"a", "b"}, true},   // an update
		{[]string{node, "a"}, true},  // only the last one names a node
		{nil, false},                 // no topic
		{[]string{"a", node + "/x"}, true},
	} {
		if got := f(&sse.Message{Meta: &sse.Meta{Topics: c.topics}}); got != c.want {
			t.Errorf("%q: got %v, want %v", c.topics, got, c.want)
		}
	}
	want := [][]string{{"/s"}, {"a", "b"}, {node, "a"}, {"a"}}
	if !slices.EqualFunc(seen, want, slices.Equal) {
		t.Errorf("pass saw %q, want %q", seen, want)
	}
}

func TestFollow(t *testing.T) {
	e := NewEngine(EngineConfig{History: sse.HistoryLimits{MaxEvents: 2}})
	pub := func(id string) {
		t.Helper()
		if err := e.Publish(context.Background(), &Update{Topics: []string{"t"}, ID: id, Data: id}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"a", "b", "c"} {
		pub(id)
	}
	got := make(chan string, 10)
	resets := make(chan struct{}, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Follow(context.Background(), func() { resets <- struct{}{} }, func(u Followed) { got <- u.ID + ":" + u.Data })
	}()
	// The retained updates (a was pruned), then the new ones.
	wantNext := func(want string) {
		t.Helper()
		select {
		case g := <-got:
			if g != want {
				t.Errorf("got %q, want %q", g, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("nothing followed, want %q", want)
		}
	}
	wantNext("b:b")
	wantNext("c:c")
	pub("d")
	wantNext("d:d")
	if len(resets) != 1 {
		t.Errorf("got %d resets, want 1", len(resets))
	}
	// Follow ends with the engine.
	e.Shutdown(context.Background())
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Follow did not return after Shutdown")
	}
}
