// Package ssetest checks implementations of [sse.Broker] against the
// contract written on that interface. It uses only the standard library.
//
//	func TestMyBroker(t *testing.T) {
//		ssetest.TestBroker(t, func(t *testing.T) sse.Broker {
//			return mybroker.New(...)
//		})
//	}
package ssetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// waitTimeout bounds every wait for a subscription to deliver; only a
// failing broker ever reaches it.
const waitTimeout = 10 * time.Second

// TestBroker runs one subtest per rule of the [sse.Broker] contract.
// newBroker is called once per subtest and must return a fresh, empty
// broker; TestBroker closes it. A broker that retains fewer than 50
// events per topic cannot pass.
func TestBroker(t *testing.T, newBroker func(t *testing.T) sse.Broker) {
	t.Helper()
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, b sse.Broker)
	}{
		{"IDsAssignedAndIncreasing", testIDsAssigned},
		{"PublisherIDsKept", testPublisherIDs},
		{"OrderPerTopic", testOrder},
		{"TopicsIsolated", testIsolation},
		{"HistoryAfterPosition", testHistoryAfter},
		{"SubscribeFromPosition", testSubscribeFrom},
		{"HistoryBounds", testHistoryBounds},
		{"GapForUnknownIDs", testGapUnknown},
		{"InvalidEventRefused", testInvalidEvent},
		{"ConcurrentPublishers", testConcurrent},
		{"SubscriptionEnds", testSubscriptionEnds},
		{"CloseSemantics", testClose},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBroker(t)
			defer b.Close()
			tc.fn(t, b)
		})
	}
}

// IDLess reports whether broker-assigned ID a comes before b: shorter
// first, then bytewise, which is numeric order for decimal strings.
func IDLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

func publish(t *testing.T, b sse.Broker, topic string, ev *sse.Event) sse.Message {
	t.Helper()
	m, err := b.Publish(t.Context(), topic, ev)
	if err != nil {
		t.Fatalf("Publish(%q, %q): got error %v, want nil", topic, ev.Data, err)
	}
	return m
}

func publishN(t *testing.T, b sse.Broker, topic string, n int) []sse.Message {
	t.Helper()
	ms := make([]sse.Message, n)
	for i := range ms {
		ms[i] = publish(t, b, topic, sse.NewEvent(fmt.Sprintf("%s-%d", topic, i)))
	}
	return ms
}

func history(t *testing.T, b sse.Broker, topic, after string) sse.History {
	t.Helper()
	h, err := b.History(t.Context(), topic, after)
	if err != nil {
		t.Fatalf("History(%q, %q): got error %v, want nil", topic, after, err)
	}
	return h
}

// summary renders messages as "seq:id:data" for comparisons.
func summary(ms []sse.Message) string {
	var s []string
	for _, m := range ms {
		s = append(s, fmt.Sprintf("%d:%s:%s", m.Seq, m.Event.ID, m.Event.Data))
	}
	return "[" + strings.Join(s, " ") + "]"
}

func testIDsAssigned(t *testing.T, b sse.Broker) {
	ms := publishN(t, b, "ids", 12)
	for i, m := range ms {
		if m.Topic != "ids" || m.Event.Data != fmt.Sprintf("ids-%d", i) {
			t.Errorf("message %d: got topic %q data %q, want %q %q", i, m.Topic, m.Event.Data, "ids", fmt.Sprintf("ids-%d", i))
		}
		if m.Event.ID == "" {
			t.Fatalf("message %d: got empty ID, want one assigned", i)
		}
		if m.Seq == 0 {
			t.Errorf("message %d: got Seq 0, want > 0", i)
		}
		if i == 0 {
			continue
		}
		if p := ms[i-1]; m.Seq <= p.Seq {
			t.Errorf("message %d: got Seq %d after %d, want increasing", i, m.Seq, p.Seq)
		}
		if p := ms[i-1]; !IDLess(p.Event.ID, m.Event.ID) {
			t.Errorf("message %d: got ID %q after %q, want increasing", i, m.Event.ID, p.Event.ID)
		}
	}
	head, err := b.Head(t.Context(), "ids")
	if err != nil {
		t.Fatal(err)
	}
	if want := ms[len(ms)-1].Position(); head != want {
		t.Errorf("Head: got %+v, want %+v", head, want)
	}
	empty, err := b.Head(t.Context(), "never-used")
	if err != nil || empty != (sse.Position{}) {
		t.Errorf("Head of an unused topic: got %+v, %v, want zero, nil", empty, err)
	}
}

