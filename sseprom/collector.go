package sseprom

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// subsystem is the middle part of every metric name: namespace_sse_name.
const subsystem = "sse"

// Disconnect reasons, the values of the reason label of
// sse_disconnects_total.
const (
	ReasonSlow     = "slow"     // the client's queue was full
	ReasonBudget   = "budget"   // the bytes queued for all clients passed the budget
	ReasonShutdown = "shutdown" // the hub or server was closed or shut down
	ReasonClient   = "client"   // the stream ended on its own: client gone, write failed, Conn closed
)

// DefaultPublishBuckets are upper bounds, in seconds, suited to
// [CollectorOptions.PublishBuckets]: 50 µs doubling to about 1.6 s.
var DefaultPublishBuckets = prometheus.ExponentialBuckets(50e-6, 2, 16)

// CollectorOptions configures a [Collector]. The zero value, like a nil
// *CollectorOptions, gives the defaults.
type CollectorOptions struct {
	// Namespace prefixes every metric name: "app" gives app_sse_connections.
	// The default, "", gives sse_connections.
	Namespace string

	// ConstLabels are added to every metric, for example to tell several
	// hubs in one process apart. The default is none.
	ConstLabels prometheus.Labels

	// PublishBuckets, when set, adds the sse_publish_duration_seconds
	// histogram with these upper bounds in seconds, fed by
	// [Collector.ObservePublish]; [DefaultPublishBuckets] suits most
	// uses. The default (nil) exports no histogram, and ObservePublish
	// does nothing.
	PublishBuckets []float64
}

// Collector is a [prometheus.Collector] exporting the statistics of an
// [sse.Hub] or [sse.Server]. On every scrape it calls the stats function
// it was made with, once, and exports that snapshot:
//
//	sse_connections                 gauge    streams registered now
//	sse_topics                      gauge    topics followed by a stream now (Server only)
//	sse_queued_bytes                gauge    bytes queued or being written now
//	sse_published_total             counter  events broadcast or published
//	sse_delivered_total             counter  live events written to streams
//	sse_replayed_total              counter  events from history queued for resuming streams
//	sse_dropped_total               counter  events discarded by a slow-client policy
//	sse_disconnects_total{reason}   counter  streams ended, by reason: slow, budget, shutdown, client
//	sse_publish_duration_seconds    histogram  what ObservePublish was given, if asked for
//
// Register it with a [prometheus.Registerer] and serve the registry
// with promhttp. All methods are safe for concurrent use.
type Collector struct {
	stats func() Stats

	connections, topics, queued                     *prometheus.Desc
	published, delivered, replayed, dropped, discon *prometheus.Desc
	publishDuration                                 prometheus.Histogram // nil: none
}

// NewCollector returns a collector exporting what stats returns, such as
// hub.Stats or server.Stats. A nil opts gives the defaults. It panics if
// stats is nil.
func NewCollector(stats func() Stats, opts *CollectorOptions) *Collector {
	if stats == nil {
		panic("sseprom: NewCollector: nil stats function")
	}
	var o CollectorOptions
	if opts != nil {
		o = *opts
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(o.Namespace, subsystem, name), help, labels, o.ConstLabels)
	}
	c := &Collector{
		stats:       stats,
		connections: desc("connections", "Event streams registered now."),
		topics:      desc("topics", "Topics followed by at least one stream now (Server only)."),
		queued:      desc("queued_bytes", "Bytes queued for streams or being written now."),
		published:   desc("published_total", "Events broadcast or published."),
		delivered:   desc("delivered_total", "Live events written to streams."),
		replayed:    desc("replayed_total", "Events from history queued for resuming streams."),
		dropped:     desc("dropped_total", "Events discarded by a slow-client policy."),
		discon:      desc("disconnects_total", "Streams ended, by reason: slow (queue full), budget (total queued bytes), shutdown, client (gone, write failed or closed).", "reason"),
	}
	if o.PublishBuckets != nil {
		c.publishDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace:   o.Namespace,
			Subsystem:   subsystem,
			Name:        "publish_duration_seconds",
			Help:        "Time publish calls took, as observed by the application.",
			ConstLabels: o.ConstLabels,
			Buckets:     o.PublishBuckets,
		})
	}
	return c
}

// Describe sends the descriptors of every metric c exports.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.connections, c.topics, c.queued,
		c.published, c.delivered, c.replayed, c.dropped, c.discon} {
		ch <- d
	}
	if c.publishDuration != nil {
		c.publishDuration.Describe(ch)
	}
}

// Collect calls the stats function once and sends its snapshot.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.connections, float64(s.Clients))
	gauge(c.topics, float64(s.Topics))
	gauge(c.queued, float64(s.QueuedBytes))
	counter(c.published, s.Broadcasts)
	counter(c.delivered, s.Delivered)
	counter(c.replayed, s.Replayed)
	counter(c.dropped, s.Dropped)
	counter(c.discon, s.SlowDisconnects, ReasonSlow)
	counter(c.discon, s.BudgetDisconnects, ReasonBudget)
	counter(c.discon, s.ShutdownDisconnects, ReasonShutdown)
	counter(c.discon, s.ClientDisconnects, ReasonClient)
	if c.publishDuration != nil {
		c.publishDuration.Collect(ch)
	}
}

// ObservePublish records that one publish call took d, in the
// sse_publish_duration_seconds histogram: the application times its
// calls to Hub.Broadcast or Server.Publish and reports them here. It does
// nothing unless [CollectorOptions.PublishBuckets] was set.
func (c *Collector) ObservePublish(d time.Duration) {
	if c.publishDuration != nil {
		c.publishDuration.Observe(d.Seconds())
	}
}
