package sseprom_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
	"github.com/coregx/stream/sseprom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// snapshot has a distinct value in every field, so a field exported
// under the wrong name shows.
var snapshot = sseprom.Stats{
	Clients:             3,
	Topics:              2,
	Broadcasts:          10,
	Delivered:           25,
	Replayed:            4,
	Dropped:             6,
	QueuedBytes:         512,
	SlowDisconnects:     7,
	BudgetDisconnects:   8,
	ShutdownDisconnects: 9,
	ClientDisconnects:   11,
}

const snapshotText = `
# HELP PREFIX_connections Event streams registered now.
# TYPE PREFIX_connections gauge
PREFIX_connections{LABELS} 3
# HELP PREFIX_delivered_total Live events written to streams.
# TYPE PREFIX_delivered_total counter
PREFIX_delivered_total{LABELS} 25
# HELP PREFIX_disconnects_total Streams ended, by reason: slow (queue full), budget (total queued bytes), shutdown, client (gone, write failed or closed).
# TYPE PREFIX_disconnects_total counter
PREFIX_disconnects_total{LABELSreason="budget"} 8
PREFIX_disconnects_total{LABELSreason="client"} 11
PREFIX_disconnects_total{LABELSreason="shutdown"} 9
PREFIX_disconnects_total{LABELSreason="slow"} 7
# HELP PREFIX_dropped_total Events discarded by a slow-client policy.
# TYPE PREFIX_dropped_total counter
PREFIX_dropped_total{LABELS} 6
# HELP PREFIX_published_total Events broadcast or published.
# TYPE PREFIX_published_total counter
PREFIX_published_total{LABELS} 10
# HELP PREFIX_queued_bytes Bytes queued for streams or being written now.
# TYPE PREFIX_queued_bytes gauge
PREFIX_queued_bytes{LABELS} 512
# HELP PREFIX_replayed_total Events from history queued for resuming streams.
# TYPE PREFIX_replayed_total counter
PREFIX_replayed_total{LABELS} 4
# HELP PREFIX_topics Topics followed by at least one stream now (Server only).
# TYPE PREFIX_topics gauge
PREFIX_topics{LABELS} 2
`

// expected fills snapshotText in for a name prefix and the const labels
// as they are printed (each followed by a comma).
func expected(prefix, labels string) string {
	s := strings.ReplaceAll(snapshotText, "PREFIX", prefix)
	s = strings.ReplaceAll(s, "{LABELS}", "{"+strings.TrimSuffix(labels, ",")+"}")
	s = strings.ReplaceAll(s, "{}", "")
	return strings.ReplaceAll(s, "LABELS", labels)
}

var statNames = []string{"connections", "topics", "queued_bytes", "published_total", "delivered_total",
	"replayed_total", "dropped_total", "disconnects_total"}

func names(prefix string) []string {
	out := make([]string, len(statNames))
	for i, n := range statNames {
		out[i] = prefix + "_" + n
	}
	return out
}

func TestCollectorExposition(t *testing.T) {
	tests := []struct {
		name   string
		opts   *sseprom.CollectorOptions
		prefix string
		labels string
	}{
		{"nil options", nil, "sse", ""},
		{"zero options", &sseprom.CollectorOptions{}, "sse", ""},
		{"namespace", &sseprom.CollectorOptions{Namespace: "app"}, "app_sse", ""},
		{"namespace and const labels", &sseprom.CollectorOptions{Namespace: "app",
			ConstLabels: prometheus.Labels{"hub": "chat", "az": "b"}}, "app_sse", `az="b",hub="chat",`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sseprom.NewCollector(func() sseprom.Stats { return snapshot }, tt.opts)
			want := expected(tt.prefix, tt.labels)
			if err := testutil.CollectAndCompare(c, strings.NewReader(want), names(tt.prefix)...); err != nil {
				t.Errorf("exposition differs from\n%s\n%v", want, err)
			}
		})
	}
}

func TestCollectorCallsStatsOncePerScrape(t *testing.T) {
	calls := 0
	c := sseprom.NewCollector(func() sseprom.Stats { calls++; return snapshot }, nil)
	if got, want := testutil.CollectAndCount(c), 11; got != want {
		t.Errorf("metrics per scrape: got %d, want %d", got, want)
	}
	if calls != 1 {
		t.Errorf("stats calls per scrape: got %d, want 1", calls)
	}
}

