package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// svgSummary is what a chart holds, as an XML parser reads it.
type svgSummary struct {
	root   string
	series map[string]int // data-series attribute → elements
	texts  []string
}

// parseSVG decodes a whole chart with encoding/xml, failing on any
// malformed markup.
func parseSVG(t *testing.T, b []byte) svgSummary {
	t.Helper()
	s := svgSummary{series: map[string]int{}}
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.Strict = true
	depth := 0
	var inText bool
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("malformed SVG: %v\n%s", err, b)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				s.root = tok.Name.Space + " " + tok.Name.Local
			}
			depth++
			inText = tok.Name.Local == "text"
			for _, a := range tok.Attr {
				if a.Name.Local == "data-series" {
					s.series[a.Value]++
				}
			}
		case xml.EndElement:
			depth--
			inText = false
		case xml.CharData:
			if inText {
				s.texts = append(s.texts, string(tok))
			}
		}
	}
	if depth != 0 {
		t.Fatalf("SVG ends inside %d elements", depth)
	}
	return s
}

func TestFanoutCharts(t *testing.T) {
	cfg := &config{clients: []int{100, 1000, 10000}, rates: []int{10}}
	impls := []string{implStream, implGoSSE, implR3labs}
	var results []*result
	for i, impl := range impls {
		for j, n := range cfg.clients {
			f := float64((i + 1) * (j + 1))
			m := measurement{rr: runResult{clients: n, delivered: 10}, perSec: 1e5 * f,
				p50: time.Duration(f) * time.Millisecond, p99: time.Duration(3*f) * time.Millisecond}
			results = append(results, &result{impl: impl, clients: n, tput: m,
				latency: map[int]measurement{10: m}, heapStackConn: 20e3 + 100*f})
		}
	}
	results[4].err = errors.New("broken") // go-sse at 1000 clients: no point
	charts, order := fanoutCharts(cfg, impls, results)
	if want := "throughput.svg latency-10.svg memory.svg"; strings.Join(order, " ") != want {
		t.Fatalf("charts: got %q, want %q", strings.Join(order, " "), want)
	}
	tests := []struct {
		file       string
		title      string
		wantSeries map[string]int
		wantTexts  []string
	}{
		{"throughput.svg", "Fan-out throughput",
			map[string]int{"coregx/stream Hub": 1, "tmaxmax/go-sse": 1, "r3labs/sse v2": 1},
			[]string{"connected clients", "100", "1k", "10k", "100k/s", "1M/s"}},
		{"latency-10.svg", "Publish→receive latency at 10 events/s",
			map[string]int{"coregx/stream Hub p50": 1, "coregx/stream Hub p99": 1, "tmaxmax/go-sse p50": 1,
				"tmaxmax/go-sse p99": 1, "r3labs/sse v2 p50": 1, "r3labs/sse v2 p99": 1},
			[]string{"1ms", "10ms", "100ms"}},
		{"memory.svg", "Memory per idle connection",
			map[string]int{"coregx/stream Hub": 3, "tmaxmax/go-sse": 2, "r3labs/sse v2": 3},
			[]string{"100 clients", "10k clients", "19.6 KiB", "heap+stack per connection"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			s := parseSVG(t, charts[tt.file])
			if s.root != "http://www.w3.org/2000/svg svg" {
				t.Errorf("root element: got %q, want svg in the SVG namespace", s.root)
			}
			if len(s.series) != len(tt.wantSeries) {
				t.Errorf("series: got %v, want %v", s.series, tt.wantSeries)
			}
			for name, n := range tt.wantSeries {
				if s.series[name] != n {
					t.Errorf("series %q: got %d elements, want %d", name, s.series[name], n)
				}
			}
			texts := strings.Join(s.texts, "\n")
			for _, want := range append([]string{tt.title}, tt.wantTexts...) {
				if !strings.Contains("\n"+texts+"\n", "\n"+want+"\n") {
					t.Errorf("no text %q in:\n%s", want, texts)
				}
			}
		})
	}
}

func TestStalledChart(t *testing.T) {
	cfg := &config{stalled: []int{5000, 10000}, healthy: 200, stallSize: 1024, stallRate: 1000}
	run := func(p99 time.Duration) *stalledRun {
		return &stalledRun{healthy: measurement{rr: runResult{clients: 200, delivered: 1}, p99: p99}}
	}
	results := []*stalledResult{
		{impl: implStream, baseline: run(50 * time.Millisecond), runs: []*stalledRun{run(120 * time.Millisecond), run(2 * time.Second)}},
		{impl: implGoSSE, baseline: run(30 * time.Millisecond), runs: []*stalledRun{{err: errors.New("broken")}, run(4 * time.Second)}},
	}
	charts, order := stalledCharts(cfg, results)
	if len(order) != 1 || order[0] != "stalled-p99.svg" {
		t.Fatalf("charts: got %v, want [stalled-p99.svg]", order)
	}
	s := parseSVG(t, charts["stalled-p99.svg"])
	want := map[string]int{"no stalled clients": 2, "5k stalled clients": 1, "10k stalled clients": 2}
	if len(s.series) != len(want) {
		t.Errorf("series: got %v, want %v", s.series, want)
	}
	for name, n := range want {
		if s.series[name] != n {
			t.Errorf("series %q: got %d bars, want %d", name, s.series[name], n)
		}
	}
	texts := "\n" + strings.Join(s.texts, "\n") + "\n"
	for _, w := range []string{"Healthy clients' p99 beside stalled readers", "coregx/stream Hub", "tmaxmax/go-sse",
		"50ms", "120ms", "2s", "4s", "healthy p99 (log)"} {
		if !strings.Contains(texts, "\n"+w+"\n") {
			t.Errorf("no text %q in:\n%s", w, texts)
		}
	}
}

func TestWritePlots(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plots")
	var logged []string
	logf := func(format string, a ...any) { logged = append(logged, strings.TrimSpace(format)) }
	charts := map[string][]byte{"a.svg": []byte("<svg/>"), "b.svg": []byte("<svg></svg>")}
	if err := writePlots(dir, charts, []string{"a.svg", "b.svg"}, logf); err != nil {
		t.Fatal(err)
	}
	for name, want := range charts {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: got %q (%v), want %q", name, got, err, want)
		}
	}
	if len(logged) != 2 {
		t.Errorf("got %d log lines, want 2", len(logged))
	}
}
