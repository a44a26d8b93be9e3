// Package sseprom exports the statistics of an [sse.Hub] or [sse.Server]
// to Prometheus.
//
// It lives in its own module, so that the sse package keeps no
// dependencies; it uses only sse's public API.
//
// # Collector
//
// [NewCollector] takes a function returning a [Stats] snapshot, usually
// the Stats method of a Hub or a Server, and returns a
// [prometheus.Collector] that calls it once per scrape:
//
//	metrics := sseprom.NewCollector(hub.Stats, nil)
//	prometheus.MustRegister(metrics)
//	http.Handle("GET /metrics", promhttp.Handler())
//
// Gauges give the state now: sse_connections, sse_topics and
// sse_queued_bytes. Counters only grow: sse_published_total,
// sse_delivered_total, sse_replayed_total, sse_dropped_total and
// sse_disconnects_total, whose reason label is one of [ReasonSlow],
// [ReasonBudget], [ReasonShutdown] and [ReasonClient].
//
// [CollectorOptions] sets a namespace in front of every name
// (app_sse_connections) and constant labels, so that several hubs in one
// process can share a registry.
//
// # Publish latency
//
// With [CollectorOptions.PublishBuckets] set, the collector also exports
// the sse_publish_duration_seconds histogram, holding what the
// application passes to [Collector.ObservePublish]: time each
// Hub.Broadcast or Server.Publish call and report it.
package sseprom