func TestCollectorPublishHistogram(t *testing.T) {
	c := sseprom.NewCollector(func() sseprom.Stats { return sseprom.Stats{} },
		&sseprom.CollectorOptions{PublishBuckets: []float64{0.001, 0.01}})
	for _, d := range []time.Duration{500 * time.Microsecond, 2 * time.Millisecond, 3 * time.Millisecond, time.Second} {
		c.ObservePublish(d)
	}
	const want = `
# HELP sse_publish_duration_seconds Time publish calls took, as observed by the application.
# TYPE sse_publish_duration_seconds histogram
sse_publish_duration_seconds_bucket{le="0.001"} 1
sse_publish_duration_seconds_bucket{le="0.01"} 3
sse_publish_duration_seconds_bucket{le="+Inf"} 4
sse_publish_duration_seconds_sum 1.0055
sse_publish_duration_seconds_count 4
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "sse_publish_duration_seconds"); err != nil {
		t.Error(err)
	}
	problems, err := testutil.CollectAndLint(c, "sse_publish_duration_seconds")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestCollectorNoHistogram checks that without PublishBuckets there is
// no histogram and ObservePublish does nothing.
func TestCollectorNoHistogram(t *testing.T) {
	c := sseprom.NewCollector(func() sseprom.Stats { return snapshot }, &sseprom.CollectorOptions{Namespace: "app"})
	c.ObservePublish(time.Millisecond)
	if got := testutil.CollectAndCount(c, "app_sse_publish_duration_seconds"); got != 0 {
		t.Errorf("histograms: got %d, want 0", got)
	}
}

// TestCollectorRegistry registers the collector with a pedantic registry,
// which checks what Collect sends against what Describe announced, and
// lints the metric names and help texts.
func TestCollectorRegistry(t *testing.T) {
	c := sseprom.NewCollector(func() sseprom.Stats { return snapshot },
		&sseprom.CollectorOptions{ConstLabels: prometheus.Labels{"hub": "a"}})
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	if got, want := len(mfs), 8; got != want {
		t.Errorf("metric families: got %d, want %d", got, want)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// A second collector with other const labels can share the registry.
	other := sseprom.NewCollector(func() sseprom.Stats { return snapshot },
		&sseprom.CollectorOptions{ConstLabels: prometheus.Labels{"hub": "b"}})
	if err := reg.Register(other); err != nil {
		t.Errorf("second collector with other const labels: %v", err)
	}
}

func TestNewCollectorNilStats(t *testing.T) {
	defer func() {
		if got, want := recover(), "sseprom: NewCollector: nil stats function"; got != want {
			t.Errorf("panic: got %v, want %q", got, want)
		}
	}()
	sseprom.NewCollector(nil, nil)
}

// TestCollectorServer exports a real Server's statistics.
func TestCollectorServer(t *testing.T) {
	srv := &sse.Server{}
	t.Cleanup(func() { srv.Close() })
	for range 3 {
		if _, err := srv.Publish(t.Context(), "", sse.NewEvent("x")); err != nil {
			t.Fatal(err)
		}
	}
	c := sseprom.NewCollector(srv.Stats, nil)
	const want = `
# HELP sse_published_total Events broadcast or published.
# TYPE sse_published_total counter
sse_published_total 3
# HELP sse_connections Event streams registered now.
# TYPE sse_connections gauge
sse_connections 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "sse_published_total", "sse_connections"); err != nil {
		t.Error(err)
	}
}

// TestCollectorConcurrent scrapes while publishes are observed and the
// hub changes; the race detector checks the collector's side.
func TestCollectorConcurrent(t *testing.T) {
	hub := sse.NewHub[string]()
	go hub.Run()
	t.Cleanup(func() { hub.Close() })
	c := sseprom.NewCollector(hub.Stats, &sseprom.CollectorOptions{PublishBuckets: sseprom.DefaultPublishBuckets})
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	const workers, each = 4, 50
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				start := time.Now()
				if err := hub.Broadcast("x"); err != nil {
					t.Error(err)
					return
				}
				c.ObservePublish(time.Since(start))
			}
		})
	}
	for range 20 {
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	want := fmt.Sprintf(`
# HELP sse_published_total Events broadcast or published.
# TYPE sse_published_total counter
sse_published_total %d
`, workers*each)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sse_published_total"); err != nil {
		t.Error(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var observed uint64
	for _, mf := range mfs {
		if mf.GetName() == "sse_publish_duration_seconds" {
			observed = mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	if observed != workers*each {
		t.Errorf("publish durations observed: got %d, want %d", observed, workers*each)
	}
}
