package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// -plot DIR writes the results as SVG charts that a markdown page can
// embed: hand-written SVG 1.1, no script, no external reference.

// Chart geometry, in SVG user units (pixels).
const (
	plotW       = 760
	plotH       = 420
	plotLeft    = 78
	plotRight   = 200 // room for the legend
	plotTop     = 48
	plotBottom  = 64
	plotFont    = `font-family="Helvetica, Arial, sans-serif"`
	plotAxisCol = "#444"
	plotGridCol = "#ddd"
)

// implColor keeps each implementation's colour the same in every chart.
var implColor = map[string]string{
	implStream:       "#1f5fbf",
	implStreamServer: "#7b3fb3",
	implStreamFilter: "#b35f3f",
	implStreamDrop:   "#3f8fb3",
	implStreamHTTP:   "#138a8a",
	implGoSSE:        "#d9731a",
	implR3labs:       "#3a9a3a",
}

// palette colours series that are not implementations.
var palette = []string{"#1f5fbf", "#d9731a", "#3a9a3a", "#b33a3a", "#7b3fb3", "#138a8a"}

// plotSeries is one line of a line chart.
type plotSeries struct {
	name   string
	color  string
	dashed bool
	xs, ys []float64 // NaN y: no point
}

// axis maps values onto a pixel range, linearly or by decades.
type axis struct {
	lo, hi   float64
	log      bool
	from, to float64 // pixels
	format   func(float64) string
	unit     string
}

func (a axis) pos(v float64) float64 {
	lo, hi := a.lo, a.hi
	if a.log {
		v, lo, hi = math.Log10(v), math.Log10(lo), math.Log10(hi)
	}
	if hi == lo {
		return (a.from + a.to) / 2
	}
	return a.from + (v-lo)/(hi-lo)*(a.to-a.from)
}

// ticks are the values to label: decades (with 2× and 5× when there are
// few) on a log axis, 1-2-5 steps on a linear one.
func (a axis) ticks() []float64 {
	var out []float64
	if a.log {
		for e := math.Floor(math.Log10(a.lo)); e <= math.Ceil(math.Log10(a.hi)); e++ {
			for _, m := range []float64{1, 2, 5} {
				v := m * math.Pow(10, e)
				if v >= a.lo*0.999 && v <= a.hi*1.001 && (m == 1 || math.Log10(a.hi/a.lo) <= 2) {
					out = append(out, v)
				}
			}
		}
		return out
	}
	step := niceStep((a.hi - a.lo) / 5)
	for v := math.Ceil(a.lo/step) * step; v <= a.hi+step/1e6; v += step {
		out = append(out, v)
	}
	return out
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// span returns the range an axis shows for values vs: whole decades on a
// log scale, from 0 with some headroom on a linear one.
func span(vs []float64, log bool) (lo, hi float64, ok bool) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range vs {
		if math.IsNaN(v) || (log && v <= 0) {
			continue
		}
		lo, hi = min(lo, v), max(hi, v)
	}
	if math.IsInf(lo, 1) {
		return 0, 0, false
	}
	if log {
		return math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)+1e-9)), true
	}
	step := niceStep(hi / 5)
	return 0, math.Ceil(hi*1.05/step) * step, true
}

// svgDoc accumulates one chart.
type svgDoc struct{ b bytes.Buffer }

func (d *svgDoc) printf(format string, a ...any) { fmt.Fprintf(&d.b, format, a...) }

// text writes an escaped text element.
func (d *svgDoc) text(x, y float64, anchor, extra, s string) {
	d.printf(`<text x="%.1f" y="%.1f" text-anchor="%s" %s>`, x, y, anchor, extra)
	_ = xml.EscapeText(&d.b, []byte(s))
	d.printf("</text>\n")
}

