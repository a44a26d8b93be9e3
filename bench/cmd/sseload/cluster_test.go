package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterTiny runs the cluster scenario at a tiny size for each
// broker, every node in its own process as in a real run, against the
// machine's Redis and NATS (a missing one fails the test with the
// command that starts it), and checks exact counts: every client got
// every event once, in order; every node read each event from its broker
// exactly once, over one subscription; and the run left nothing behind
// in Redis or NATS.
func TestClusterTiny(t *testing.T) {
	const clients, events, rate = 9, 20, 40
	cfg, err := parseFlags([]string{"-scenario=cluster", fmt.Sprintf("-clients=%d", clients), fmt.Sprintf("-events=%d", events),
		fmt.Sprintf("-rates=%d", rate), "-latency-duration=500ms", "-timeout=60s"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	latencyEvents := rate / 2
	var results []*clusterResult
	for _, broker := range allBrokers {
		t.Run(broker, func(t *testing.T) {
			r := clusterOnce(t.Context(), cfg, broker, clients, events, t.Logf)
			results = append(results, r)
			if r.err != nil {
				t.Fatalf("run failed: %v", r.err)
			}
			wantNodes := []int{3, 3, 3}
			if broker == brokerMemory {
				wantNodes = []int{9}
			}
			if !slices.Equal(r.perNode, wantNodes) {
				t.Errorf("clients per node: got %v, want %v", r.perNode, wantNodes)
			}
			checkClusterRun(t, broker, "throughput", r.tput, clients, events)
			lm := r.latency[rate]
			checkClusterRun(t, broker, "latency", lm, clients, latencyEvents)
			wantLocal, wantRemote := 3*latencyEvents, 6*latencyEvents
			if broker == brokerMemory {
				wantLocal, wantRemote = 9*latencyEvents, 0
			}
			if lm.local.n != wantLocal || lm.remote.n != wantRemote {
				t.Errorf("latency samples: got %d local and %d remote, want %d and %d", lm.local.n, lm.remote.n, wantLocal, wantRemote)
			}
			if lm.local.p50 <= 0 || lm.local.p99 < lm.local.p50 || lm.local.p99 > 10*time.Second {
				t.Errorf("local latency: got p50 %v p99 %v, want 0 < p50 <= p99 < 10s", lm.local.p50, lm.local.p99)
			}
			if wantRemote > 0 && (lm.remote.p50 <= 0 || lm.remote.p99 < lm.remote.p50 || lm.remote.p99 > 10*time.Second) {
				t.Errorf("remote latency: got p50 %v p99 %v, want 0 < p50 <= p99 < 10s", lm.remote.p50, lm.remote.p99)
			}
			checkLeftovers(t, broker, r.run)
		})
	}

	var out bytes.Buffer
	writeClusterReport(&out, cfg, results, time.Second, 0)
	report := out.String()
	for _, want := range []string{
		"| | memory, 1 node | Redis, 3 nodes | NATS JetStream, 3 nodes |",
		"| clients per node | 9 | 3 / 3 / 3 | 3 / 3 / 3 |",
		"| throughput: clients with every event once, in order; lost / dup | 9/9; 0 / 0 | 9/9; 0 / 0 | 9/9; 0 / 0 |",
		"| @40 ev/s: clients with every event once, in order; lost / dup | 9/9; 0 / 0 | 9/9; 0 / 0 | 9/9; 0 / 0 |",
		"| @40 ev/s: broker entries read per event, per node | fed 1.00; Subscribe calls 1 | XREAD entries 1.00 / 1.00 / 1.00; XREAD calls ",
		"; Subscribe calls 1 / 1 / 1 | consumer deliveries 1.00 / 1.00 / 1.00 (3 consumers); Subscribe calls 1 / 1 / 1 |",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "error") || strings.Contains(report, "failed") {
		t.Errorf("report has an error cell:\n%s", report)
	}
	charts, order := clusterCharts(cfg, results)
	if !slices.Equal(order, []string{"cluster-p99.svg"}) {
		t.Fatalf("charts: got %v, want [cluster-p99.svg]", order)
	}
	s := parseSVG(t, charts["cluster-p99.svg"])
	if s.series["local p99"] != 3 || s.series["remote p99"] != 2 {
		t.Errorf("chart bars: got %d local and %d remote, want 3 and 2 (memory has no remote clients)", s.series["local p99"], s.series["remote p99"])
	}
}

// checkClusterRun checks one run: every client with every event once, in
// order, and each node fed every event once by one subscription, with
// the broker's own count agreeing.
func checkClusterRun(t *testing.T, broker, name string, cm clusterMeasurement, clients, events int) {
	t.Helper()
	m := cm.m
	if m.err != nil {
		t.Fatalf("%s: %v", name, m.err)
	}
	if m.rr.clients != clients || m.rr.delivered != int64(clients*events) || m.rr.complete != clients ||
		m.rr.lost != 0 || m.rr.dups != 0 || m.rr.late != 0 || m.rr.stray != 0 || m.rr.dropped != 0 {
		t.Errorf("%s: got %d clients, %d delivered, %d complete, %d lost, %d duplicates, %d late, %d stray, %d dropped; want %d clients, %d delivered, all complete, nothing else",
			name, m.rr.clients, m.rr.delivered, m.rr.complete, m.rr.lost, m.rr.dups, m.rr.late, m.rr.stray, m.rr.dropped, clients, clients*events)
	}
	if m.publishErrs != 0 || m.stalled {
		t.Errorf("%s: %d publish errors (%s), stalled %v", name, m.publishErrs, m.publishErr, m.stalled)
	}
	wantNodes := clusterNodes
	if broker == brokerMemory {
		wantNodes = 1
	}
	if len(cm.nodes) != wantNodes {
		t.Fatalf("%s: got counts of %d nodes, want %d", name, len(cm.nodes), wantNodes)
	}
	for i, d := range cm.nodes {
		c := d.counts
		if c.Subscribes != 1 || c.Fed != int64(events) {
			t.Errorf("%s: node %d: got %d Subscribe calls and %d messages fed, want 1 and %d", name, i+1, c.Subscribes, c.Fed, events)
		}
		if broker == brokerRedis && (c.ReadEntries != int64(events) || c.ReadCalls < 1 || c.ReadCalls > int64(events)+2) {
			t.Errorf("%s: node %d: got %d entries from %d XREAD calls, want %d entries from 1..%d calls", name, i+1, c.ReadEntries, c.ReadCalls, events, events+2)
		}
		if broker != brokerRedis && (c.ReadEntries != -1 || c.ReadCalls != -1) {
			t.Errorf("%s: node %d: got XREAD counts %d/%d, want -1 (not Redis)", name, i+1, c.ReadEntries, c.ReadCalls)
		}
	}
	if broker == brokerNATS {
		if want := []int64{int64(events), int64(events), int64(events)}; !slices.Equal(cm.consumers, want) {
			t.Errorf("%s: consumer deliveries: got %v, want %v (one consumer per node, each event once)", name, cm.consumers, want)
		}
	} else if cm.consumers != nil {
		t.Errorf("%s: got consumer counts %v without NATS, want none", name, cm.consumers)
	}
}

// checkLeftovers fails if the run left keys in Redis or a stream in NATS.
func checkLeftovers(t *testing.T, broker, run string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	switch broker {
	case brokerRedis:
		rdb, err := dialRedis(ctx, defaultRedisURL, "sseload-test")
		if err != nil {
			t.Fatal(err)
		}
		defer rdb.Close()
		keys, _, err := rdb.Scan(ctx, 0, namesFor(run).redisPrefix+"*", 1000).Result()
		if err != nil || len(keys) != 0 {
			t.Errorf("redis keys left behind: got %q (%v), want none", keys, err)
		}
	case brokerNATS:
		nc, err := dialNATS(ctx, defaultNATSURL, "sseload-test")
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Stream(ctx, namesFor(run).natsStream); err != jetstream.ErrStreamNotFound {
			t.Errorf("stream %s after the run: got %v, want %v", namesFor(run).natsStream, err, jetstream.ErrStreamNotFound)
		}
	}
}

func TestClusterFlagValidation(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in the error message
	}{
		{"unknown broker", []string{"-scenario=cluster", "-brokers=memory,kafka"}, `-brokers: unknown broker "kafka"`},
		{"impls", []string{"-scenario=cluster", "-impls=stream"}, "-impls: -scenario cluster compares brokers: use -brokers"},
		{"too many clients", []string{"-scenario=cluster", "-clients=10001"}, "-clients: 10001 is out of range: must be between 1 and 10000"},
		{"target", []string{"-scenario=cluster", "-target=127.0.0.1:8080"}, "-target: -scenario cluster starts its own nodes"},
		{"remote redis", []string{"-scenario=cluster", "-redis-url=redis://10.0.0.1:6379"}, "-redis-url: 10.0.0.1 is not a loopback address"},
		{"redis url scheme", []string{"-scenario=cluster", "-redis-url=127.0.0.1:6379"}, `-redis-url: "127.0.0.1:6379" is not redis://host:port`},
		{"remote nats", []string{"-scenario=cluster", "-nats-url=nats://example.com:4222"}, `-nats-url: "example.com" is not a loopback address`},
		{"node broker", []string{"-cluster-node=kafka", "-cluster-run=x"}, `-cluster-node: unknown broker "kafka"`},
		{"node run name", []string{"-cluster-node=redis", "-cluster-run=a.b"}, `-cluster-run: "a.b" is not a run name`},
		{"node listen", []string{"-cluster-node=memory", "-cluster-run=x", "-listen=0.0.0.0:0"}, "-listen: 0.0.0.0 is not a loopback address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFlags(tc.args, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseFlags(%q): got error %v, want one containing %q", tc.args, err, tc.want)
			}
		})
	}
}