func testPublisherIDs(t *testing.T, b sse.Broker) {
	in := &sse.Event{Type: "order", ID: "order-7", Data: "x\ny", Retry: 1500}
	m := publish(t, b, "own", in)
	if m.Event != *in {
		t.Errorf("stored event: got %+v, want %+v", m.Event, *in)
	}
	if in.ID != "order-7" {
		t.Errorf("Publish modified the event: got ID %q, want %q", in.ID, "order-7")
	}
	next := publish(t, b, "own", sse.NewEvent("after"))
	h := history(t, b, "own", "order-7")
	if h.Gap || h.After != m.Seq || summary(h.Messages) != summary([]sse.Message{next}) {
		t.Errorf("History after a publisher ID: got gap %v after %d %s, want no gap, after %d %s",
			h.Gap, h.After, summary(h.Messages), m.Seq, summary([]sse.Message{next}))
	}
	h = history(t, b, "own", "")
	if len(h.Messages) != 2 || h.Messages[0].Event != *in {
		t.Errorf("History: got %s, want the publisher's event kept first", summary(h.Messages))
	}
}

func testOrder(t *testing.T, b sse.Broker) {
	ms := publishN(t, b, "order", 40)
	h := history(t, b, "order", "")
	if got, want := summary(h.Messages), summary(ms); got != want {
		t.Errorf("History: got %s, want %s", got, want)
	}
	if h.Gap || h.Head != ms[39].Position() || h.Oldest != ms[0].Position() {
		t.Errorf("History: got gap %v head %+v oldest %+v, want no gap, head %+v, oldest %+v",
			h.Gap, h.Head, h.Oldest, ms[39].Position(), ms[0].Position())
	}
	got := collect(t, b, "order", 0, 40)
	if summary(got) != summary(ms) {
		t.Errorf("Subscribe(0): got %s, want %s", summary(got), summary(ms))
	}
}

func testIsolation(t *testing.T, b sse.Broker) {
	a := publishN(t, b, "a", 3)
	bs := publishN(t, b, "b", 3)
	a = append(a, publishN(t, b, "a", 2)...)
	if got := history(t, b, "a", "").Messages; summary(got) != summary(a) {
		t.Errorf("History(a): got %s, want %s", summary(got), summary(a))
	}
	if got := history(t, b, "b", "").Messages; summary(got) != summary(bs) {
		t.Errorf("History(b): got %s, want %s", summary(got), summary(bs))
	}
	// An ID of topic b means nothing in topic a.
	h := history(t, b, "a", bs[1].Event.ID)
	if !h.Gap || summary(h.Messages) != summary(a) {
		t.Errorf("History(a, ID from b): got gap %v %s, want gap and %s", h.Gap, summary(h.Messages), summary(a))
	}
	sub := collect(t, b, "b", 0, 3)
	if summary(sub) != summary(bs) {
		t.Errorf("Subscribe(b): got %s, want %s", summary(sub), summary(bs))
	}
}

func testHistoryAfter(t *testing.T, b sse.Broker) {
	ms := publishN(t, b, "after", 10)
	for _, i := range []int{0, 4, 8, 9} {
		h := history(t, b, "after", ms[i].Event.ID)
		if h.Gap || h.After != ms[i].Seq {
			t.Errorf("History(after #%d): got gap %v after %d, want no gap, after %d", i, h.Gap, h.After, ms[i].Seq)
		}
		if got, want := summary(h.Messages), summary(ms[i+1:]); got != want {
			t.Errorf("History(after #%d): got %s, want %s", i, got, want)
		}
	}
}

// recorder collects what a subscription delivers.
type recorder struct {
	mu     sync.Mutex
	msgs   []sse.Message
	notify chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (r *recorder) add(m sse.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// wait returns the messages once there are n, failing after waitTimeout.
func (r *recorder) wait(t *testing.T, n int) []sse.Message {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		got := append([]sse.Message(nil), r.msgs...)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-r.notify:
		case <-deadline.C:
			t.Fatalf("subscription: got %d events %s, want %d", len(got), summary(got), n)
		}
	}
}

// collect subscribes after seq, waits for n events and unsubscribes.
func collect(t *testing.T, b sse.Broker, topic string, after uint64, n int) []sse.Message {
	t.Helper()
	r := newRecorder()
	sub, err := b.Subscribe(t.Context(), topic, after, r.add)
	if err != nil {
		t.Fatalf("Subscribe(%q, %d): got error %v, want nil", topic, after, err)
	}
	defer sub.Close()
	return r.wait(t, n)
}

