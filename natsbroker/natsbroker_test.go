package natsbroker_test

import (
	"context"
	"crypto/rand"
	"flag"
	"net"
	"os"
	"testing"
	"time"

	"github.com/coregx/stream/natsbroker"
	"github.com/coregx/stream/sse"
	"github.com/coregx/stream/sse/ssetest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const startNATS = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log"

var chaosEvents = flag.Int("chaos.events", 2000, "events in the cluster chaos run (the issue's figure: 20000)")

// embedded starts a NATS server with JetStream in the test process,
// keeping its store in dir, on port (-1: any).
func embedded(t testing.TB, dir string, port int) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("embedded NATS server not ready after 10s")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.Timeout(time.Second))
	if err != nil {
		t.Fatalf("connecting to NATS at %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// names returns a stream name and subject prefix of a test's own.
func names() (string, string) {
	r := rand.Text()[:10]
	return "SSETEST_" + r, "ssetest_" + r
}

func newBroker(t *testing.T, nc *nats.Conn, l sse.HistoryLimits, stream, subject string) *natsbroker.Broker {
	t.Helper()
	b, err := natsbroker.New(t.Context(), nc, &natsbroker.Options{Stream: stream, Subject: subject, Limits: l, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.Close()
		js, _ := jetstream.New(nc)
		js.DeleteStream(t.Context(), stream)
	})
	return b
}

func TestConformanceEmbedded(t *testing.T) {
	s := embedded(t, t.TempDir(), -1)
	nc := connect(t, s.ClientURL())
	ssetest.TestBroker(t, func(t *testing.T, l sse.HistoryLimits) sse.Broker {
		stream, subject := names()
		return newBroker(t, nc, l, stream, subject)
	})
}

// TestConformanceMachine runs the conformance suite against the NATS of
// NATS_URL, nats://127.0.0.1:4222 by default.
func TestConformanceMachine(t *testing.T) {
	url := natsURL()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("NATS at %s (NATS_URL) does not answer (%v); start it with:\n\t%s", url, err, startNATS)
	}
	t.Cleanup(nc.Close)
	ssetest.TestBroker(t, func(t *testing.T, l sse.HistoryLimits) sse.Broker {
		stream, subject := names()
		return newBroker(t, nc, l, stream, subject)
	})
}

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "~"},
		{"news", "news"},
		{"a.b c*>~", "a~2Eb~20c~2A~3E~7E"},
		{"é", "~C3~A9"},
	} {
		got := natsbroker.Escape(tc.in)
		if got != tc.want {
			t.Errorf("Escape(%q): got %q, want %q", tc.in, got, tc.want)
		}
		if back, err := natsbroker.Unescape(got); err != nil || back != tc.in {
			t.Errorf("Unescape(Escape(%q)): got %q, %v, want it back", tc.in, back, err)
		}
	}
	for _, bad := range []string{"a~2", "a~zz", "~~"} {
		if _, err := natsbroker.Unescape(bad); err == nil {
			t.Errorf("Unescape(%q): got nil error, want one", bad)
		}
	}
}

