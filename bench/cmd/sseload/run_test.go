package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTinyRunAllImpls runs every scenario at a tiny size against every
// implementation, each server in its own process as in a real run, and
// checks that every client got every event exactly once.
func TestTinyRunAllImpls(t *testing.T) {
	const clients, events, rate = 20, 200, 40
	cfg, err := parseFlags([]string{"-quick", fmt.Sprintf("-clients=%d", clients), fmt.Sprintf("-events=%d", events),
		fmt.Sprintf("-rates=%d", rate), "-latency-duration=500ms", "-timeout=60s"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var results []*result
	for _, impl := range allImpls {
		if newBroadcaster[impl] == nil {
			t.Errorf("implementation %s is not built into the test binary", impl)
			continue
		}
		t.Run(impl, func(t *testing.T) {
			r := measureOne(t.Context(), cfg, impl, clients, events, t.Logf)
			results = append(results, r)
			checkTinyRun(t, r, clients, events, rate)
		})
	}
	var out bytes.Buffer
	writeReport(&out, cfg, allImpls, results, time.Second, 0)
	table := out.String()
	for _, want := range []string{"| coregx/stream Hub | tmaxmax/go-sse | r3labs/sse v2 | coregx/stream Hub.ServeHTTP | coregx/stream Server | coregx/stream Server with a Filter | coregx/stream Hub, SlowDropOldest | ours ÷ best peer |",
		"| throughput, deliveries/s (lost) ↑ | 20 |", "| latency @ 40 ev/s, p50 / p99 / max (lost) ↓ | 20 |",
		"| memory per idle conn, heap+stack ↓ | 20 |"} {
		if !strings.Contains(table, want) {
			t.Errorf("report lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "error") {
		t.Errorf("report has an error cell:\n%s", table)
	}
	charts, order := fanoutCharts(cfg, allImpls, results)
	for _, name := range order {
		s := parseSVG(t, charts[name])
		for _, impl := range allImpls {
			if name == "throughput.svg" && s.series[implTitle[impl]] != 1 {
				t.Errorf("%s: series %q has %d lines, want 1", name, implTitle[impl], s.series[implTitle[impl]])
			}
		}
	}
}

// TestTinyRounds drives two rounds of two implementations end to end
// through measureAll, as a real run does, and checks that every round
// delivered every event to every client, that round 2 ran in rotated
// order and that the report shows medians and the per-round section.
func TestTinyRounds(t *testing.T) {
	const clients, events, rate = 20, 100, 40
	cfg, err := parseFlags([]string{"-impls=stream,r3labs", "-rounds=2", fmt.Sprintf("-clients=%d", clients),
		fmt.Sprintf("-events=%d", events), fmt.Sprintf("-rates=%d", rate), "-latency-duration=500ms", "-timeout=60s"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var order []string // implementations in the order their latency runs ended
	logf := func(format string, a ...any) {
		t.Logf(format, a...)
		if line := fmt.Sprintf(format, a...); strings.Contains(line, " latency @") {
			order = append(order, strings.Fields(line)[0])
		}
	}
	results, err := measureAll(t.Context(), cfg, cfg.impls, logf)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{implStream, implR3labs, implR3labs, implStream}; !slices.Equal(order, want) {
		t.Errorf("latency run order: got %v, want %v", order, want)
	}
	if len(results) != 2 {
		t.Fatalf("got %d results, want 2", len(results))
	}
	for _, r := range results {
		if r.err != nil {
			t.Fatalf("%s: %v", r.impl, r.err)
		}
		checkRun(t, r.impl+" throughput", r.tput, clients, events)
		if len(r.rounds) != 2 {
			t.Fatalf("%s: got %d rounds, want 2", r.impl, len(r.rounds))
		}
		for k, rd := range r.rounds {
			if rd.err != nil {
				t.Errorf("%s round %d: %v", r.impl, k+1, rd.err)
			}
			checkRun(t, fmt.Sprintf("%s round %d latency", r.impl, k+1), rd.latency[rate], clients, rate/2)
		}
		if m := r.latency[rate]; m.medianOf != 2 || m.rr.delivered != 2*clients*rate/2 || m.rr.lost != 0 {
			t.Errorf("%s: table value is a median of %d rounds with %d delivered and %d lost; want 2 rounds, %d delivered, none lost",
				r.impl, m.medianOf, m.rr.delivered, m.rr.lost, 2*clients*rate/2)
		}
	}
	var out bytes.Buffer
	writeReport(&out, cfg, cfg.impls, results, time.Second, 0)
	report := out.String()
	for _, want := range []string{"lost; median of 2) |", "latency runs: 500ms each, 2 rounds interleaved;",
		"### Latency p99 per round", "**20 clients, 40 ev/s**", "- ours ÷ best peer per round: "} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "error") {
		t.Errorf("report has an error:\n%s", report)
	}
}

// checkTinyRun checks measureOne's result r of a tiny run: memory
// measured, every client got every event of the throughput run and of
// the latency run at rate (half a second long), and sane latencies.
func checkTinyRun(t *testing.T, r *result, clients, events, rate int) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("run failed: %v", r.err)
	}
	if r.memErr != nil {
		t.Errorf("memory stats: %v", r.memErr)
	}
	checkRun(t, "throughput", r.tput, clients, events)
	checkRun(t, "latency", r.latency[rate], clients, rate/2)
	if m := r.latency[rate]; m.p50 <= 0 || m.p99 < m.p50 || m.max < m.p99 || m.max > 10*time.Second {
		t.Errorf("latency: got p50 %v p99 %v max %v, want 0 < p50 <= p99 <= max < 10s", m.p50, m.p99, m.max)
	}
}

func checkRun(t *testing.T, name string, m measurement, clients, events int) {
	t.Helper()
	if m.err != nil {
		t.Errorf("%s: %v", name, m.err)
		return
	}
	want := int64(clients * events)
	if m.rr.clients != clients || m.rr.delivered != want || m.rr.lost != 0 || m.rr.dups != 0 || m.rr.stray != 0 || m.rr.dropped != 0 {
		t.Errorf("%s: got %d clients, %d delivered, %d lost, %d duplicates, %d stray, %d dropped; want %d clients, %d delivered and no loss",
			name, m.rr.clients, m.rr.delivered, m.rr.lost, m.rr.dups, m.rr.stray, m.rr.dropped, clients, want)
	}
	if m.publishErrs != 0 || m.stalled {
		t.Errorf("%s: %d publish errors (%s), stalled %v", name, m.publishErrs, m.publishErr, m.stalled)
	}
	if m.perSec <= 0 {
		t.Errorf("%s: got %v deliveries/s, want > 0", name, m.perSec)
	}
}

// TestOrderPerPublisher: with several publishers, an event is late only
// behind a later one of the same publisher.
func TestOrderPerPublisher(t *testing.T) {
	tests := []struct {
		orders   int
		seqs     []int64
		wantLate int
	}{
		{0, []int64{0, 1, 2, 3}, 0},
		{1, []int64{1, 0, 3, 2}, 2},
		{2, []int64{1, 0, 3, 2}, 0},
		{2, []int64{2, 1, 0, 3}, 1},
		{3, []int64{2, 1, 0, 5, 4, 3}, 0},
	}
	for _, tt := range tests {
		p := newPool("127.0.0.1:1", 1)
		c := p.clients[0]
		spec := &runSpec{id: 3, events: len(tt.seqs), orders: tt.orders}
		p.begin(spec)
		for _, seq := range tt.seqs {
			c.evKind, c.evRun, c.evSeq = 'd', 3, seq
			c.event()
		}
		if c.late != tt.wantLate || c.got != len(tt.seqs) || p.completed.Load() != 1 {
			t.Errorf("%d publishers, %v: got %d late, %d events, %d complete; want %d, %d, 1",
				tt.orders, tt.seqs, c.late, c.got, p.completed.Load(), tt.wantLate, len(tt.seqs))
		}
	}
}

func TestEventDataRoundTrip(t *testing.T) {
	p := newPool("127.0.0.1:1", 1)
	c := p.clients[0]
	spec := &runSpec{id: 7, events: 3, latency: true}
	p.begin(spec)
	var stream []byte
	for seq := range int64(3) {
		data := appendEventData(nil, 'd', 7, seq, time.Now().UnixNano(), 64)
		if len(data) != 64 {
			t.Fatalf("event data: got %d bytes, want 64", len(data))
		}
		stream = fmt.Appendf(stream, "id: %d\r\ndata: %s\r\n\r\n", seq, data)
	}
	stream = fmt.Appendf(stream, ": comment\n\ndata: %s\n\n", appendEventData(nil, 'p', 9, 0, 1, 64))
	stream = fmt.Appendf(stream, "data: %s\n\n", appendEventData(nil, 'd', 7, 1, 1, 64)) // a duplicate
	// Chunk it awkwardly: split chunks and reads at every boundary.
	var body []byte
	for i := 0; i < len(stream); i += 13 {
		chunk := stream[i:min(i+13, len(stream))]
		body = fmt.Appendf(body, "%x\r\n%s\r\n", len(chunk), chunk)
	}
	c.chunked = true
	for i := 0; i < len(body); i += 5 {
		c.now = time.Now().UnixNano()
		if err := c.feed(body[i:min(i+5, len(body))]); err != nil {
			t.Fatalf("feed: %v", err)
		}
	}
	if err := c.feed([]byte("0\r\n\r\n")); err != errBodyEnded {
		t.Errorf("last chunk: got %v, want errBodyEnded", err)
	}
	if c.got != 3 || c.dups != 1 || c.stray != 0 || c.lastPrime.Load() != 9 || len(c.lats) != 3 {
		t.Errorf("got %d events, %d duplicates, %d stray, last prime %d, %d latencies; want 3, 1, 0, 9, 3",
			c.got, c.dups, c.stray, c.lastPrime.Load(), len(c.lats))
	}
	if p.completed.Load() != 1 {
		t.Errorf("completed: got %d, want 1", p.completed.Load())
	}
}
