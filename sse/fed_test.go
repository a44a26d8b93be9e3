package sse

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coregx/stream/sse/internal/fanout"
)

// The tests of this file check how a resuming request waits for a
// node's live feed that lags behind the position it asks for (waitFed):
// under synctest, it is released at the very instant the feed brings
// that position, by the delivery itself, never by polling.

// heldBroker is a MemoryBroker whose live feeds the test holds back: the
// events published go to the history at once but reach the subscriptions
// only when the test calls release, as on a node whose broker lags.
type heldBroker struct {
	*MemoryBroker
	mu   sync.Mutex
	held []Message
	fn   func(Message) // the subscription's; one topic
}

func (b *heldBroker) Subscribe(ctx context.Context, topic string, after uint64, fn func(Message)) (Subscription, error) {
	b.mu.Lock()
	b.fn = fn
	b.mu.Unlock()
	return b.MemoryBroker.Subscribe(ctx, topic, after, func(m Message) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.held = append(b.held, m)
	})
}

// release feeds the subscription the n oldest events held back.
func (b *heldBroker) release(t *testing.T, n int) {
	t.Helper()
	b.mu.Lock()
	if n > len(b.held) {
		b.mu.Unlock()
		t.Fatalf("release(%d): only %d events held", n, len(b.held))
	}
	ms, fn := b.held[:n:n], b.fn
	b.held = b.held[n:]
	b.mu.Unlock()
	for _, m := range ms {
		fn(m)
	}
}

// fedWrite is one Write to a fedWriter, and the time it happened.
type fedWrite struct {
	at   time.Duration // since the writer's start
	data string
}

// fedWriter is a flushing ResponseWriter that records each write and
// when it happened.
type fedWriter struct {
	start  time.Time
	header http.Header
	mu     sync.Mutex
	writes []fedWrite
}

func newFedWriter() *fedWriter { return &fedWriter{start: time.Now(), header: http.Header{}} }

func (w *fedWriter) Header() http.Header              { return w.header }
func (w *fedWriter) WriteHeader(int)                  {}
func (w *fedWriter) Flush()                           {}
func (w *fedWriter) SetWriteDeadline(time.Time) error { return nil }
func (w *fedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, fedWrite{time.Since(w.start), string(p)})
	return len(p), nil
}

func (w *fedWriter) got() []fedWrite {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]fedWrite(nil), w.writes...)
}

// fedStream is a request served by s in its own goroutine.
type fedStream struct {
	w      *fedWriter
	cancel context.CancelFunc
	done   chan struct{}
	ended  time.Duration // when ServeHTTP returned, since w.start; read after done
}

// serveFed starts a request to s, resuming from lastID when it is not "".
func serveFed(t *testing.T, s *Server, lastID string) *fedStream {
	ctx, cancel := context.WithCancel(t.Context())
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	if lastID != "" {
		r.Header.Set("Last-Event-ID", lastID)
	}
	st := &fedStream{w: newFedWriter(), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(st.done)
		s.ServeHTTP(st.w, r)
		st.ended = time.Since(st.w.start)
	}()
	return st
}

func (st *fedStream) ended_() bool {
	select {
	case <-st.done:
		return true
	default:
		return false
	}
}

// fedWaiting returns how many requests of s wait for a feed.
func fedWaiting(s *Server) int { return s.core.Inspect().FedWaiters }

// newFedServer returns a Server on a heldBroker, whose log goes to the
// returned buffer (without times), inside the current synctest bubble.
func newFedServer(t *testing.T) (*Server, *heldBroker, *syncBuffer) {
	b := &heldBroker{MemoryBroker: NewMemoryBroker(HistoryLimits{})}
	log := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}))
	s := &Server{Broker: b, Options: Options{Heartbeat: -1, Logger: logger}}
	t.Cleanup(func() {
		s.Close()
		b.Close()
	})
	return s, b, log
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// publishHeld opens a live stream, so that s follows the topic from
// here, and publishes data: each event is in the history at once but
// held back from the feed.
func publishHeld(t *testing.T, s *Server, data ...string) {
	serveFed(t, s, "")
	synctest.Wait()
	for _, d := range data {
		if _, err := s.Publish(t.Context(), "", NewEvent(d)); err != nil {
			t.Fatalf("Publish(%q): %v", d, err)
		}
	}
}

