package main

import (
	"net/http"
	"strconv"
	"time"

	"github.com/coregx/stream/cmd/ssehub/internal/mercure"
	"github.com/coregx/stream/sseprom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics holds the hub's Prometheus registry: the engine's counters
// (sseprom), publish requests by status with their latency, and the Go
// runtime's and process's collectors.
type metrics struct {
	reg     *prometheus.Registry
	publish *prometheus.HistogramVec
	handler http.Handler
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.publish = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "ssehub",
		Name:      "publish_duration_seconds",
		Help:      "Time to answer a publish request, by status code.",
		Buckets:   []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	}, []string{"code"})
	m.reg.MustRegister(m.publish, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

// attach adds the engine's counters.
func (m *metrics) attach(e *mercure.Engine) {
	m.reg.MustRegister(sseprom.NewCollector(e.Stats, &sseprom.CollectorOptions{Namespace: "ssehub"}))
}

// observePublish records one publish request.
func (m *metrics) observePublish(code int, d time.Duration) {
	m.publish.WithLabelValues(strconv.Itoa(code)).Observe(d.Seconds())
}
