package sse_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// benchWriter is a ResponseWriter that counts the events written to it
// ("data: " lines) and, when stamps is set, records the delay between
// the Unix nanosecond time in each event's data and its write. When
// block is set, writes wait for it.
type benchWriter struct {
	header http.Header
	events atomic.Int64
	total  *atomic.Int64 // events written to all writers
	stamps bool
	block  chan struct{}

	mu   sync.Mutex
	lats []time.Duration
}

func newBenchWriter(total *atomic.Int64) *benchWriter {
	return &benchWriter{header: http.Header{}, total: total}
}

func (w *benchWriter) Header() http.Header { return w.header }
func (w *benchWriter) WriteHeader(int)     {}
func (w *benchWriter) Flush()              {}

var dataPrefix = []byte("data: ")

func (w *benchWriter) Write(p []byte) (int, error) {
	if w.block != nil {
		<-w.block
	}
	n := int64(bytes.Count(p, dataPrefix))
	if w.stamps && n > 0 {
		now := time.Now()
		rest := p
		for {
			i := bytes.Index(rest, dataPrefix)
			if i < 0 {
				break
			}
			rest = rest[i+len(dataPrefix):]
			j := bytes.IndexByte(rest, '\n')
			if ns, err := strconv.ParseInt(string(rest[:j]), 10, 64); err == nil {
				w.mu.Lock()
				w.lats = append(w.lats, now.Sub(time.Unix(0, ns)))
				w.mu.Unlock()
			}
		}
	}
	w.events.Add(n)
	if w.total != nil {
		w.total.Add(n)
	}
	return len(p), nil
}

// waitTotal spins until total reaches n.
func waitTotal(b *testing.B, total *atomic.Int64, n int64) {
	deadline := time.Now().Add(time.Minute)
	for spin := 0; total.Load() < n; spin++ {
		if time.Now().After(deadline) {
			b.Fatalf("delivered: got %d events, want %d", total.Load(), n)
		}
		if spin < 100 {
			runtime.Gosched()
		} else {
			time.Sleep(20 * time.Microsecond)
		}
	}
}

// BenchmarkHubBroadcast measures the broadcast hot path: one op is one
// Broadcast to every client, written by the pool. allocs/op does not grow
// with the number of clients: the event is encoded once and the same
// bytes are queued for all.
func BenchmarkHubBroadcast(b *testing.B) {
	for _, clients := range []int{1, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			hub := sse.NewHubWithOptions[string](&sse.Options{Heartbeat: -1})
			defer hub.Close()
			var total atomic.Int64
			for range clients {
				w := newBenchWriter(&total)
				r := httptest.NewRequest(http.MethodGet, "/", nil)
				conn, err := sse.UpgradeWithOptions(r.Context(), w, r, &sse.UpgradeOptions{Heartbeat: -1})
				if err != nil {
					b.Fatal(err)
				}
				defer conn.Close()
				hub.Register(conn)
			}
			// Warm up: each client's two queue slices are made once.
			for i := range 3 {
				hub.Broadcast("warm-up")
				waitTotal(b, &total, int64((i+1)*clients))
			}
			total.Store(0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if err := hub.Broadcast("hello, world"); err != nil {
					b.Fatal(err)
				}
				// Wait for each delivery, as when clients keep up; queues
				// then stay short and need no growing.
				waitTotal(b, &total, int64((i+1)*clients))
			}
			waitTotal(b, &total, int64(b.N*clients))
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*clients), "ns/delivery")
		})
	}
}

// serveBench runs s.ServeHTTP for w until the returned cancel is called.
func serveBench(s *sse.Server, w http.ResponseWriter, header ...string) (cancel func()) {
	ctx, stop := context.WithCancel(context.Background())
	done := serveIn(ctx, s, w, header...)
	return func() { stop(); <-done }
}

