// Package sseprom exports the counters of an sse [sse.Hub] or
// [sse.Server] to Prometheus.
//
//	srv := &sse.Server{}
//	prometheus.MustRegister(sseprom.NewCollector("myapp", srv.Stats))
//
// The collector reads one snapshot of the counters per scrape; it adds
// no cost to publishing or delivering events.
package sseprom

import (
	"github.com/coregx/stream/sse"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector is a [prometheus.Collector] over the counters of a hub or
// server. Metrics are named <namespace>_sse_<name>:
//
//   - clients, topics, queued_bytes: gauges of the present state;
//   - broadcasts_total, delivered_total, replayed_total, dropped_total:
//     counters of events;
//   - disconnects_total{reason}: streams ended, by reason "slow"
//     (queue full), "budget" (queued bytes over the server's bound),
//     "shutdown" or "client" (the client left or a write failed).
type Collector struct {
	stats func() sse.HubStats

	clients, topics, queued                         *prometheus.Desc
	broadcasts, delivered, replayed, dropped, disco *prometheus.Desc
}

// NewCollector returns a collector reading stats, such as a Server's or
// a Hub's Stats method, at each scrape. namespace may be empty.
func NewCollector(namespace string, stats func() sse.HubStats) *Collector {
	name := func(n string) string { return prometheus.BuildFQName(namespace, "sse", n) }
	return &Collector{
		stats:      stats,
		clients:    prometheus.NewDesc(name("clients"), "Streams connected now.", nil, nil),
		topics:     prometheus.NewDesc(name("topics"), "Topics followed by a stream now.", nil, nil),
		queued:     prometheus.NewDesc(name("queued_bytes"), "Bytes queued for streams or being written now.", nil, nil),
		broadcasts: prometheus.NewDesc(name("broadcasts_total"), "Events broadcast or published.", nil, nil),
		delivered:  prometheus.NewDesc(name("delivered_total"), "Live events written to streams.", nil, nil),
		replayed:   prometheus.NewDesc(name("replayed_total"), "Events from history queued for resuming streams.", nil, nil),
		dropped:    prometheus.NewDesc(name("dropped_total"), "Events discarded by a slow-client policy.", nil, nil),
		disco:      prometheus.NewDesc(name("disconnects_total"), "Streams ended, by reason.", []string{"reason"}, nil),
	}
}

// Describe sends the descriptors of the metrics.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.clients, c.topics, c.queued, c.broadcasts, c.delivered, c.replayed, c.dropped, c.disco} {
		ch <- d
	}
}

// Collect sends the metrics of one snapshot of the counters.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.clients, float64(s.Clients))
	gauge(c.topics, float64(s.Topics))
	gauge(c.queued, float64(s.QueuedBytes))
	counter(c.broadcasts, s.Broadcasts)
	counter(c.delivered, s.Delivered)
	counter(c.replayed, s.Replayed)
	counter(c.dropped, s.Dropped)
	counter(c.disco, s.SlowDisconnects, "slow")
	counter(c.disco, s.BudgetDisconnects, "budget")
	counter(c.disco, s.ShutdownDisconnects, "shutdown")
	counter(c.disco, s.ClientDisconnects, "client")
}
