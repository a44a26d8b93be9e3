// Package ssetest checks implementations of [sse.Broker] against the
// contract written on that interface. It uses only the standard library.
//
//	func TestMyBroker(t *testing.T) {
//		ssetest.TestBroker(t, func(t *testing.T, limits sse.HistoryLimits) sse.Broker {
//			return mybroker.New(..., limits)
//		})
//	}
//
// [TestCluster] then proves that [sse.Server] nodes sharing the broker's
// backend act as one server, through failover and a chaos run, and
// [BenchmarkCluster] measures such a cluster.
package ssetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// waitTimeout bounds every wait for a subscription to deliver; only a
// failing broker ever reaches it.
const waitTimeout = 10 * time.Second

// roomy are the limits of the subtests that do not test limits: enough
// for every event they publish.
var roomy = sse.HistoryLimits{MaxEvents: 10000, MaxBytes: 64 << 20, MaxAge: time.Hour}

// TestBroker runs one subtest per rule of the [sse.Broker] contract.
// newBroker is called once per subtest and must return a fresh, empty
// broker that bounds each topic's history by limits, as [sse.HistoryLimits]
// describes (no field is zero or negative); TestBroker closes it. The
// age subtest waits for events to expire in real time (about three
// seconds), as a broker backed by a server keeps the server's clock.
func TestBroker(t *testing.T, newBroker func(t *testing.T, limits sse.HistoryLimits) sse.Broker) {
	t.Helper()
	for _, tc := range []struct {
		name   string
		limits sse.HistoryLimits
		fn     func(t *testing.T, b sse.Broker)
	}{
		{"IDsAssigned", roomy, testIDsAssigned},
		{"PublisherIDsKept", roomy, testPublisherIDs},
		{"ReusedIDNamesEarliest", roomy, testReusedID},
		{"ReusedIDFirstPruned", sse.HistoryLimits{MaxEvents: 3, MaxBytes: 64 << 20, MaxAge: time.Hour}, testReusedIDPruned},
		{"TopicNames", roomy, testTopicNames},
		{"OrderPerTopic", roomy, testOrder},
		{"TopicsIsolated", roomy, testIsolation},
		{"HistoryAfterPosition", roomy, testHistoryAfter},
		{"SubscribeFromPosition", roomy, testSubscribeFrom},
		{"SubscribeNewest", roomy, testSubscribeNewest},
		{"HistoryAndSubscribeAgree", roomy, testAgree},
		{"LimitCount", sse.HistoryLimits{MaxEvents: 5, MaxBytes: 64 << 20, MaxAge: time.Hour}, testLimitCount},
		{"LimitBytes", sse.HistoryLimits{MaxEvents: 10000, MaxBytes: 1000, MaxAge: time.Hour}, testLimitBytes},
		{"LimitAge", sse.HistoryLimits{MaxEvents: 10000, MaxBytes: 64 << 20, MaxAge: ageLimit}, testLimitAge},
		{"GapReporting", roomy, testGap},
		{"InvalidEventRefused", roomy, testInvalidEvent},
		{"MetaRoundTrip", roomy, testMeta},
		{"ConcurrentPublishers", roomy, testConcurrent},
		{"SlowSubscriber", roomy, testSlow},
		{"SubscriptionEnds", roomy, testSubscriptionEnds},
		{"CloseWhileSubscribed", roomy, testCloseWhileSubscribed},
		{"CloseSemantics", roomy, testClose},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBroker(t, tc.limits)
			defer b.Close()
			tc.fn(t, b)
		})
	}
}

func publish(t *testing.T, b sse.Broker, topic string, ev *sse.Event) sse.Message {
	t.Helper()
	m, err := b.Publish(t.Context(), topic, ev, nil)
	if err != nil {
		t.Fatalf("Publish(%q, %q): got error %v, want nil", topic, ev.Data, err)
	}
	return m
}

func publishN(t *testing.T, b sse.Broker, topic string, n int) []sse.Message {
	t.Helper()
	ms := make([]sse.Message, n)
	for i := range ms {
		ms[i] = publish(t, b, topic, sse.NewEvent(fmt.Sprintf("%.20s-%d", topic, i)))
	}
	return ms
}