// frame writes the header, title, axes with grid, ticks and labels.
func (d *svgDoc) frame(title, desc string, x, y axis, xTicks []float64, xLabels []string) {
	d.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" %s font-size="12">`+"\n",
		plotW, plotH, plotW, plotH, plotFont)
	d.printf("<title>")
	_ = xml.EscapeText(&d.b, []byte(title))
	d.printf("</title>\n<desc>")
	_ = xml.EscapeText(&d.b, []byte(desc))
	d.printf("</desc>\n")
	d.printf(`<rect x="0" y="0" width="%d" height="%d" fill="#fff"/>`+"\n", plotW, plotH)
	d.text(plotW/2, 24, "middle", `font-size="15" font-weight="bold"`, title)
	// Grid and y ticks.
	for _, v := range y.ticks() {
		py := y.pos(v)
		d.printf(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`+"\n", plotLeft, py, plotW-plotRight, py, plotGridCol)
		d.text(plotLeft-6, py+4, "end", "", y.format(v))
	}
	// x ticks.
	for i, v := range xTicks {
		px := x.pos(v)
		d.printf(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>`+"\n", px, plotH-plotBottom, px, plotH-plotBottom+5, plotAxisCol)
		d.text(px, plotH-plotBottom+19, "middle", "", xLabels[i])
	}
	// Axes.
	d.printf(`<path d="M%d %d V%d H%d" fill="none" stroke="%s"/>`+"\n", plotLeft, plotTop, plotH-plotBottom, plotW-plotRight, plotAxisCol)
	d.text((plotLeft+plotW-plotRight)/2, plotH-18, "middle", "", x.unit)
	d.text(18, (plotTop+plotH-plotBottom)/2, "middle",
		fmt.Sprintf(`transform="rotate(-90 18 %d)"`, (plotTop+plotH-plotBottom)/2), y.unit)
}

// legend writes one entry per series, right of the plot area.
func (d *svgDoc) legend(entries []plotSeries, bars bool) {
	x := float64(plotW - plotRight + 16)
	for i, s := range entries {
		y := float64(plotTop + 8 + 22*i)
		if bars {
			d.printf(`<rect x="%.1f" y="%.1f" width="22" height="10" fill="%s"/>`+"\n", x, y-5, s.color)
		} else {
			d.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2.5"%s/>`+"\n",
				x, y, x+22, y, s.color, dash(s.dashed))
		}
		d.text(x+28, y+4, "start", `class="legend"`, s.name)
	}
}

func (d *svgDoc) end() []byte {
	d.printf("</svg>\n")
	return d.b.Bytes()
}

func dash(dashed bool) string {
	if dashed {
		return ` stroke-dasharray="6 4"`
	}
	return ""
}

// lineChart draws series over a shared x axis of categories xs (client
// counts), both axes on a log scale.
func lineChart(title, desc string, xs []float64, xFormat func(float64) string, xUnit string,
	yFormat func(float64) string, yUnit string, series []plotSeries) []byte {
	var all []float64
	for _, s := range series {
		all = append(all, s.ys...)
	}
	ylo, yhi, ok := span(all, true)
	if !ok {
		ylo, yhi = 1, 10
	}
	xlo, xhi := xs[0], xs[len(xs)-1]
	if xlo == xhi {
		xlo, xhi = xlo/2, xhi*2
	}
	x := axis{lo: xlo, hi: xhi, log: xlo > 0, from: plotLeft + 30, to: plotW - plotRight - 30, unit: xUnit}
	y := axis{lo: ylo, hi: yhi, log: true, from: plotH - plotBottom, to: plotTop, format: yFormat, unit: yUnit}
	labels := make([]string, len(xs))
	for i, v := range xs {
		labels[i] = xFormat(v)
	}
	var d svgDoc
	d.frame(title, desc, x, y, xs, labels)
	for _, s := range series {
		var pts bytes.Buffer
		for i, v := range s.ys {
			if math.IsNaN(v) || v <= 0 {
				continue
			}
			fmt.Fprintf(&pts, "%.1f,%.1f ", x.pos(s.xs[i]), y.pos(v))
		}
		if pts.Len() == 0 {
			continue
		}
		d.printf(`<polyline class="series" data-series="%s" points="%s" fill="none" stroke="%s" stroke-width="2.5"%s/>`+"\n",
			attr(s.name), bytes.TrimSpace(pts.Bytes()), s.color, dash(s.dashed))
		for i, v := range s.ys {
			if !math.IsNaN(v) && v > 0 {
				d.printf(`<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>`+"\n", x.pos(s.xs[i]), y.pos(v), s.color)
			}
		}
	}
	d.legend(series, false)
	return d.end()
}

