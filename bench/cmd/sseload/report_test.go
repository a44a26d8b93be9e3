package main

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// latRun is a latency run of 1 000 clients with the given p50, p99 and
// max in milliseconds.
func latRun(p50, p99, maxMS float64, lost int64) measurement {
	d := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	return measurement{rr: runResult{clients: 1000, delivered: 50_000 - lost, lost: lost},
		p50: d(p50), p99: d(p99), max: d(maxMS), perSec: 1000}
}

// okRound is a latency round with a run at 10 and at 100 ev/s.
func okRound(at10, at100 measurement) latencyRound {
	return latencyRound{latency: map[int]measurement{10: at10, 100: at100}}
}

// roundsFixture is three rounds of three implementations at 1 000
// clients with known p99s:
//
//	10 ev/s:  stream 10, 12, 11; gosse failed, 11, 12; r3labs 9, 13, 12
//	100 ev/s: stream failed in every round; gosse failed, 2, 4; r3labs 5, 5, 5
//
// gosse's round 1 failed to set up, so it has no memory or throughput.
func roundsFixture() (*config, []*result) {
	cfg := &config{size: 64, latencyDur: 5 * time.Second, clients: []int{1000}, events: []int{100},
		rates: []int{10, 100}, rounds: 3}
	boom := measurement{err: errors.New("publish: boom")}
	tput := measurement{rr: runResult{clients: 1000, delivered: 100_000}, perSec: 2e6, seconds: 0.05}
	stream := &result{impl: implStream, clients: 1000, events: 100, heapStackConn: 2048, rssConn: 4096, goroutines: 1, tput: tput,
		rounds: []latencyRound{
			okRound(latRun(5, 10, 20, 0), boom),
			okRound(latRun(6, 12, 30, 1), boom),
			okRound(latRun(4, 11, 25, 2), boom),
		}}
	setupErr := errors.New("start gosse server: boom")
	gosse := &result{impl: implGoSSE, clients: 1000, events: 100, err: setupErr,
		rounds: []latencyRound{
			failedRound(setupErr, cfg.rates),
			okRound(latRun(7, 11, 15, 0), latRun(1, 2, 3, 0)),
			okRound(latRun(8, 12, 16, 0), latRun(1, 4, 5, 0)),
		}}
	r3labs := &result{impl: implR3labs, clients: 1000, events: 100, heapStackConn: 4096, rssConn: 8192, goroutines: 2, tput: tput,
		rounds: []latencyRound{
			okRound(latRun(3, 9, 10, 0), latRun(2, 5, 6, 0)),
			okRound(latRun(4, 13, 14, 0), latRun(2, 5, 6, 0)),
			okRound(latRun(5, 12, 13, 0), latRun(2, 5, 6, 0)),
		}}
	r3labs.rounds[2].foreign = 0.5
	results := []*result{stream, gosse, r3labs}
	for _, r := range results {
		r.summarize(cfg.rates)
	}
	return cfg, results
}

// reportWithLines writes the report of results, checks that it has every
// line of want, and returns it with its lines.
func reportWithLines(t *testing.T, cfg *config, results []*result, want ...string) (string, []string) {
	t.Helper()
	var out bytes.Buffer
	writeReport(&out, cfg, defaultImpls, results, time.Minute, 0)
	report := out.String()
	lines := strings.Split(report, "\n")
	for _, w := range want {
		if !slices.Contains(lines, w) {
			t.Errorf("report lacks the line %q:\n%s", w, report)
		}
	}
	return report, lines
}