func history(t *testing.T, b sse.Broker, topic, after string) sse.History {
	t.Helper()
	h, err := b.History(t.Context(), topic, after)
	if err != nil {
		t.Fatalf("History(%.40q, %.40q): got error %v, want nil", topic, after, err)
	}
	return h
}

// summary renders messages as "seq:id:data" for comparisons.
func summary(ms []sse.Message) string {
	var s []string
	for _, m := range ms {
		s = append(s, fmt.Sprintf("%d:%s:%.40s", m.Seq, m.Event.ID, m.Event.Data))
	}
	return "[" + strings.Join(s, " ") + "]"
}

func testIDsAssigned(t *testing.T, b sse.Broker) {
	ms := publishN(t, b, "ids", 12)
	seen := make(map[string]bool)
	for i, m := range ms {
		if m.Topic != "ids" || m.Event.Data != fmt.Sprintf("ids-%d", i) {
			t.Errorf("message %d: got topic %q data %q, want %q %q", i, m.Topic, m.Event.Data, "ids", fmt.Sprintf("ids-%d", i))
		}
		if m.Event.ID == "" {
			t.Fatalf("message %d: got empty ID, want one assigned", i)
		}
		if seen[m.Event.ID] {
			t.Errorf("message %d: got ID %q twice, want unique", i, m.Event.ID)
		}
		seen[m.Event.ID] = true
		if m.Seq == 0 {
			t.Errorf("message %d: got Seq 0, want > 0", i)
		}
		if m.Meta != nil {
			t.Errorf("message %d: got Meta %+v, want nil", i, m.Meta)
		}
		if i > 0 && m.Seq <= ms[i-1].Seq {
			t.Errorf("message %d: got Seq %d after %d, want increasing", i, m.Seq, ms[i-1].Seq)
		}
	}
	h := history(t, b, "ids", "")
	if want := ms[len(ms)-1].Position(); h.Head != want {
		t.Errorf("History Head: got %+v, want %+v", h.Head, want)
	}
	empty := history(t, b, "never-used", "")
	if empty.Gap || empty.Head != (sse.Position{}) || len(empty.Messages) != 0 {
		t.Errorf("History of an unused topic: got %+v, want zero", empty)
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
	if h.Gap || h.After != m.Position() || summary(h.Messages) != summary([]sse.Message{next}) {
		t.Errorf("History after a publisher ID: got gap %v after %+v %s, want no gap, after %+v %s",
			h.Gap, h.After, summary(h.Messages), m.Position(), summary([]sse.Message{next}))
	}
	h = history(t, b, "own", "")
	if len(h.Messages) != 2 || h.Messages[0].Event != *in {
		t.Errorf("History: got %s, want the publisher's event kept first", summary(h.Messages))
	}
	// A publisher's ID that names neither the oldest nor the newest
	// event is found all the same, and After carries it.
	mid := publish(t, b, "own", &sse.Event{ID: "order-8", Data: "z"})
	newest := publish(t, b, "own", sse.NewEvent("newest"))
	h = history(t, b, "own", "order-8")
	if h.Gap || h.After != mid.Position() || summary(h.Messages) != summary([]sse.Message{newest}) {
		t.Errorf("History after a publisher ID in the middle: got gap %v after %+v %s, want no gap, after %+v %s",
			h.Gap, h.After, summary(h.Messages), mid.Position(), summary([]sse.Message{newest}))
	}
}

// testReusedID checks that a publisher ID used twice names its earliest
// event, whether the reuse is in the middle of the history or its newest
// event.
func testReusedID(t *testing.T, b sse.Broker) {
	first := publish(t, b, "reuse", &sse.Event{ID: "x", Data: "1"})
	second := publish(t, b, "reuse", sse.NewEvent("2"))
	again := publish(t, b, "reuse", &sse.Event{ID: "x", Data: "3"})
	h := history(t, b, "reuse", "x")
	if want := []sse.Message{second, again}; h.Gap || h.After != first.Position() || summary(h.Messages) != summary(want) {
		t.Errorf("History after a reused ID, the reuse newest: got gap %v after %+v %s, want no gap, after %+v %s",
			h.Gap, h.After, summary(h.Messages), first.Position(), summary(want))
	}
	last := publish(t, b, "reuse", sse.NewEvent("4"))
	h = history(t, b, "reuse", "x")
	if want := []sse.Message{second, again, last}; h.Gap || h.After != first.Position() || summary(h.Messages) != summary(want) {
		t.Errorf("History after a reused ID, the reuse in the middle: got gap %v after %+v %s, want no gap, after %+v %s",
			h.Gap, h.After, summary(h.Messages), first.Position(), summary(want))
	}
}

// testReusedIDPruned checks that a reused ID whose first use was pruned
// names that pruned event (the newest pruned one): the retained reuse
// is still sent.
func testReusedIDPruned(t *testing.T, b sse.Broker) {
	first := publish(t, b, "reuse", &sse.Event{ID: "x", Data: "1"})
	var want []sse.Message
	for _, ev := range []*sse.Event{sse.NewEvent("2"), {ID: "x", Data: "3"}, sse.NewEvent("4")} {
		want = append(want, publish(t, b, "reuse", ev))
	}
	h := history(t, b, "reuse", "x")
	if h.Gap || h.After != first.Position() || summary(h.Messages) != summary(want) {
		t.Errorf("History after a reused ID whose first use was pruned: got gap %v after %+v %s, want no gap, after %+v %s",
			h.Gap, h.After, summary(h.Messages), first.Position(), summary(want))
	}
}

// names are topic names that engines restrict: each must be kept
// verbatim and apart from the others.
var names = []string{
	"", "a", "A", "a b", "a.b", "a.b.*", "a.>", "*", ">", "a/b", "a%2Fb", "a:b", "{x}", "é", "\x00", "\xff",
	"a\nb", strings.Repeat("long/", 205),
}

func testTopicNames(t *testing.T, b sse.Broker) {
	want := make(map[string][]sse.Message)
	for i, name := range names {
		for j := range 2 {
			m := publish(t, b, name, sse.NewEvent(fmt.Sprintf("%d-%d", i, j)))
			if m.Topic != name {
				t.Errorf("Publish(%q): got topic %q, want it verbatim", name, m.Topic)
			}
			want[name] = append(want[name], m)
		}
	}
	for _, name := range names {
		h := history(t, b, name, "")
		if got, w := summary(h.Messages), summary(want[name]); got != w || h.Gap {
			t.Errorf("History(%.40q): got gap %v %s, want %s", name, h.Gap, got, w)
		}
		for _, m := range h.Messages {
			if m.Topic != name {
				t.Errorf("History(%.40q): got a message of topic %.40q", name, m.Topic)
			}
		}
		got := collect(t, b, name, 0, 2)
		if summary(got) != summary(want[name]) {
			t.Errorf("Subscribe(%.40q): got %s, want %s", name, summary(got), summary(want[name]))
		}
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
	for _, m := range bs {
		h := history(t, b, "a", m.Event.ID)
		if !h.Gap || summary(h.Messages) != summary(a) {
			t.Errorf("History(a, ID %q from b): got gap %v %s, want gap and %s", m.Event.ID, h.Gap, summary(h.Messages), summary(a))
		}
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
		if h.Gap || h.After != ms[i].Position() {
			t.Errorf("History(after #%d): got gap %v after %+v, want no gap, after %+v", i, h.Gap, h.After, ms[i].Position())
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

func (r *recorder) get() []sse.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sse.Message(nil), r.msgs...)
}

// wait returns the messages once there are n, failing after waitTimeout.
func (r *recorder) wait(t *testing.T, n int) []sse.Message {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		got := r.get()
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

// settle publishes a marker to topic and waits until r received it, so
// that anything r would wrongly receive before it has arrived; it
// returns what r received before the marker.
func settle(t *testing.T, b sse.Broker, r *recorder, topic string) []sse.Message {
	t.Helper()
	n := len(r.get())
	mark := publish(t, b, topic, sse.NewEvent("settle"))
	for {
		got := r.wait(t, n+1)
		if last := got[len(got)-1]; last.Seq == mark.Seq {
			return got[:len(got)-1]
		}
		n = len(got)
	}
}

// collect subscribes after seq, waits for n events and unsubscribes.
func collect(t *testing.T, b sse.Broker, topic string, after uint64, n int) []sse.Message {
	t.Helper()
	r := newRecorder()
	sub, err := b.Subscribe(t.Context(), topic, after, r.add)
	if err != nil {
		t.Fatalf("Subscribe(%.40q, %d): got error %v, want nil", topic, after, err)
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
	if got := sub.After(); got != ms[1].Position() {
		t.Errorf("After: got %+v, want %+v", got, ms[1].Position())
	}
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
	select {
	case <-sub.Done():
	default:
		t.Error("Done not closed after Close")
	}
	publish(t, b, "sub", sse.NewEvent("unseen"))
	other := newRecorder()
	otherSub, err := b.Subscribe(t.Context(), "sub", sse.Newest, other.add)
	if err != nil {
		t.Fatal(err)
	}
	defer otherSub.Close()
	settle(t, b, other, "sub")
	if got := r.get(); len(got) != 6 {
		t.Errorf("after Close: got %d events, want 6", len(got))
	}
	if err := sub.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("Err after Close: got %v, want context.Canceled", err)
	}
}

func testSubscribeNewest(t *testing.T, b sse.Broker) {
	empty := newRecorder()
	sub, err := b.Subscribe(t.Context(), "newest-empty", sse.Newest, empty.add)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if sub.After() != (sse.Position{}) {
		t.Errorf("After on an empty topic: got %+v, want zero", sub.After())
	}
	first := publish(t, b, "newest-empty", sse.NewEvent("first"))
	if got := empty.wait(t, 1); summary(got) != summary([]sse.Message{first}) {
		t.Errorf("Subscribe(Newest) on an empty topic: got %s, want %s", summary(got), summary([]sse.Message{first}))
	}

	// Publishers race with subscribers: each subscription reports where
	// it starts and then gets exactly what follows, nothing before.
	const events, subs = 200, 8
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var all []sse.Message
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range events {
			m, err := b.Publish(ctx, "newest", sse.NewEvent(fmt.Sprint(i)), nil)
			if err != nil {
				t.Errorf("Publish: got %v, want nil", err)
				return
			}
			all = append(all, m)
		}
	}()
	type started struct {
		sub sse.Subscription
		r   *recorder
	}
	var ss []started
	for range subs {
		r := newRecorder()
		sub, err := b.Subscribe(t.Context(), "newest", sse.Newest, r.add)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		ss = append(ss, started{sub, r})
	}
	<-done
	if len(all) != events {
		t.FailNow()
	}
	for i, s := range ss {
		after := s.sub.After()
		k := 0
		if after.Seq != 0 {
			for k < len(all) && all[k].Seq != after.Seq {
				k++
			}
			if k == len(all) || all[k].Position() != after {
				t.Fatalf("subscription %d: After %+v is no published event", i, after)
			}
			k++
		}
		want := all[k:]
		var got []sse.Message
		if len(want) > 0 {
			got = s.r.wait(t, len(want))
		}
		if summary(got) != summary(want) {
			t.Errorf("subscription %d after %+v: got %s, want %s", i, after, summary(got), summary(want))
		}
	}
}

func testAgree(t *testing.T, b sse.Broker) {
	ms := publishN(t, b, "agree", 6)
	for _, tc := range []struct {
		name string
		id   string
	}{{"start", ""}, {"first", ms[0].Event.ID}, {"middle", ms[3].Event.ID}, {"newest", ms[5].Event.ID}} {
		h := history(t, b, "agree", tc.id)
		r := newRecorder()
		sub, err := b.Subscribe(t.Context(), "agree", h.After.Seq, r.add)
		if err != nil {
			t.Fatalf("%s: Subscribe(History(%q).After.Seq = %d): got %v, want nil", tc.name, tc.id, h.After.Seq, err)
		}
		if sub.After() != h.After {
			t.Errorf("%s: Subscribe After: got %+v, want History's %+v", tc.name, sub.After(), h.After)
		}
		got := settle(t, b, r, "agree")
		sub.Close()
		if summary(got) != summary(h.Messages) {
			t.Errorf("%s: Subscribe fed %s, want what History listed: %s", tc.name, summary(got), summary(h.Messages))
		}
		ms = append(ms, publish(t, b, "agree", sse.NewEvent("more")))
	}
}

// checkPruned checks that topic retains exactly the newest k of ms, that
// every older ID is a gap (but for the newest pruned one, which a client
// that saw it may resume from), and that Subscribe agrees.
func checkPruned(t *testing.T, b sse.Broker, topic string, ms []sse.Message, k int) {
	t.Helper()
	n := len(ms)
	h := history(t, b, topic, "")
	if got, want := summary(h.Messages), summary(ms[n-k:]); got != want {
		t.Fatalf("History: got %s, want the newest %d: %s", got, k, want)
	}
	if k < n && !h.Gap {
		t.Errorf("History(\"\") with %d of %d events pruned: got no gap, want a gap", n-k, n)
	}
	if k > 0 && (h.Oldest != ms[n-k].Position() || h.Head != ms[n-1].Position()) {
		t.Errorf("History: got oldest %+v head %+v, want %+v %+v", h.Oldest, h.Head, ms[n-k].Position(), ms[n-1].Position())
	}
	for i := range n - k {
		h := history(t, b, topic, ms[i].Event.ID)
		wantGap := i < n-k-1
		if h.Gap != wantGap || summary(h.Messages) != summary(ms[n-k:]) {
			t.Errorf("History(pruned #%d of %d): got gap %v %s, want gap %v and %s", i, n, h.Gap, summary(h.Messages), wantGap, summary(ms[n-k:]))
		}
		if !wantGap && h.After != ms[i].Position() {
			t.Errorf("History(newest pruned): got After %+v, want %+v", h.After, ms[i].Position())
		}
	}
	if n-k >= 2 {
		_, err := b.Subscribe(t.Context(), topic, ms[n-k-2].Seq, func(sse.Message) {})
		if !errors.Is(err, sse.ErrGap) {
			t.Errorf("Subscribe(pruned position): got %v, want ErrGap", err)
		}
	}
	if n > k && k > 0 {
		got := collect(t, b, topic, ms[n-k-1].Seq, k)
		if summary(got) != summary(ms[n-k:]) {
			t.Errorf("Subscribe(newest pruned): got %s, want %s", summary(got), summary(ms[n-k:]))
		}
	}
}

func testLimitCount(t *testing.T, b sse.Broker) {
	ms := publishN(t, b, "count", 5)
	checkPruned(t, b, "count", ms, 5)
	ms = append(ms, publishN(t, b, "count", 4)...)
	checkPruned(t, b, "count", ms, 5)
}

func testLimitBytes(t *testing.T, b sse.Broker) {
	// MaxBytes is 1000; IDs and metadata count too, so each of these
	// events holds between 300 and 333 bytes: three fit.
	var ms []sse.Message
	for i := range 7 {
		ms = append(ms, publish(t, b, "bytes", sse.NewEvent(fmt.Sprintf("%d%s", i, strings.Repeat(".", 299)))))
	}
	checkPruned(t, b, "bytes", ms, 3)
	for _, ev := range []*sse.Event{
		sse.NewEvent(strings.Repeat("x", 1001)),
		{ID: strings.Repeat("i", 600), Data: strings.Repeat("x", 600)},
	} {
		_, err := b.Publish(t.Context(), "bytes", ev, nil)
		if !errors.Is(err, sse.ErrEventTooLarge) {
			t.Errorf("Publish(%d bytes over a 1000-byte limit): got %v, want ErrEventTooLarge", len(ev.Data)+len(ev.ID), err)
		}
	}
	_, err := b.Publish(t.Context(), "bytes", sse.NewEvent("x"), &sse.Meta{Topics: []string{strings.Repeat("t", 1001)}})
	if !errors.Is(err, sse.ErrEventTooLarge) {
		t.Errorf("Publish(small event, 1 KB of metadata over a 1000-byte limit): got %v, want ErrEventTooLarge", err)
	}
	checkPruned(t, b, "bytes", ms, 3)
}

// ageLimit is MaxAge in the age subtest: long enough for the margins
// below to hold on a loaded machine.
const ageLimit = 2 * time.Second

func testLimitAge(t *testing.T, b sse.Broker) {
	old := publishN(t, b, "age", 3)
	time.Sleep(ageLimit / 2)
	fresh := publish(t, b, "age", sse.NewEvent("fresh"))
	ms := append(old, fresh)
	checkPruned(t, b, "age", ms, 4) // the old ones expire in ageLimit/2
	time.Sleep(ageLimit * 3 / 4)    // they expired; fresh has ageLimit/4 left
	checkPruned(t, b, "age", ms, 1)
}

func testGap(t *testing.T, b sse.Broker) {
	ms := publishN(t, b, "gap", 5)
	for _, id := range []string{
		"no-such-id",
		"0",
		"-1",
		"0-0",
		"1-0",
		"99999999999999999999999999",
		"18446744073709551615",
		"007",
		strings.Repeat("9", 1<<16),
		"a=1&b=2",
		"\xff\xfe",
	} {
		h := history(t, b, "gap", id)
		if !h.Gap || h.After != (sse.Position{}) || summary(h.Messages) != summary(ms) {
			t.Errorf("History(%.40q): got gap %v after %+v %s, want gap, zero, %s", id, h.Gap, h.After, summary(h.Messages), summary(ms))
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
	for _, after := range []uint64{ms[4].Seq + 1, ms[4].Seq + 1000, sse.Newest - 1} {
		if _, err := b.Subscribe(t.Context(), "gap", after, func(sse.Message) {}); !errors.Is(err, sse.ErrGap) {
			t.Errorf("Subscribe(%d, beyond the newest %d): got %v, want ErrGap", after, ms[4].Seq, err)
		}
	}
}

func testInvalidEvent(t *testing.T, b sse.Broker) {
	publish(t, b, "inv", sse.NewEvent("ok"))
	for _, ev := range []*sse.Event{
		{ID: "1\nevent: evil", Data: "x"},
		{Type: "a\rb", Data: "x"},
		{Data: "x", Retry: -1},
		nil,
	} {
		if _, err := b.Publish(t.Context(), "inv", ev, nil); !errors.Is(err, sse.ErrInvalidEvent) {
			t.Errorf("Publish(%+v): got %v, want ErrInvalidEvent", ev, err)
		}
	}
	if h := history(t, b, "inv", ""); len(h.Messages) != 1 {
		t.Errorf("History after refused events: got %d events, want 1", len(h.Messages))
	}
}

func testMeta(t *testing.T, b sse.Broker) {
	metas := []*sse.Meta{
		nil,
		{Private: true},
		{Topics: []string{"https://example.com/books/1", "", "a b/{c}", "é\n"}},
		{Topics: []string{"x"}, Private: true},
	}
	r := newRecorder()
	sub, err := b.Subscribe(t.Context(), "meta", sse.Newest, r.add)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var ms []sse.Message
	for i, meta := range metas {
		in := meta
		var keep *sse.Meta
		if meta != nil {
			c := *meta
			c.Topics = append([]string(nil), meta.Topics...)
			keep, in = meta, &c
		}
		m, err := b.Publish(t.Context(), "meta", sse.NewEvent(fmt.Sprint(i)), in)
		if err != nil {
			t.Fatal(err)
		}
		if in != nil && len(in.Topics) > 0 {
			in.Topics[0] = "changed after Publish"
		}
		if !reflect.DeepEqual(m.Meta, keep) {
			t.Errorf("Publish #%d: got Meta %+v, want %+v", i, m.Meta, keep)
		}
		ms = append(ms, m)
	}
	check := func(from string, got []sse.Message) {
		t.Helper()
		if len(got) != len(metas) {
			t.Fatalf("%s: got %d messages, want %d", from, len(got), len(metas))
		}
		for i, m := range got {
			if !reflect.DeepEqual(m.Meta, metas[i]) {
				t.Errorf("%s #%d: got Meta %+v, want %+v", from, i, m.Meta, metas[i])
			}
		}
	}
	check("History", history(t, b, "meta", "").Messages)
	check("History after the first", append([]sse.Message{ms[0]}, history(t, b, "meta", ms[0].Event.ID).Messages...))
	check("Subscribe(Newest)", r.wait(t, len(metas)))
	check("Subscribe(0)", collect(t, b, "meta", 0, len(metas)))
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
				m, err := b.Publish(context.Background(), "conc", sse.NewEvent(fmt.Sprintf("%d/%d", p, i)), nil)
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
	if h := history(t, b, "conc", ""); summary(h.Messages) != summary(all) {
		t.Errorf("History: got another order than the subscription's")
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

// testSlow holds a subscriber's callback while events are published:
// the broker may slow publishing or end the subscription, but never
// skips an event, and other subscribers get every one.
func testSlow(t *testing.T, b sse.Broker) {
	const events = 300
	gate := make(chan struct{})
	slow := newRecorder()
	slowSub, err := b.Subscribe(t.Context(), "slow", sse.Newest, func(m sse.Message) {
		<-gate
		slow.add(m)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer slowSub.Close()
	fast := newRecorder()
	fastSub, err := b.Subscribe(t.Context(), "slow", sse.Newest, fast.add)
	if err != nil {
		t.Fatal(err)
	}
	defer fastSub.Close()
	var ms []sse.Message
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range events {
			m, err := b.Publish(context.Background(), "slow", sse.NewEvent(fmt.Sprint(i)), nil)
			if err != nil {
				t.Errorf("Publish: got %v, want nil", err)
				return
			}
			ms = append(ms, m)
		}
	}()
	select {
	case <-done:
	case <-time.After(300 * time.Millisecond): // the broker waits on the callback
	}
	close(gate)
	<-done
	if len(ms) != events {
		t.FailNow()
	}
	if got := fast.wait(t, events); summary(got) != summary(ms) {
		t.Errorf("fast subscriber: got %d events, want all %d in order", len(got), events)
	}
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for len(slow.get()) < events {
		select {
		case <-slow.notify:
			continue
		case <-slowSub.Done():
		case <-deadline.C:
			t.Fatalf("slow subscriber: got %d of %d events, and its subscription did not end", len(slow.get()), events)
		}
		break
	}
	got := slow.get()
	if summary(got) != summary(ms[:len(got)]) {
		t.Errorf("slow subscriber: got %s, want a prefix of the published events, none skipped", summary(got))
	}
	if len(got) < events {
		if err := slowSub.Err(); err == nil || errors.Is(err, context.Canceled) {
			t.Errorf("slow subscriber ended after %d of %d events with %v, want the broker's reason", len(got), events, err)
		}
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
	witness := newRecorder()
	ws, err := b.Subscribe(t.Context(), "ends", sse.Newest, witness.add)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	settle(t, b, witness, "ends")
	if got := r.get(); len(got) != 1 {
		t.Errorf("after cancel: got %d events, want 1", len(got))
	}
	if err := sub.Close(); err != nil {
		t.Errorf("Close after end: got %v, want nil", err)
	}
	if _, err := b.Publish(ctx, "ends", sse.NewEvent("x"), nil); err == nil {
		t.Error("Publish with an ended context: got nil error, want one")
	}
}

// testCloseWhileSubscribed closes the broker while publishers run and
// callbacks are being called: every subscription ends with
// ErrBrokerClosed, and after Close nothing is fed.
func testCloseWhileSubscribed(t *testing.T, b sse.Broker) {
	const subs = 4
	var mu sync.Mutex
	closed := false
	late := 0
	var ss []sse.Subscription
	for i := range subs {
		sub, err := b.Subscribe(t.Context(), fmt.Sprint("cws", i%2), sse.Newest, func(sse.Message) {
			mu.Lock()
			if closed {
				late++
			}
			mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		ss = append(ss, sub)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := b.Publish(context.Background(), fmt.Sprint("cws", p), sse.NewEvent(fmt.Sprint(i)), nil); err != nil {
					if !errors.Is(err, sse.ErrBrokerClosed) {
						t.Errorf("Publish while closing: got %v, want nil or ErrBrokerClosed", err)
					}
					return
				}
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: got %v, want nil", err)
	}
	mu.Lock()
	closed = true
	mu.Unlock()
	for i, sub := range ss {
		select {
		case <-sub.Done():
		case <-time.After(waitTimeout):
			t.Fatalf("subscription %d still running after Close", i)
		}
	}
	close(stop)
	wg.Wait()
	for i, sub := range ss {
		if err := sub.Err(); !errors.Is(err, sse.ErrBrokerClosed) {
			t.Errorf("subscription %d Err: got %v, want ErrBrokerClosed", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if late != 0 {
		t.Errorf("callbacks after the subscriptions ended: got %d, want 0", late)
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
	if _, err := b.Publish(ctx, "close", sse.NewEvent("x"), nil); !errors.Is(err, sse.ErrBrokerClosed) {
		t.Errorf("Publish after Close: got %v, want ErrBrokerClosed", err)
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