// TestOutage stops the embedded NATS server and starts it again on the
// same port and store.
func TestOutage(t *testing.T) {
	var ns *server.Server
	var dir string
	var port int
	ssetest.TestOutage(t, func(t *testing.T) sse.Broker {
		dir = t.TempDir()
		ns = embedded(t, dir, -1)
		port = ns.Addr().(*net.TCPAddr).Port
		b, err := natsbroker.New(t.Context(), connect(t, ns.ClientURL()), &natsbroker.Options{Stream: "OUTAGE", Subject: "outage"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}, func(*testing.T) {
		ns.Shutdown()
		ns.WaitForShutdown()
	}, func(t *testing.T) { ns = embedded(t, dir, port) })
}

// TestRestartedEmpty checks that after NATS lost its store, a client
// resuming from an ID it held gets a gap, not silence, and that the
// broker makes its stream again.
func TestRestartedEmpty(t *testing.T) {
	s := embedded(t, t.TempDir(), -1)
	port := s.Addr().(*net.TCPAddr).Port
	nc := connect(t, s.ClientURL())
	stream, subject := names()
	b, err := natsbroker.New(t.Context(), nc, &natsbroker.Options{Stream: stream, Subject: subject})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := t.Context()
	old, err := b.Publish(ctx, "t", sse.NewEvent("old"), nil)
	if err != nil {
		t.Fatal(err)
	}
	before, err := b.Subscribe(ctx, "t", sse.Newest, func(sse.Message) {})
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	s.Shutdown()
	s.WaitForShutdown()
	embedded(t, t.TempDir(), port)
	deadline := time.Now().Add(10 * time.Second)
	for !nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("not reconnected after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h, err := b.History(ctx, "t", old.Event.ID)
	if err != nil || !h.Gap || len(h.Messages) != 0 {
		t.Errorf("History(ID before the loss), nothing since: got %+v, %v, want a gap and nothing", h, err)
	}
	m, err := b.Publish(ctx, "t", sse.NewEvent("new"), nil)
	if err != nil {
		t.Fatalf("Publish after the loss: %v", err)
	}
	h, err = b.History(ctx, "t", old.Event.ID)
	if err != nil || !h.Gap || len(h.Messages) != 1 || h.Messages[0].Seq != m.Seq {
		t.Errorf("History(ID before the loss), one event since: got %+v, %v, want a gap and that event", h, err)
	}
	// Live delivery works on the new stream.
	got := make(chan sse.Message, 1)
	sub, err := b.Subscribe(ctx, "t", sse.Newest, func(m sse.Message) { got <- m })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	live, err := b.Publish(ctx, "t", sse.NewEvent("live"), nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.Seq != live.Seq || m.Event.Data != "live" {
			t.Errorf("live event: got %+v, want %+v", m, live)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no live event 10s after publishing on the new stream")
	}
}

// TestCluster runs three sse.Server nodes on loopback, each with its
// own connection and Broker on one embedded NATS.
func TestCluster(t *testing.T) {
	s := embedded(t, t.TempDir(), -1)
	stream, subject := names()
	unbounded := sse.HistoryLimits{MaxEvents: -1, MaxBytes: -1, MaxAge: -1}
	ssetest.TestCluster(t, func(t *testing.T) sse.Broker {
		nc := connect(t, s.ClientURL())
		b, err := natsbroker.New(t.Context(), nc, &natsbroker.Options{Stream: stream, Subject: subject, Limits: unbounded, Storage: jetstream.MemoryStorage})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}, &ssetest.ClusterOptions{Events: *chaosEvents})
}

// BenchmarkCluster is ssetest.BenchmarkCluster: three nodes, each with
// its own connection and Broker on one embedded NATS; -cluster.clients
// and -cluster.rate size it.
func BenchmarkCluster(b *testing.B) {
	s := embedded(b, b.TempDir(), -1)
	stream, subject := names()
	ssetest.BenchmarkCluster(b, func(tb testing.TB) sse.Broker {
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			tb.Fatal(err)
		}
		br, err := natsbroker.New(context.Background(), nc, &natsbroker.Options{Stream: stream, Subject: subject, Storage: jetstream.MemoryStorage})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { br.Close(); nc.Close() })
		return br
	}, *benchClients, *benchRate)
}

var (
	benchClients = flag.Int("cluster.clients", 100, "BenchmarkCluster: clients per node")
	benchRate    = flag.Int("cluster.rate", 1000, "BenchmarkCluster: events published per second")
)

// natsURL is NATS_URL, nats://127.0.0.1:4222 by default.
func natsURL() string {
	if u := os.Getenv("NATS_URL"); u != "" {
		return u
	}
	return nats.DefaultURL
}