func TestReportRounds(t *testing.T) {
	cfg, results := roundsFixture()
	report, _ := reportWithLines(t, cfg, results,
		"- event data: 64 bytes; latency runs: 5s each, 3 rounds interleaved; run took 1m0s",
		"| throughput, deliveries/s (lost) ↑ | 1000 | 2.00M (0 lost) | error: start gosse server: boom | 2.00M (0 lost) | 1.00× |",
		"| latency @ 10 ev/s, p50 / p99 / max (lost) ↓ | 1000 | 5.00 / 11.00 / 25.00 ms (3 lost; median of 3) | 7.50 / 11.50 / 15.50 ms (0 lost; median of 2) | 4.00 / 12.00 / 13.00 ms (0 lost; median of 3) | 0.96× |",
		"| latency @ 100 ev/s, p50 / p99 / max (lost) ↓ | 1000 | error: publish: boom | 1.00 / 3.00 / 4.00 ms (0 lost; median of 2) | 2.00 / 5.00 / 6.00 ms (0 lost; median of 3) | – |",
		"| memory per idle conn, heap+stack ↓ | 1000 | 2.0 KiB | error: start gosse server: boom | 4.0 KiB | 0.50× |",
		"### Latency p99 per round",
		"**1000 clients, 10 ev/s**",
		"- coregx/stream Hub: 10.00, 12.00, 11.00",
		"- tmaxmax/go-sse: error: start gosse server: boom, 11.00, 12.00",
		"- r3labs/sse v2: 9.00, 13.00, 12.00",
		// 10/9, 12/11, 11/12
		"- ours ÷ best peer per round: 1.11, 1.09, 0.92 (no worse in 1 of 3), mean 1.04",
		"**1000 clients, 100 ev/s**",
		"- coregx/stream Hub: error: publish: boom, error: publish: boom, error: publish: boom",
		"- tmaxmax/go-sse: error: start gosse server: boom, 2.00, 4.00",
		"- r3labs/sse v2: 5.00, 5.00, 5.00",
		"- ours ÷ best peer per round: –, –, – (no round to compare)",
		"### Notes",
		"- r3labs/sse v2, 1000 clients, latency round 3: **other processes used 0.5 cores meanwhile: skewed**",
	)
	// The per-round section comes after the table and before the notes.
	table := strings.Index(report, "| memory per idle conn, RSS ↓ |")
	section := strings.Index(report, "### Latency p99 per round")
	notes := strings.Index(report, "### Notes")
	if table < 0 || section < table || notes < section {
		t.Errorf("sections out of order: table at %d, per-round at %d, notes at %d", table, section, notes)
	}
}

func TestReportOneRound(t *testing.T) {
	cfg, results := roundsFixture()
	cfg.rounds = 1
	for _, r := range results {
		r.rounds = r.rounds[:1]
		r.latency = r.rounds[0].latency
	}
	report, lines := reportWithLines(t, cfg, results,
		"- event data: 64 bytes; latency runs: 5s each; run took 1m0s",
		"| latency @ 10 ev/s, p50 / p99 / max (lost) ↓ | 1000 | 5.00 / 10.00 / 20.00 ms (0 lost) | error: start gosse server: boom | 3.00 / 9.00 / 10.00 ms (0 lost) | 1.11× |",
	)
	for _, line := range lines {
		if strings.HasPrefix(line, "- command:") { // the test binary's flags
			continue
		}
		for _, unwanted := range []string{"round", "median", "###"} {
			if strings.Contains(line, unwanted) {
				t.Errorf("one-round report has %q in %q:\n%s", unwanted, line, report)
			}
		}
	}
}

func TestCombineRounds(t *testing.T) {
	none := combineRounds([]measurement{{err: errors.New("first")}, {err: errors.New("second")}})
	if none.err == nil || none.err.Error() != "first" || none.medianOf != 0 {
		t.Errorf("no round delivered: got err %v, medianOf %d; want the first round's error", none.err, none.medianOf)
	}
	m := combineRounds([]measurement{latRun(1, 40, 50, 1), {err: errors.New("x")}, latRun(3, 10, 70, 2), latRun(2, 20, 60, 0), latRun(4, 30, 80, 0)})
	if m.medianOf != 4 || m.p50 != 2500*time.Microsecond || m.p99 != 25*time.Millisecond || m.max != 65*time.Millisecond ||
		m.rr.lost != 3 || m.rr.delivered != 4*50_000-3 || !m.ok() {
		t.Errorf("got medianOf %d, p50 %v, p99 %v, max %v, lost %d, delivered %d; want 4, 2.5ms, 25ms, 65ms, 3, %d",
			m.medianOf, m.p50, m.p99, m.max, m.rr.lost, m.rr.delivered, 4*50_000-3)
	}
}

func TestRoundOrder(t *testing.T) {
	impls := []string{"a", "b", "c"}
	for k, want := range [][]string{{"a", "b", "c"}, {"b", "c", "a"}, {"c", "a", "b"}, {"a", "b", "c"}} {
		if got := roundOrder(impls, k); !slices.Equal(got, want) {
			t.Errorf("roundOrder(%v, %d): got %v, want %v", impls, k, got, want)
		}
	}
	if !slices.Equal(impls, []string{"a", "b", "c"}) {
		t.Errorf("roundOrder changed its argument: %v", impls)
	}
}

func TestP99BySecond(t *testing.T) {
	start := int64(1_000_000_000_000)
	sec := int64(time.Second)
	var lats, pubs []int64
	// Second 0: 100 events of 100..1 ms, published in that order; none
	// in second 1; second 2: one of 7 ms.
	for i := range 100 {
		lats = append(lats, int64(100-i)*int64(time.Millisecond))
		pubs = append(pubs, start+int64(i)*sec/100)
	}
	lats = append(lats, 7*int64(time.Millisecond))
	pubs = append(pubs, start+2*sec+1)
	got := p99BySecond(lats, pubs, start)
	want := []time.Duration{99 * time.Millisecond, 0, 7 * time.Millisecond}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
