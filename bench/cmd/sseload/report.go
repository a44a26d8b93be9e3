package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// writeReport prints the environment and one markdown table with every
// scenario, each implementation's result and the ratio of ours to the
// best peer.
func writeReport(w io.Writer, cfg *config, impls []string, results []*result, took time.Duration, foreign float64) {
	fmt.Fprintf(w, "## sseload results\n\n")
	fmt.Fprintf(w, "- date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "- machine: %d cores (%s), %s, %s/%s\n", runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "- command: `sseload %s`\n", strings.Join(os.Args[1:], " "))
	runs := fmt.Sprintf("%v each", cfg.latencyDur)
	if cfg.rounds > 1 && len(cfg.rates) > 0 {
		runs += fmt.Sprintf(", %d rounds interleaved", cfg.rounds)
	}
	fmt.Fprintf(w, "- event data: %d bytes; latency runs: %s; run took %v\n", cfg.size, runs, took.Round(time.Second))
	fmt.Fprintf(w, "- other processes on the machine used %.2f cores on average during the run\n", foreign)
	fmt.Fprintf(w, "- servers run in a child process each, clients in the driver process, over 127.0.0.1\n")
	for _, impl := range impls {
		fmt.Fprintf(w, "- %s: %s\n", implTitle[impl], settings[impl])
	}
	fmt.Fprintln(w)

	byKey := map[string]*result{}
	for _, r := range results {
		byKey[fmt.Sprintf("%s/%d", r.impl, r.clients)] = r
	}
	peers := []string{}
	for _, impl := range impls {
		if !isOurs(impl) {
			peers = append(peers, impl)
		}
	}
	ratio := len(peers) > 0 && len(peers) < len(impls)

	fmt.Fprintf(w, "| scenario | clients |")
	for _, impl := range impls {
		fmt.Fprintf(w, " %s |", implTitle[impl])
	}
	if ratio {
		fmt.Fprintf(w, " ours ÷ best peer |")
	}
	fmt.Fprintf(w, "\n|---|---:|")
	for range impls {
		fmt.Fprintf(w, "---|")
	}
	if ratio {
		fmt.Fprintf(w, "---:|")
	}
	fmt.Fprintln(w)

	type row struct {
		name    string
		higher  bool // higher is better
		latency bool // a latency row: with rounds, shown even if round 1 failed
		cell    func(r *result) (string, float64, bool)
	}
	rows := []row{{
		name:   "throughput, deliveries/s (lost) ↑",
		higher: true,
		cell: func(r *result) (string, float64, bool) {
			m := r.tput
			if !m.ok() {
				return errCell(m.err), 0, false
			}
			return fmt.Sprintf("%s (%s lost)", si(m.perSec), count(m.rr.lost)), m.perSec, true
		},
	}}
	for _, rate := range cfg.rates {
		rows = append(rows, row{
			name:    fmt.Sprintf("latency @ %d ev/s, p50 / p99 / max (lost) ↓", rate),
			latency: true,
			cell: func(r *result) (string, float64, bool) {
				m, ok := r.latency[rate]
				if !ok || !m.ok() {
					return errCell(m.err), 0, false
				}
				if m.rr.delivered == 0 {
					return fmt.Sprintf("nothing delivered (%s lost)", count(m.rr.lost)), 0, false
				}
				return latencyCell(m), float64(m.p99), true
			},
		})
	}
	if slices.Contains(impls, implSSEHub) {
		rows = append(rows, row{
			name:   "publishes/s in the throughput run ↑",
			higher: true,
			cell: func(r *result) (string, float64, bool) {
				if !r.tput.ok() {
					return errCell(r.tput.err), 0, false
				}
				return si(r.tput.pubPerSec), r.tput.pubPerSec, true
			},
		})
	}
	rows = append(rows, row{
		name: "memory per idle conn, heap+stack ↓",
		cell: func(r *result) (string, float64, bool) {
			if r.err != nil || r.memErr != nil {
				return errCell(r.memErr), 0, false
			}
			if r.heapUnknown {
				return "n/a", 0, false
			}
			return bytesCell(r.heapStackConn), r.heapStackConn, true
		},
	}, row{
		name: "memory per idle conn, RSS ↓",
		cell: func(r *result) (string, float64, bool) {
			if r.err != nil || r.memErr != nil {
				return errCell(r.memErr), 0, false
			}
			return bytesCell(r.rssConn), r.rssConn, true
		},
	})

	for _, rw := range rows {
		for _, n := range cfg.clients {
			fmt.Fprintf(w, "| %s | %d |", rw.name, n)
			var ours, best float64
			var haveOurs, haveBest bool
			for _, impl := range impls {
				r := byKey[fmt.Sprintf("%s/%d", impl, n)]
				if r == nil {
					fmt.Fprintf(w, " – |")
					continue
				}
				if r.err != nil && !(rw.latency && cfg.rounds > 1) {
					fmt.Fprintf(w, " %s |", errCell(r.err))
					continue
				}
				text, v, ok := rw.cell(r)
				fmt.Fprintf(w, " %s |", text)
				if !ok {
					continue
				}
				if impl == implStream {
					ours, haveOurs = v, true
				} else if isOurs(impl) {
					// another of ours: shown, not compared
				} else if !haveBest || (rw.higher && v > best) || (!rw.higher && v < best) {
					best, haveBest = v, true
				}
			}
			if ratio {
				if haveOurs && haveBest && best > 0 {
					fmt.Fprintf(w, " %.2f× |", ours/best)
				} else {
					fmt.Fprintf(w, " – |")
				}
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "↑ higher is better, ↓ lower is better. The ratio column divides ours by the best peer's value:")
	fmt.Fprintln(w, "above 1 is better for throughput; below 1 is better for latency (p99) and memory.")
	fmt.Fprintln(w, "Throughput is every client's events (clients × events) over the time from the publish request")
	fmt.Fprintln(w, "to the last delivery; lost counts events a connected client never got (a client a server")
	fmt.Fprintln(w, "disconnects loses the rest of the run).")

	// Run details that do not fit in the table.
	var notes []string
	for _, r := range results {
		if r.err != nil {
			continue
		}
		line := fmt.Sprintf("%s, %d clients: %.2f server goroutines per idle connection", implTitle[r.impl], r.clients, r.goroutines)
		if r.heapUnknown {
			line = fmt.Sprintf("%s, %d clients: heap, stack and goroutines unknown (no runtime figures from the server)", implTitle[r.impl], r.clients)
		}
		if r.tput.ok() {
			line += fmt.Sprintf("; throughput run CPU: server %.2fs, clients %.2fs, over %.2fs",
				r.tput.serverCPU.Seconds(), r.tput.clientCPU.Seconds(), r.tput.seconds)
		}
		if r.foreign >= 0.2 {
			line += fmt.Sprintf("; **other processes used %.1f cores meanwhile: skewed**", r.foreign)
		}
		notes = append(notes, line)
		if r.tput.publishErrs > 0 {
			notes = append(notes, fmt.Sprintf("%s, %d clients: throughput run had %d publish errors (%s)", implTitle[r.impl], r.clients, r.tput.publishErrs, r.tput.publishErr))
		}
		if r.tput.rr.dropped > 0 {
			notes = append(notes, fmt.Sprintf("%s, %d clients: %d clients disconnected during the throughput run", implTitle[r.impl], r.clients, r.tput.rr.dropped))
		}
		if r.tput.stalled {
			notes = append(notes, fmt.Sprintf("%s, %d clients: throughput run stopped before every event arrived", implTitle[r.impl], r.clients))
		}
		for _, rate := range cfg.rates {
			if m := r.latency[rate]; m.rr.dropped > 0 || m.publishErrs > 0 {
				line := fmt.Sprintf("%s, %d clients, %d ev/s: %d clients disconnected, %d publish errors", implTitle[r.impl], r.clients, rate, m.rr.dropped, m.publishErrs)
				if m.medianOf > 0 {
					line += fmt.Sprintf(" (over %d rounds)", m.medianOf)
				}
				notes = append(notes, line)
			}
		}
		if r.profile != "" {
			notes = append(notes, fmt.Sprintf("%s, %d clients: server CPU profile of the throughput run in %s", implTitle[r.impl], r.clients, r.profile))
		}
	}
	fmt.Fprintf(w, "\nEvents per throughput run:")
	for i, n := range cfg.clients {
		fmt.Fprintf(w, " %d clients × %d", n, cfg.events[i])
		if i < len(cfg.clients)-1 {
			fmt.Fprint(w, ",")
		}
	}
	fmt.Fprintln(w, ".")
	for _, r := range results {
		notes = append(notes, roundNotes(r)...)
	}
	if cfg.rounds > 1 && len(cfg.rates) > 0 {
		writeRounds(w, cfg, impls, byKey, ratio)
		if len(notes) > 0 {
			fmt.Fprintf(w, "\n### Notes\n")
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}

// latencyCell is a latency run's table cell: p50 / p99 / max and losses,
// and over how many rounds the medians were taken.
func latencyCell(m measurement) string {
	if m.medianOf > 0 {
		return fmt.Sprintf("%s / %s / %s ms (%s lost; median of %d)", ms(m.p50), ms(m.p99), ms(m.max), count(m.rr.lost), m.medianOf)
	}
	return fmt.Sprintf("%s / %s / %s ms (%s lost)", ms(m.p50), ms(m.p99), ms(m.max), count(m.rr.lost))
}

// roundNotes flags the latency rounds after the first that ran while
// other processes were busy (round 1's load is in r.foreign).
func roundNotes(r *result) []string {
	var notes []string
	for k := 1; k < len(r.rounds); k++ {
		if f := r.rounds[k].foreign; f >= 0.2 {
			notes = append(notes, fmt.Sprintf("%s, %d clients, latency round %d: **other processes used %.1f cores meanwhile: skewed**",
				implTitle[r.impl], r.clients, k+1, f))
		}
	}
	return notes
}

// writeRounds prints, for each client count and rate, every
// implementation's p99 in each latency round in run order, and, if ratio,
// ours ÷ the best peer of each round.
func writeRounds(w io.Writer, cfg *config, impls []string, byKey map[string]*result, ratio bool) {
	fmt.Fprintf(w, "\n### Latency p99 per round\n\n")
	fmt.Fprintln(w, "p99 in ms of every latency round, in run order. Round 1 ran with the memory and throughput runs;")
	fmt.Fprintln(w, "each later round measured latency only, every implementation in a fresh server with fresh clients,")
	fmt.Fprintln(w, "in an order that rotates from round to round. The table shows the median over the rounds.")
	for _, n := range cfg.clients {
		var rs []*result
		for _, impl := range impls {
			if r := byKey[fmt.Sprintf("%s/%d", impl, n)]; r != nil {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			continue
		}
		for _, rate := range cfg.rates {
			fmt.Fprintf(w, "\n**%d clients, %d ev/s**\n\n", n, rate)
			for _, r := range rs {
				var cells []string
				for _, rd := range r.rounds {
					cells = append(cells, roundCell(rd.latency[rate]))
				}
				fmt.Fprintf(w, "- %s: %s\n", implTitle[r.impl], strings.Join(cells, ", "))
			}
			if ratio {
				fmt.Fprintf(w, "- ours ÷ best peer per round: %s\n", ratioLine(roundRatios(rs, rate)))
			}
		}
	}
}

// roundCell is one round's entry in the per-round list: its p99 in ms,
// or why it has none.
func roundCell(m measurement) string {
	switch {
	case !m.ok():
		return errCell(m.err)
	case m.rr.delivered == 0:
		return "nothing delivered"
	}
	return ms(m.p99)
}

// roundRatios returns, for each round, ours ÷ the lowest p99 among the
// peers in that round, or NaN where ours or every peer has none.
func roundRatios(rs []*result, rate int) []float64 {
	rounds := 0
	for _, r := range rs {
		rounds = max(rounds, len(r.rounds))
	}
	out := make([]float64, rounds)
	for k := range out {
		var ours, best time.Duration
		for _, r := range rs {
			if k >= len(r.rounds) || !delivered(r.rounds[k].latency[rate]) {
				continue
			}
			p99 := r.rounds[k].latency[rate].p99
			switch {
			case r.impl == implStream:
				ours = p99
			case isOurs(r.impl):
				// another of ours: shown, not compared
			case best == 0 || p99 < best:
				best = p99
			}
		}
		out[k] = math.NaN()
		if ours > 0 && best > 0 {
			out[k] = float64(ours) / float64(best)
		}
	}
	return out
}

// ratioLine formats per-round ratios, how many rounds ours was no worse
// in (a ratio of at most 1.00 as printed) and their mean.
func ratioLine(ratios []float64) string {
	cells := make([]string, len(ratios))
	var compared, noWorse int
	var sum float64
	for k, v := range ratios {
		if math.IsNaN(v) {
			cells[k] = "–"
			continue
		}
		cells[k] = fmt.Sprintf("%.2f", v)
		compared++
		sum += v
		if math.Round(v*100) <= 100 {
			noWorse++
		}
	}
	line := strings.Join(cells, ", ")
	if compared == 0 {
		return line + " (no round to compare)"
	}
	return fmt.Sprintf("%s (no worse in %d of %d), mean %.2f", line, noWorse, compared, sum/float64(compared))
}

func errCell(err error) string {
	if err == nil {
		return "failed"
	}
	s := err.Error()
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return "error: " + strings.ReplaceAll(s, "|", "/")
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond))
}

func bytesCell(b float64) string {
	if b >= 1<<10 {
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

func count(n int64) string {
	return fmt.Sprintf("%d", n)
}

// cpuModel reads the CPU model name from /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