// BenchmarkServerFanout publishes to 10 000 clients of a Server with
// history on (the default MemoryBroker); one op is one Publish delivered
// to every client.
func BenchmarkServerFanout(b *testing.B) {
	const clients = 10000
	s := &sse.Server{Options: sse.Options{Heartbeat: -1}}
	defer s.Close()
	var total atomic.Int64
	for range clients {
		defer serveBench(s, newBenchWriter(&total))()
	}
	for s.Clients() < clients {
		time.Sleep(time.Millisecond)
	}
	ctx := context.Background()
	ev := sse.NewEvent("hello, world")
	for i := range 3 {
		s.Publish(ctx, "", ev)
		waitTotal(b, &total, int64((i+1)*clients))
	}
	total.Store(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.Publish(ctx, "", ev); err != nil {
			b.Fatal(err)
		}
		waitTotal(b, &total, int64((i+1)*clients))
	}
	waitTotal(b, &total, int64(b.N*clients))
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*clients), "ns/delivery")
}

// BenchmarkReplay replays 10 000 retained events to a client that
// reconnects with the ID of the first; one op is one whole replay.
func BenchmarkReplay(b *testing.B) {
	const events = 10000
	broker := sse.NewMemoryBroker(sse.HistoryLimits{MaxEvents: events + 1, MaxBytes: -1})
	defer broker.Close()
	s := &sse.Server{Broker: broker, Options: sse.Options{Heartbeat: -1}}
	defer s.Close()
	ctx := context.Background()
	first, _ := s.Publish(ctx, "", sse.NewEvent("first"))
	for i := range events {
		s.Publish(ctx, "", sse.NewEvent(fmt.Sprintf("event %d with some data", i)))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		var total atomic.Int64
		stop := serveBench(s, newBenchWriter(&total), "Last-Event-ID", first)
		waitTotal(b, &total, events)
		stop()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
	if got := s.Stats().Replayed; got != uint64(b.N*events) {
		b.Fatalf("Replayed: got %d, want %d", got, b.N*events)
	}
}

// BenchmarkStuckClients measures the delivery latency (publish to write)
// of 1000 clients, without and with 10 clients that never read. One op is
// one Publish and the wait until every reading client has it; p50 and p99
// are over all deliveries.
func BenchmarkStuckClients(b *testing.B) {
	const clients = 1000
	for _, stuck := range []int{0, 10, 500} {
		b.Run(fmt.Sprintf("stuck=%d", stuck), func(b *testing.B) {
			s := &sse.Server{Options: sse.Options{Heartbeat: -1, QueueSize: 64}}
			var total atomic.Int64
			ws := make([]*benchWriter, clients)
			release := make(chan struct{})
			for i := range ws {
				ws[i] = newBenchWriter(&total)
				ws[i].stamps = true
				if i < stuck {
					ws[i].total = nil
				}
				defer serveBench(s, ws[i])()
			}
			defer s.Close()
			defer close(release)
			for s.Clients() < clients {
				time.Sleep(time.Millisecond)
			}
			// The stuck clients block from their next write on.
			for _, w := range ws[:stuck] {
				w.block = release
			}
			waitTotal(b, &total, 0)
			ctx := context.Background()
			b.ResetTimer()
			var slowest time.Duration
			for i := range b.N {
				start := time.Now()
				ev := sse.NewEvent(strconv.FormatInt(start.UnixNano(), 10))
				if _, err := s.Publish(ctx, "", ev); err != nil {
					b.Fatal(err)
				}
				slowest = max(slowest, time.Since(start))
				waitTotal(b, &total, int64((i+1)*(clients-stuck)))
			}
			b.StopTimer()
			var lats []time.Duration
			for _, w := range ws[stuck:] {
				w.mu.Lock()
				lats = append(lats, w.lats...)
				w.mu.Unlock()
			}
			slices.Sort(lats)
			if len(lats) > 0 {
				b.ReportMetric(float64(lats[len(lats)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds()), "p99-µs")
			}
			b.ReportMetric(float64(slowest.Microseconds()), "max-publish-µs")
			if st := s.Stats(); b.N > 64 && st.SlowDisconnects != uint64(stuck) {
				b.Errorf("SlowDisconnects: got %d, want %d", st.SlowDisconnects, stuck)
			}
		})
	}
}