// TestServerFedWakesAtDelivery checks that a request resuming from a
// position the feed has not reached waits for it, through deliveries
// that stay short of it, and is released at the instant of the delivery
// that reaches it: its replay is written at that same fake time, where
// a poll would have come later.
func TestServerFedWakesAtDelivery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, b, log := newFedServer(t)
		publishHeld(t, s, "a", "b", "c")
		st := serveFed(t, s, "2")
		synctest.Wait()
		if n := fedWaiting(s); n != 1 {
			t.Fatalf("got %d requests waiting for the feed, want 1", n)
		}

		time.Sleep(2 * time.Second)
		b.release(t, 1) // the feed reaches 1: still behind 2
		synctest.Wait()
		if n := fedWaiting(s); n != 1 {
			t.Fatalf("feed at 1: got %d requests waiting, want 1", n)
		}

		// Off the millisecond, where a 1ms poll would not fall.
		const at = 5*time.Second + 500*time.Microsecond
		time.Sleep(at - 2*time.Second)
		b.release(t, 2) // 2, then 3 at the same instant
		synctest.Wait()
		want := []fedWrite{{0, ": connected\n\n"}, {at, "id: 3\ndata: c\n\n"}}
		if got := st.w.got(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("got writes %v, want %v", got, want)
		}
		if n := fedWaiting(s); n != 0 {
			t.Errorf("after the feed caught up: got %d requests waiting, want 0", n)
		}
		if st.ended_() {
			t.Error("the stream ended, want it live")
		}
		// Live from now on.
		if _, err := s.Publish(t.Context(), "", NewEvent("d")); err != nil {
			t.Fatal(err)
		}
		b.release(t, 1)
		synctest.Wait()
		want = append(want, fedWrite{at, "id: 4\ndata: d\n\n"})
		if got := st.w.got(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("got writes %v, want %v", got, want)
		}
		if got := log.String(); got != "" {
			t.Errorf("got log %q, want none", got)
		}
	})
}

// TestServerFedWaitBound checks that a request waits for a feed that
// stays behind for exactly 10s, then ends with an error, leaving no
// waiter behind.
func TestServerFedWaitBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _, log := newFedServer(t)
		publishHeld(t, s, "a", "b")
		st := serveFed(t, s, "2")
		time.Sleep(maxFeedWait - time.Nanosecond)
		synctest.Wait()
		if st.ended_() {
			t.Fatalf("the stream ended %v before the bound", time.Nanosecond)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if !st.ended_() {
			t.Fatal("the stream is still open at the bound")
		}
		if st.ended != maxFeedWait {
			t.Errorf("the stream ended after %v, want %v", st.ended, maxFeedWait)
		}
		if got, want := st.w.got(), []fedWrite{{0, ": connected\n\n"}}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("got writes %v, want %v", got, want)
		}
		if n := fedWaiting(s); n != 0 {
			t.Errorf("got %d requests waiting, want 0", n)
		}
		const want = `level=ERROR msg="sse: reading history" err="sse: the live feed of topic \"\" stayed behind the client's position for 10s"` + "\n"
		if got := log.String(); got != want {
			t.Errorf("got log %q, want %q", got, want)
		}
	})
}

// TestServerFedWaitCanceled checks that a waiting request whose context
// ends is released at that instant, and drops only its own wait: another
// request on the topic still waits, and is released by the feed.
func TestServerFedWaitCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, b, log := newFedServer(t)
		publishHeld(t, s, "a", "b", "c")
		first := serveFed(t, s, "3")
		second := serveFed(t, s, "2")
		synctest.Wait()
		if n := fedWaiting(s); n != 2 {
			t.Fatalf("got %d requests waiting, want 2", n)
		}
		time.Sleep(4 * time.Second)
		first.cancel()
		synctest.Wait()
		if !first.ended_() || first.ended != 4*time.Second {
			t.Fatalf("canceled at 4s: ended %v (at %v), want ended at 4s", first.ended_(), first.ended)
		}
		if n := fedWaiting(s); n != 1 {
			t.Fatalf("after one cancel: got %d requests waiting, want 1", n)
		}
		const at = 5*time.Second + 500*time.Microsecond
		time.Sleep(at - 4*time.Second)
		b.release(t, 3)
		synctest.Wait()
		want := []fedWrite{{0, ": connected\n\n"}, {at, "id: 3\ndata: c\n\n"}}
		if got := second.w.got(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("second stream: got writes %v, want %v", got, want)
		}
		if n := fedWaiting(s); n != 0 {
			t.Errorf("got %d requests waiting, want 0", n)
		}
		if got := log.String(); got != "" {
			t.Errorf("got log %q, want none", got)
		}
	})
}

