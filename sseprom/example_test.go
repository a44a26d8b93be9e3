package sseprom_test

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/coregx/stream/sse"
	"github.com/coregx/stream/sseprom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Mount the collector of a Hub on /metrics, beside the event stream,
// and time each broadcast.
func Example() {
	hub := sse.NewHub[string]()
	go hub.Run()
	defer hub.Close()

	metrics := sseprom.NewCollector(hub.Stats, &sseprom.CollectorOptions{
		Namespace:      "chat",
		PublishBuckets: sseprom.DefaultPublishBuckets,
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics)

	mux := http.NewServeMux()
	mux.Handle("GET /events", hub)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, msg := range []string{"hello", "world"} {
		start := time.Now()
		if err := hub.Broadcast(msg); err != nil {
			fmt.Println(err)
			return
		}
		metrics.ObservePublish(time.Since(start))
	}

	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "chat_sse_") && !strings.Contains(line, "_bucket") && !strings.Contains(line, "_sum") {
			fmt.Println(line)
		}
	}
	// Output:
	// chat_sse_connections 0
	// chat_sse_delivered_total 0
	// chat_sse_disconnects_total{reason="budget"} 0
	// chat_sse_disconnects_total{reason="client"} 0
	// chat_sse_disconnects_total{reason="shutdown"} 0
	// chat_sse_disconnects_total{reason="slow"} 0
	// chat_sse_dropped_total 0
	// chat_sse_publish_duration_seconds_count 2
	// chat_sse_published_total 2
	// chat_sse_queued_bytes 0
	// chat_sse_replayed_total 0
	// chat_sse_topics 0
}