func TestClusterFlagDefaults(t *testing.T) {
	cfg, err := parseFlags([]string{"-scenario=cluster"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.cluster.brokers, allBrokers) || !slices.Equal(cfg.clients, []int{300, 3000}) || !slices.Equal(cfg.rates, []int{100}) {
		t.Errorf("defaults: got brokers %v, clients %v, rates %v; want %v, [300 3000], [100]", cfg.cluster.brokers, cfg.clients, cfg.rates, allBrokers)
	}
	if cfg.cluster.redisURL != defaultRedisURL || cfg.cluster.natsURL != defaultNATSURL {
		t.Errorf("urls: got %q and %q, want %q and %q", cfg.cluster.redisURL, cfg.cluster.natsURL, defaultRedisURL, defaultNATSURL)
	}
}

// TestClusterMissingBroker checks that a broker that cannot be reached
// is an error naming the command that starts the machine's.
func TestClusterMissingBroker(t *testing.T) {
	tests := []struct {
		name string
		ping func(context.Context) error
		want string
	}{
		{"redis", func(ctx context.Context) error { return pingRedis(ctx, "redis://127.0.0.1:1") }, "start it with: " + startRedis},
		{"nats", func(ctx context.Context) error { return pingNATS(ctx, "nats://127.0.0.1:1") }, "start it with: " + startNATS},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.ping(t.Context())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