// bubbleGoroutines counts the goroutines of the calling goroutine's
// synctest bubble.
func bubbleGoroutines(t *testing.T) int {
	t.Helper()
	self := make([]byte, 1<<10)
	self = self[:runtime.Stack(self, false)]
	header, _, _ := strings.Cut(string(self), "\n")
	_, bubble, ok := strings.Cut(header, ", synctest bubble ")
	if !ok {
		t.Fatalf("no bubble in goroutine header %q", header)
	}
	bubble = strings.TrimSuffix(bubble, "]:")
	all := make([]byte, 1<<20)
	for {
		n := runtime.Stack(all, true)
		if n < len(all) {
			all = all[:n]
			break
		}
		all = make([]byte, 2*len(all))
	}
	n := 0
	for _, g := range strings.Split(string(all), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		if strings.HasSuffix(header, ", synctest bubble "+bubble+"]:") {
			n++
		}
	}
	return n
}

// TestServerFedWaitGoroutines checks that waiting requests cost no
// goroutine beyond their handlers', and leave none behind once released
// by the feed or by their end.
func TestServerFedWaitGoroutines(t *testing.T) {
	const waiters = 20
	synctest.Test(t, func(t *testing.T) {
		s, b, _ := newFedServer(t)
		publishHeld(t, s, "a", "b")
		synctest.Wait()
		base := bubbleGoroutines(t)
		var sts []*fedStream
		for i := range waiters {
			sts = append(sts, serveFed(t, s, fmt.Sprint(1+i%2)))
		}
		synctest.Wait()
		if got, want := bubbleGoroutines(t), base+waiters; got != want {
			t.Fatalf("with %d requests waiting: got %d goroutines, want %d (one per handler)", waiters, got, want)
		}
		if n := fedWaiting(s); n != waiters {
			t.Fatalf("got %d requests waiting, want %d", n, waiters)
		}
		b.release(t, 2)
		synctest.Wait()
		if n := fedWaiting(s); n != 0 {
			t.Fatalf("after the feed caught up: got %d requests waiting, want 0", n)
		}
		if got, want := bubbleGoroutines(t), base+waiters; got != want {
			t.Errorf("%d streams live: got %d goroutines, want %d", waiters, got, want)
		}
		for _, st := range sts {
			st.cancel()
		}
		synctest.Wait()
		if got := bubbleGoroutines(t); got != base {
			t.Errorf("streams ended: got %d goroutines, want %d", got, base)
		}
		// Waiting again, then ended by their context.
		if _, err := s.Publish(t.Context(), "", NewEvent("c")); err != nil {
			t.Fatal(err)
		}
		sts = sts[:0]
		for range waiters {
			sts = append(sts, serveFed(t, s, "3"))
		}
		synctest.Wait()
		if n := fedWaiting(s); n != waiters {
			t.Fatalf("got %d requests waiting, want %d", n, waiters)
		}
		for _, st := range sts {
			st.cancel()
		}
		synctest.Wait()
		if n := fedWaiting(s); n != 0 {
			t.Errorf("after their end: got %d requests waiting, want 0", n)
		}
		if got := bubbleGoroutines(t); got != base {
			t.Errorf("waiting streams ended: got %d goroutines, want %d", got, base)
		}
	})
}

// TestServerFedDeliverAllocs checks that the watch for waiting requests
// costs delivery no allocation: delivering an event allocates as much
// whether no request waits, one waits on another topic, or one waits on
// the topic for a position further on.
func TestServerFedDeliverAllocs(t *testing.T) {
	s := &Server{Options: Options{Heartbeat: -1}}
	s.init()
	defer s.Close()
	s.core.SetLive("t", fanout.Head{})
	seq := uint64(0)
	deliver := func() {
		seq++
		s.deliver(Message{Topic: "t", Seq: seq, Event: Event{ID: "x", Data: "x"}})
	}
	base := testing.AllocsPerRun(100, deliver)
	if base != 1 {
		t.Errorf("nobody waiting: got %v allocations per delivery, want 1 (the record the engine is handed)", base)
	}
	for _, topic := range []string{"other", "t"} {
		w := s.core.AwaitFed(topic, 1<<40)
		if a := testing.AllocsPerRun(100, deliver); a != base {
			t.Errorf("a request waiting on topic %q: got %v allocations per delivery, want %v as with none", topic, a, base)
		}
		if !s.core.CancelFed(topic, w) {
			t.Errorf("topic %q: the waiter was released, want it still waiting", topic)
		}
	}
}