// barChart draws groups of bars, one bar per series in each group, with
// each bar's value written above it; values[g][s], NaN for none.
func barChart(title, desc string, groups []string, series []plotSeries, values [][]float64, logY bool,
	yFormat func(float64) string, yUnit string) []byte {
	var all []float64
	for _, g := range values {
		all = append(all, g...)
	}
	ylo, yhi, ok := span(all, logY)
	if !ok {
		ylo, yhi = 0, 1
		if logY {
			ylo, yhi = 1, 10
		}
	}
	y := axis{lo: ylo, hi: yhi, log: logY, from: plotH - plotBottom, to: plotTop, format: yFormat, unit: yUnit}
	slot := float64(plotW-plotRight-plotLeft) / float64(len(groups))
	centres := make([]float64, len(groups))
	for i := range groups {
		centres[i] = float64(i) + 0.5
	}
	x := axis{lo: 0, hi: float64(len(groups)), from: plotLeft, to: plotW - plotRight, unit: ""}
	var d svgDoc
	d.frame(title, desc, x, y, centres, groups)
	barW := min(48, slot*0.8/float64(max(1, len(series))))
	for g := range groups {
		left := plotLeft + slot*float64(g) + (slot-barW*float64(len(series)))/2
		for s, ser := range series {
			v := values[g][s]
			if math.IsNaN(v) || (logY && v <= 0) {
				continue
			}
			top, base := y.pos(v), y.pos(ylo)
			bx := left + barW*float64(s)
			d.printf(`<rect class="series" data-series="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n",
				attr(ser.name), bx+1, top, barW-2, max(0.5, base-top), ser.color)
			d.text(bx+barW/2, top-4, "middle", `font-size="10"`, yFormat(v))
		}
	}
	d.legend(series, true)
	return d.end()
}

// attr escapes s for an attribute value.
func attr(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// Value formats.

func fmtCount(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func fmtRate(v float64) string { return fmtCount(v) + "/s" }

func fmtMs(v float64) string { return roundDur(time.Duration(v * float64(time.Millisecond))) }

func fmtKiB(v float64) string { return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) + " KiB" }

// writePlots writes each named chart into dir and logs the paths.
func writePlots(dir string, charts map[string][]byte, order []string, logf func(string, ...any)) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("-plot: %w", err)
	}
	for _, name := range order {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, charts[name], 0o644); err != nil {
			return fmt.Errorf("-plot: %w", err)
		}
		logf("sseload: wrote %s", p)
	}
	return nil
}

func colorOf(impl string, i int) string {
	if c, ok := implColor[impl]; ok {
		return c
	}
	return palette[i%len(palette)]
}

// fanoutCharts draws the fan-out comparison: throughput against clients,
// latency percentiles at each rate, and memory per idle connection.
func fanoutCharts(cfg *config, impls []string, results []*result) (map[string][]byte, []string) {
	byKey := map[string]*result{}
	for _, r := range results {
		byKey[fmt.Sprintf("%s/%d", r.impl, r.clients)] = r
	}
	xs := make([]float64, len(cfg.clients))
	for i, n := range cfg.clients {
		xs[i] = float64(n)
	}
	get := func(impl string, f func(r *result) (float64, bool)) []float64 {
		ys := make([]float64, len(cfg.clients))
		for i, n := range cfg.clients {
			ys[i] = math.NaN()
			if r := byKey[fmt.Sprintf("%s/%d", impl, n)]; r != nil && r.err == nil {
				if v, ok := f(r); ok {
					ys[i] = v
				}
			}
		}
		return ys
	}
	charts := map[string][]byte{}
	var order []string

	var tput []plotSeries
	for i, impl := range impls {
		tput = append(tput, plotSeries{name: implTitle[impl], color: colorOf(impl, i), xs: xs,
			ys: get(impl, func(r *result) (float64, bool) { return r.tput.perSec, r.tput.ok() && r.tput.perSec > 0 })})
	}
	charts["throughput.svg"] = lineChart("Fan-out throughput", "Deliveries per second against connected clients, per implementation; higher is better.",
		xs, fmtCount, "connected clients", fmtRate, "deliveries per second (log)", tput)
	order = append(order, "throughput.svg")

	for _, rate := range cfg.rates {
		var lat []plotSeries
		for i, impl := range impls {
			for _, q := range []struct {
				name   string
				dashed bool
				pick   func(m measurement) time.Duration
			}{{"p50", true, func(m measurement) time.Duration { return m.p50 }}, {"p99", false, func(m measurement) time.Duration { return m.p99 }}} {
				lat = append(lat, plotSeries{name: implTitle[impl] + " " + q.name, color: colorOf(impl, i), dashed: q.dashed, xs: xs,
					ys: get(impl, func(r *result) (float64, bool) {
						m, ok := r.latency[rate]
						return float64(q.pick(m)) / float64(time.Millisecond), ok && delivered(m)
					})})
			}
		}
		name := fmt.Sprintf("latency-%d.svg", rate)
		charts[name] = lineChart(fmt.Sprintf("Publish→receive latency at %d events/s", rate),
			"p50 (dashed) and p99 (solid) against connected clients, per implementation; lower is better.",
			xs, fmtCount, "connected clients", fmtMs, "latency (log)", lat)
		order = append(order, name)
	}

	var mem []plotSeries
	values := make([][]float64, len(cfg.clients))
	for g := range values {
		values[g] = make([]float64, len(impls))
	}
	groups := make([]string, len(cfg.clients))
	for g, n := range cfg.clients {
		groups[g] = fmtCount(float64(n)) + " clients"
	}
	for s, impl := range impls {
		mem = append(mem, plotSeries{name: implTitle[impl], color: colorOf(impl, s)})
		ys := get(impl, func(r *result) (float64, bool) { return r.heapStackConn / 1024, r.memErr == nil && !r.heapUnknown })
		for g := range cfg.clients {
			values[g][s] = ys[g]
		}
	}
	charts["memory.svg"] = barChart("Memory per idle connection", "Server heap+stack per idle connection, per implementation; lower is better.",
		groups, mem, values, false, fmtKiB, "heap+stack per connection")
	order = append(order, "memory.svg")
	return charts, order
}

// stalledCharts draws the healthy clients' p99 per implementation,
// without stalled clients and with each count of them.
func stalledCharts(cfg *config, results []*stalledResult) (map[string][]byte, []string) {
	series := []plotSeries{{name: "no stalled clients", color: palette[0]}}
	for i, n := range cfg.stalled {
		series = append(series, plotSeries{name: fmt.Sprintf("%s stalled clients", fmtCount(float64(n))), color: palette[1+i%(len(palette)-1)]})
	}
	groups := make([]string, len(results))
	values := make([][]float64, len(results))
	for g, res := range results {
		groups[g] = implTitle[res.impl]
		runs := append([]*stalledRun{res.baseline}, res.runs...)
		values[g] = make([]float64, len(runs))
		for s, r := range runs {
			values[g][s] = math.NaN()
			if r != nil && r.err == nil && r.healthy.rr.delivered > 0 {
				values[g][s] = float64(r.healthy.p99) / float64(time.Millisecond)
			}
		}
	}
	desc := fmt.Sprintf("p99 publish→receive of %d healthy clients, %d-byte events at %d/s, per implementation; lower is better.",
		cfg.healthy, cfg.stallSize, cfg.stallRate)
	return map[string][]byte{"stalled-p99.svg": barChart("Healthy clients' p99 beside stalled readers", desc,
		groups, series, values, true, fmtMs, "healthy p99 (log)")}, []string{"stalled-p99.svg"}
}