func testSubscribeFrom(t *testing.T, b sse.Broker) {
	ms := publishN(t, b, "sub", 5)
	r := newRecorder()
	sub, err := b.Subscribe(t.Context(), "sub", ms[1].Seq, r.add)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	live := newRecorder()
	liveSub, err := b.Subscribe(t.Context(), "sub", ms[4].Seq, live.add)
	if err != nil {
		t.Fatal(err)
	}
	defer liveSub.Close()
	ms = append(ms, publishN(t, b, "sub", 3)...)
	if got, want := summary(r.wait(t, 6)), summary(ms[2:]); got != want {
		t.Errorf("Subscribe(after #1): got %s, want %s", got, want)
	}
	if got, want := summary(live.wait(t, 3)), summary(ms[5:]); got != want {
		t.Errorf("Subscribe(after head): got %s, want %s", got, want)
	}
	sub.Close()
	liveSub.Close()
	publish(t, b, "sub", sse.NewEvent("unseen"))
	if got := r.wait(t, 0); len(got) != 6 {
		t.Errorf("after Close: got %d events, want 6", len(got))
	}
	select {
	case <-sub.Done():
	default:
		t.Error("Done not closed after Close")
	}
}

func testHistoryBounds(t *testing.T, b sse.Broker) {
	const n = 3000
	ms := make([]sse.Message, n)
	for i := range ms {
		ms[i] = publish(t, b, "bounds", sse.NewEvent(fmt.Sprintf("%04d", i)+strings.Repeat(".", 400)))
	}
	h := history(t, b, "bounds", "")
	k := len(h.Messages)
	if k == 0 {
		t.Fatal("History: got no events, want the newest ones retained")
	}
	if got, want := summary(h.Messages), summary(ms[n-k:]); got != want {
		t.Fatalf("History: got %d events that are not the newest %d", k, k)
	}
	if h.Oldest != ms[n-k].Position() || h.Head != ms[n-1].Position() {
		t.Errorf("History: got oldest %+v head %+v, want %+v %+v", h.Oldest, h.Head, ms[n-k].Position(), ms[n-1].Position())
	}
	if k == n {
		t.Logf("broker retained all %d events; pruning not exercised", n)
		return
	}
	if !h.Gap {
		t.Errorf("History(\"\") with %d of %d events pruned: got no gap, want a gap", n-k, n)
	}
	pruned := ms[n-k-1]
	h = history(t, b, "bounds", pruned.Event.ID)
	if !h.Gap || h.After != 0 || len(h.Messages) != k {
		t.Errorf("History(pruned ID): got gap %v after %d and %d events, want gap, 0, %d", h.Gap, h.After, len(h.Messages), k)
	}
	// The oldest retained event is a valid position.
	h = history(t, b, "bounds", ms[n-k].Event.ID)
	if h.Gap || len(h.Messages) != k-1 {
		t.Errorf("History(oldest retained): got gap %v and %d events, want no gap and %d", h.Gap, len(h.Messages), k-1)
	}
	_, err := b.Subscribe(t.Context(), "bounds", pruned.Seq-1, func(sse.Message) {})
	if !errors.Is(err, sse.ErrGap) {
		t.Errorf("Subscribe(pruned position): got %v, want ErrGap", err)
	}
	got := collect(t, b, "bounds", pruned.Seq, k)
	if summary(got) != summary(ms[n-k:]) {
		t.Errorf("Subscribe(just before oldest): got %d events, want the %d retained", len(got), k)
	}
}

func testGapUnknown(t *testing.T, b sse.Broker) {
	ms := publishN(t, b, "gap", 5)
	for _, id := range []string{
		"no-such-id",
		"0",
		"-1",
		"99999999999999999999999999",
		"007",
		strings.Repeat("9", 1<<16),
		"a=1&b=2",
		"\xff\xfe",
	} {
		h := history(t, b, "gap", id)
		if !h.Gap || h.After != 0 || summary(h.Messages) != summary(ms) {
			name := id
			if len(name) > 40 {
				name = name[:40] + "..."
			}
			t.Errorf("History(%q): got gap %v after %d %s, want gap, 0, %s", name, h.Gap, h.After, summary(h.Messages), summary(ms))
		}
	}
	h := history(t, b, "gap", "")
	if h.Gap || len(h.Messages) != 5 {
		t.Errorf("History(\"\"): got gap %v and %d events, want no gap and 5", h.Gap, len(h.Messages))
	}
	h = history(t, b, "empty-topic", "whatever")
	if !h.Gap || len(h.Messages) != 0 || h.Head != (sse.Position{}) {
		t.Errorf("History(empty topic, unknown ID): got %+v, want a gap and nothing else", h)
	}
}

