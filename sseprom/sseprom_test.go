package sseprom_test

import (
	"context"
	"strings"
	"testing"

	"github.com/coregx/stream/sse"
	"github.com/coregx/stream/sseprom"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollectorMapsEveryCounter(t *testing.T) {
	stats := sse.HubStats{Clients: 3, Topics: 2, Broadcasts: 10, Delivered: 25, Replayed: 4, Dropped: 1,
		QueuedBytes: 512, SlowDisconnects: 5, BudgetDisconnects: 6, ShutdownDisconnects: 7, ClientDisconnects: 8}
	c := sseprom.NewCollector("app", func() sse.HubStats { return stats })
	want := `
# HELP app_sse_broadcasts_total Events broadcast or published.
# TYPE app_sse_broadcasts_total counter
app_sse_broadcasts_total 10
# HELP app_sse_clients Streams connected now.
# TYPE app_sse_clients gauge
app_sse_clients 3
# HELP app_sse_delivered_total Live events written to streams.
# TYPE app_sse_delivered_total counter
app_sse_delivered_total 25
# HELP app_sse_disconnects_total Streams ended, by reason.
# TYPE app_sse_disconnects_total counter
app_sse_disconnects_total{reason="budget"} 6
app_sse_disconnects_total{reason="client"} 8
app_sse_disconnects_total{reason="shutdown"} 7
app_sse_disconnects_total{reason="slow"} 5
# HELP app_sse_dropped_total Events discarded by a slow-client policy.
# TYPE app_sse_dropped_total counter
app_sse_dropped_total 1
# HELP app_sse_queued_bytes Bytes queued for streams or being written now.
# TYPE app_sse_queued_bytes gauge
app_sse_queued_bytes 512
# HELP app_sse_replayed_total Events from history queued for resuming streams.
# TYPE app_sse_replayed_total counter
app_sse_replayed_total 4
# HELP app_sse_topics Topics followed by a stream now.
# TYPE app_sse_topics gauge
app_sse_topics 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func TestCollectorReadsAServer(t *testing.T) {
	srv := &sse.Server{}
	t.Cleanup(func() { srv.Close() })
	c := sseprom.NewCollector("", srv.Stats)
	if _, err := srv.Publish(context.Background(), "", sse.NewEvent("x")); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP sse_broadcasts_total Events broadcast or published.
# TYPE sse_broadcasts_total counter
sse_broadcasts_total 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "sse_broadcasts_total"); err != nil {
		t.Error(err)
	}
}
