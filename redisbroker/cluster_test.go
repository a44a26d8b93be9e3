package redisbroker_test

import (
	"flag"
	"testing"

	"github.com/coregx/stream/redisbroker"
	"github.com/coregx/stream/sse"
	"github.com/coregx/stream/sse/ssetest"
)

var chaosEvents = flag.Int("chaos.events", 2000, "events in the cluster chaos run (the issue's figure: 20000)")

// TestCluster runs three sse.Server nodes on loopback, each with its
// own Broker on one Redis.
func TestCluster(t *testing.T) {
	rdb := client(t, "")
	p := prefix(t)
	unbounded := sse.HistoryLimits{MaxEvents: -1, MaxBytes: -1, MaxAge: -1}
	ssetest.TestCluster(t, func(t *testing.T) sse.Broker {
		b := redisbroker.New(rdb, &redisbroker.Options{Prefix: p, Limits: unbounded})
		t.Cleanup(func() { b.Close() })
		return b
	}, &ssetest.ClusterOptions{Events: *chaosEvents})
}

// BenchmarkCluster is ssetest.BenchmarkCluster: three nodes, each with
// its own Broker on one Redis; -cluster.clients and -cluster.rate size it.
func BenchmarkCluster(b *testing.B) {
	rdb := client(b, "")
	p := prefix(b)
	ssetest.BenchmarkCluster(b, func(tb testing.TB) sse.Broker {
		br := redisbroker.New(rdb, &redisbroker.Options{Prefix: p})
		tb.Cleanup(func() { br.Close() })
		return br
	}, *benchClients, *benchRate)
}

var (
	benchClients = flag.Int("cluster.clients", 100, "BenchmarkCluster: clients per node")
	benchRate    = flag.Int("cluster.rate", 1000, "BenchmarkCluster: events published per second")
)