func testInvalidEvent(t *testing.T, b sse.Broker) {
	publish(t, b, "inv", sse.NewEvent("ok"))
	for _, ev := range []*sse.Event{
		{ID: "1\nevent: evil", Data: "x"},
		{Type: "a\rb", Data: "x"},
		{Data: "x", Retry: -1},
	} {
		if _, err := b.Publish(t.Context(), "inv", ev); !errors.Is(err, sse.ErrInvalidEvent) {
			t.Errorf("Publish(%+v): got %v, want ErrInvalidEvent", ev, err)
		}
	}
	if h := history(t, b, "inv", ""); len(h.Messages) != 1 {
		t.Errorf("History after refused events: got %d events, want 1", len(h.Messages))
	}
}

func testConcurrent(t *testing.T, b sse.Broker) {
	const publishers, each = 8, 100
	r := newRecorder()
	sub, err := b.Subscribe(t.Context(), "conc", 0, r.add)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got := make([][]sse.Message, publishers)
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				m, err := b.Publish(context.Background(), "conc", sse.NewEvent(fmt.Sprintf("%d/%d", p, i)))
				if err != nil {
					t.Errorf("Publish: got %v, want nil", err)
					return
				}
				got[p] = append(got[p], m)
			}
		})
	}
	wg.Wait()
	all := r.wait(t, publishers*each)
	if len(all) != publishers*each {
		t.Fatalf("subscription: got %d events, want %d", len(all), publishers*each)
	}
	ids := make(map[string]bool)
	next := make([]int, publishers)
	for i, m := range all {
		if i > 0 && m.Seq <= all[i-1].Seq {
			t.Fatalf("event %d: got Seq %d after %d, want increasing", i, m.Seq, all[i-1].Seq)
		}
		if ids[m.Event.ID] {
			t.Fatalf("event %d: got ID %q twice, want unique", i, m.Event.ID)
		}
		ids[m.Event.ID] = true
		var p, k int
		fmt.Sscanf(m.Event.Data, "%d/%d", &p, &k)
		if k != next[p] {
			t.Fatalf("publisher %d: got its event %d, want %d (its order kept)", p, k, next[p])
		}
		want := got[p][k]
		if m.Seq != want.Seq || m.Event.ID != want.Event.ID {
			t.Fatalf("event %q: got seq %d id %q, want what Publish returned: %d %q", m.Event.Data, m.Seq, m.Event.ID, want.Seq, want.Event.ID)
		}
		next[p]++
	}
}

func testSubscriptionEnds(t *testing.T, b sse.Broker) {
	ctx, cancel := context.WithCancel(t.Context())
	r := newRecorder()
	sub, err := b.Subscribe(ctx, "ends", 0, r.add)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, b, "ends", sse.NewEvent("one"))
	r.wait(t, 1)
	cancel()
	select {
	case <-sub.Done():
	case <-time.After(waitTimeout):
		t.Fatal("subscription still running after its context ended")
	}
	if err := sub.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("Err after cancel: got %v, want context.Canceled", err)
	}
	publish(t, b, "ends", sse.NewEvent("two"))
	if got := r.wait(t, 0); len(got) != 1 {
		t.Errorf("after cancel: got %d events, want 1", len(got))
	}
	if err := sub.Close(); err != nil {
		t.Errorf("Close after end: got %v, want nil", err)
	}
	if _, err := b.Publish(ctx, "ends", sse.NewEvent("x")); err == nil {
		t.Error("Publish with an ended context: got nil error, want one")
	}
}

func testClose(t *testing.T, b sse.Broker) {
	publish(t, b, "close", sse.NewEvent("kept"))
	sub, err := b.Subscribe(t.Context(), "close", 0, func(sse.Message) {})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: got %v, want nil", err)
	}
	select {
	case <-sub.Done():
	case <-time.After(waitTimeout):
		t.Fatal("subscription still running after Close")
	}
	if err := sub.Err(); !errors.Is(err, sse.ErrBrokerClosed) {
		t.Errorf("subscription Err: got %v, want ErrBrokerClosed", err)
	}
	ctx := t.Context()
	if _, err := b.Publish(ctx, "close", sse.NewEvent("x")); !errors.Is(err, sse.ErrBrokerClosed) {
		t.Errorf("Publish after Close: got %v, want ErrBrokerClosed", err)
	}
	if _, err := b.Head(ctx, "close"); !errors.Is(err, sse.ErrBrokerClosed) {
		t.Errorf("Head after Close: got %v, want ErrBrokerClosed", err)
	}
	if _, err := b.History(ctx, "close", ""); !errors.Is(err, sse.ErrBrokerClosed) {
		t.Errorf("History after Close: got %v, want ErrBrokerClosed", err)
	}
	if _, err := b.Subscribe(ctx, "close", 0, func(sse.Message) {}); !errors.Is(err, sse.ErrBrokerClosed) {
		t.Errorf("Subscribe after Close: got %v, want ErrBrokerClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: got %v, want nil", err)
	}
}
