package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The stalled scenario (-scenario stalled): N clients connect and never
// read, beside a few hundred healthy clients that read everything, while
// the server publishes events at a fixed rate. It shows whether healthy
// clients still get every event in time, whether a publish call ever
// waits on a stalled client, and when and how the stalled connections
// end. Each implementation is measured twice, in fresh servers: once
// without stalled clients (the baseline of the healthy clients' latency)
// and once with them.

// Server side: the control process notes when each stalled client's
// stream starts and ends (its handler returns).

// stallLog records the streams of stalled clients, by id.
type stallLog struct {
	mu   sync.Mutex
	recs map[int]*stallServerRecord
}

// stallServerRecord is the server's view of one stalled client's stream.
type stallServerRecord struct {
	ID      int   `json:"id"`
	StartNS int64 `json:"start_ns"`         // unix ns the handler started
	EndNS   int64 `json:"end_ns,omitempty"` // unix ns the handler returned; 0: still running
}

// stalledID reports whether r is a stalled client's stream request, and
// its id.
func stalledID(r *http.Request) (int, bool) {
	q := r.URL.Query()
	if q.Get("role") != "stalled" {
		return 0, false
	}
	id, err := strconv.Atoi(q.Get("id"))
	return id, err == nil
}

func (l *stallLog) begin(id int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.recs == nil {
		l.recs = make(map[int]*stallServerRecord)
	}
	l.recs[id] = &stallServerRecord{ID: id, StartNS: time.Now().UnixNano()}
}

func (l *stallLog) end(id int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.recs[id]; r != nil {
		r.EndNS = time.Now().UnixNano()
	}
}

func (l *stallLog) snapshot() []stallServerRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]stallServerRecord, 0, len(l.recs))
	for _, r := range l.recs {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b stallServerRecord) int { return a.ID - b.ID })
	return out
}

// stalledStreams answers GET /ctl/stalled with every stalled stream seen.
func (c *control) stalledStreams(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, c.stalls.snapshot())
}

// engineCounts are an implementation's own counts of its clients and of
// those it disconnected (ours keep them; the peers do not).
type engineCounts struct {
	Clients           int    `json:"clients"`
	SlowDisconnects   uint64 `json:"slow_disconnects"`
	BudgetDisconnects uint64 `json:"budget_disconnects"`
	ClientDisconnects uint64 `json:"client_disconnects"`
}

// countsOf returns b's counts, or nil if it keeps none.
func countsOf(b broadcaster) *engineCounts {
	if c, ok := b.(interface{ counts() engineCounts }); ok {
		v := c.counts()
		return &v
	}
	return nil
}

// Driver side.

// stallGroup is one child process holding stalled clients.
type stallGroup struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	n     int
}

// startStallGroup starts a child process with n stalled clients of ids
// base.. connected to addr, and waits until all are connected.
func startStallGroup(ctx context.Context, cfg *config, s *server, base, n int) (*stallGroup, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-stall-clients=" + strconv.Itoa(n), "-stall-id-base=" + strconv.Itoa(base),
		"-rcvbuf=" + strconv.Itoa(cfg.rcvbuf), "-target=" + s.addr, "-timeout=" + cfg.timeout.String()}
	env := append(os.Environ(), childEnv+"=1")
	if s.hub != nil {
		args = append(args, "-stall-path="+s.hub.streamPath)
		env = append(env, stallHeaderEnv+"="+s.hub.streamHeader)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = env
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start stalled clients: %w", err)
	}
	g := &stallGroup{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), n: n}
	ready := make(chan error, 1)
	go func() {
		line, err := g.out.ReadString('\n')
		if err == nil && !strings.HasPrefix(line, stallReadyLine) {
			err = fmt.Errorf("unexpected line %q", line)
		}
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-time.After(cfg.timeout):
		err = errors.New("not connected within -timeout")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		g.stop()
		return nil, fmt.Errorf("stalled clients: %w", err)
	}
	return g, nil
}

// report asks the child for what its clients saw; the child then resets
// its connections and exits.
func (g *stallGroup) report() ([]stallClientRecord, error) {
	if _, err := io.WriteString(g.stdin, "report\n"); err != nil {
		return nil, err
	}
	type answer struct {
		line string
		err  error
	}
	ac := make(chan answer, 1)
	go func() {
		line, err := g.out.ReadString('\n')
		ac <- answer{line, err}
	}()
	var a answer
	select {
	case a = <-ac:
	case <-time.After(30 * time.Second):
		a.err = errors.New("no report within 30s")
	}
	if a.err != nil {
		return nil, fmt.Errorf("stalled clients report: %w", a.err)
	}
	js, ok := strings.CutPrefix(a.line, stallReportLine)
	if !ok {
		return nil, fmt.Errorf("stalled clients report: unexpected line %.80q", a.line)
	}
	var recs []stallClientRecord
	if err := json.Unmarshal([]byte(js), &recs); err != nil {
		return nil, fmt.Errorf("stalled clients report: %w", err)
	}
	return recs, nil
}

// stop ends the child, waiting briefly for it to exit by itself.
func (g *stallGroup) stop() {
	if g.cmd == nil {
		return
	}
	g.stdin.Close()
	go func() { _, _ = io.Copy(io.Discard, g.out) }() // a report nobody asked for
	done := make(chan struct{})
	go func() { _ = g.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = g.cmd.Process.Kill()
		<-done
	}
	g.cmd = nil
}

// stalledRun is one run of the stalled scenario: one implementation,
// stalled clients (0 for the baseline run) beside cfg.healthy healthy ones.
type stalledRun struct {
	impl    string
	stalled int
	err     error

	healthy  measurement   // the healthy clients' run
	complete int           // healthy clients with every event, in order, once
	maxCall  time.Duration // slowest Broadcast/Publish call
	blocked  bool          // a call was still blocked when the run ended

	connected int // stalled streams the server was serving when publishing began

	full       []time.Duration // a stalled socket's last bytes arrived (it was full) − publish start
	queued     []int           // bytes in each stalled socket's receive queue at the end
	ended      []time.Duration // server ended a stalled stream: handler return − publish start
	endedFull  []time.Duration // server ended a stalled stream − its socket was full
	sawClose   []time.Duration // a stalled client saw its connection end − publish start
	afterEnd   []time.Duration // saw close − server ended it, for streams the server ended
	est1, est5 int             // ended streams still ESTABLISHED for the client 1 s / 5 s after the end
	obs1, obs5 int             // ended streams observed for 1 s / 5 s after the end
	clientErr  string          // the stalled clients could not report
	noEnds     bool            // the server does not report when it ends streams (ssehub)

	countsBefore, countsAfter *engineCounts

	heapPeak       uint64 // HeapInuse+StackInuse, highest sample
	rssPeak        uint64 // VmHWM at the end
	goroutinesBase int    // server goroutines with every client connected, before publishing
	goroutinesPeak int
	goroutinesEnd  int // at the end of the observation

	foreign float64
}

// stalledResult holds one implementation's baseline and stalled runs.
type stalledResult struct {
	impl     string
	baseline *stalledRun
	runs     []*stalledRun // one per cfg.stalled
}

// stalledSteps is how many runs the stalled scenario makes.
func stalledSteps(cfg *config, impls []string) int { return len(impls) * (1 + len(cfg.stalled)) }

// measureStalled runs the stalled scenario for every implementation.
func measureStalled(ctx context.Context, cfg *config, impls []string, prog *progress, logf func(string, ...any)) ([]*stalledResult, error) {
	var out []*stalledResult
	for _, impl := range impls {
		res := &stalledResult{impl: impl}
		for i, n := range append([]int{0}, cfg.stalled...) {
			if err := beforeMeasurement(ctx, cfg, logf); err != nil {
				return nil, err
			}
			prog.step(logf, fmt.Sprintf("%s, %d stalled + %d healthy clients", impl, n, cfg.healthy))
			snap := takeCPUSnapshot()
			r := stalledOnce(ctx, cfg, impl, n, logf)
			r.foreign, _ = foreignLoad(snap, takeCPUSnapshot())
			logf("%-13s stalled=%-6d %s", impl, n, r.summary())
			if i == 0 {
				res.baseline = r
			} else {
				res.runs = append(res.runs, r)
			}
		}
		out = append(out, res)
	}
	return out, ctx.Err()
}

// stalledOnce is one run in a fresh server process.
func stalledOnce(ctx context.Context, cfg *config, impl string, n int, logf func(string, ...any)) *stalledRun {
	r := &stalledRun{impl: impl, stalled: n}
	s, err := openServer(ctx, cfg, impl)
	if err != nil {
		r.err = err
		return r
	}
	defer s.stop()

	var groups []*stallGroup
	defer func() {
		for _, g := range groups {
			g.stop()
		}
	}()
	for base := 0; base < n; base += stallPerProcess {
		g, err := startStallGroup(ctx, cfg, s, base, min(stallPerProcess, n-base))
		if err != nil {
			r.err = err
			return r
		}
		groups = append(groups, g)
	}
	if err := waitServing(ctx, s, n, cfg.timeout); err != nil {
		r.err = err
		return r
	}
	p, err := connectClients(ctx, cfg, s, cfg.healthy)
	if err != nil {
		r.err = err
		return r
	}
	defer p.close()

	before, err := s.stats(ctx, false)
	if err != nil {
		r.err = err
		return r
	}
	r.goroutinesBase, r.countsBefore = before.Goroutines, before.Counters
	r.connected = int(before.Active) - cfg.healthy

	// Sample the server while the run lasts.
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		r.sample(sctx, s)
	}()

	events := max(1, int(float64(cfg.stallRate)*cfg.stallDur.Seconds()))
	rcfg := *cfg
	rcfg.size = cfg.stallSize
	rcfg.timeout = cfg.stallDur + stallGrace(cfg)
	profile := ""
	if cfg.cpuProfDir != "" { // made absolute by drive
		profile = filepath.Join(cfg.cpuProfDir, fmt.Sprintf("cpu-stalled-%s-%d.prof", impl, n))
	}
	r.healthy = runScenario(ctx, &rcfg, s, p, events, cfg.stallRate, profile)
	r.maxCall, r.blocked = r.healthy.maxCall, r.healthy.callBlocked
	r.complete = r.healthy.rr.complete
	published := time.Now()

	// Give the streams the server ended time to show whether their
	// connections close: until 5 s after the last end (1 s with -quick),
	// at least 1 s and at most 12 s after the run.
	watchEnd := 5*time.Second + 200*time.Millisecond
	if cfg.quick {
		watchEnd = time.Second + 200*time.Millisecond
	}
	var ends []stallServerRecord
	if s.hub != nil && n > 0 {
		// No handler ends to watch: the hub's count of its streams
		// stands for them, each drop in it for an end.
		r.noEnds = true
		until, last := published.Add(time.Second), -1
		if r.countsBefore != nil {
			last = r.countsBefore.Clients
		}
		for ctx.Err() == nil {
			if st, err := s.stats(ctx, false); err == nil && st.Counters != nil {
				if last >= 0 && st.Counters.Clients < last {
					until = earlier(later(until, time.Now().Add(watchEnd)), published.Add(12*time.Second))
				}
				last = st.Counters.Clients
			}
			if !time.Now().Before(until) {
				break
			}
			time.Sleep(min(250*time.Millisecond, time.Until(until)))
		}
	}
	for n > 0 && s.hub == nil {
		recs, err := stalledRecords(ctx, s)
		if err != nil {
			r.err = err
			break
		}
		ends = recs
		until := published.Add(time.Second)
		for _, e := range recs {
			if e.EndNS > 0 {
				until = later(until, time.Unix(0, e.EndNS).Add(watchEnd))
			}
		}
		until = earlier(until, published.Add(12*time.Second))
		if !time.Now().Before(until) || ctx.Err() != nil {
			break
		}
		time.Sleep(min(250*time.Millisecond, time.Until(until)))
	}
	stopSampling()
	<-sampled
	if after, err := s.stats(context.WithoutCancel(ctx), false); err == nil {
		r.goroutinesEnd, r.rssPeak, r.countsAfter = after.Goroutines, after.RSSPeak, after.Counters
		r.heapPeak = max(r.heapPeak, after.HeapInuse+after.StackInuse)
		r.goroutinesPeak = max(r.goroutinesPeak, after.Goroutines)
	}
	if n == 0 || r.err != nil {
		return r
	}
	if s.hub == nil {
		if recs, err := stalledRecords(context.WithoutCancel(ctx), s); err == nil {
			ends = recs
		}
	}
	reported := time.Now()
	var clients []stallClientRecord
	for _, g := range groups {
		recs, err := g.report()
		if err != nil {
			r.clientErr = err.Error()
			logf("%s: %v", impl, err)
			break
		}
		clients = append(clients, recs...)
	}
	r.summarizeStalls(ends, clients, time.Unix(0, r.healthy.startNS), reported)
	return r
}

// stallGrace is how long a run may last after publishing should have
// ended, for the healthy clients to catch up or a blocked publisher to
// return: as long as publishing (at least 5 s), or 2 s with -quick.
func stallGrace(cfg *config) time.Duration {
	if cfg.quick {
		return 2 * time.Second
	}
	return max(5*time.Second, cfg.stallDur)
}

// summarizeStalls derives the stalled clients' figures from the server's
// and the clients' records; t0 is the start of publishing, reported the
// moment the clients were asked for their records.
func (r *stalledRun) summarizeStalls(ends []stallServerRecord, clients []stallClientRecord, t0, reported time.Time) {
	endOf := make(map[int]int64, len(ends))
	for _, e := range ends {
		if e.EndNS > 0 {
			endOf[e.ID] = e.EndNS
			r.ended = append(r.ended, time.Duration(e.EndNS-t0.UnixNano()))
		}
	}
	for _, c := range clients {
		if c.ClosedNS > 0 {
			r.sawClose = append(r.sawClose, time.Duration(c.ClosedNS-t0.UnixNano()))
		}
		if c.FullNS > 0 {
			r.full = append(r.full, time.Duration(c.FullNS-t0.UnixNano()))
		}
		r.queued = append(r.queued, c.Queued)
		end, ok := endOf[c.ID]
		if !ok {
			continue
		}
		if c.FullNS > 0 {
			r.endedFull = append(r.endedFull, time.Duration(end-c.FullNS))
		}
		if c.ClosedNS > 0 {
			r.afterEnd = append(r.afterEnd, time.Duration(c.ClosedNS-end))
		}
		for _, w := range []struct {
			after    time.Duration
			est, obs *int
		}{{time.Second, &r.est1, &r.obs1}, {5 * time.Second, &r.est5, &r.obs5}} {
			at := end + int64(w.after)
			if at > reported.UnixNano() {
				continue // not observed that long
			}
			*w.obs++
			if c.ClosedNS == 0 || c.ClosedNS > at {
				*w.est++
			}
		}
	}
	for _, ds := range [][]time.Duration{r.full, r.ended, r.endedFull, r.sawClose, r.afterEnd} {
		slices.Sort(ds)
	}
	slices.Sort(r.queued)
}

// sample polls the server's memory and goroutines until ctx ends.
func (r *stalledRun) sample(ctx context.Context, s *server) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if st, err := s.stats(ctx, false); err == nil {
			r.heapPeak = max(r.heapPeak, st.HeapInuse+st.StackInuse)
			r.goroutinesPeak = max(r.goroutinesPeak, st.Goroutines)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// waitServing waits until the server runs a handler for each of n
// stalled clients (ssehub: until it counts n streams).
func waitServing(ctx context.Context, s *server, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		served, err := stalledServed(ctx, s)
		if err != nil {
			return err
		}
		if served >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d stalled clients are served after %v", served, n, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stalledServed is how many stalled clients' streams the server has
// begun; for ssehub, which only counts its streams, how many it serves.
func stalledServed(ctx context.Context, s *server) (int, error) {
	if s.hub == nil {
		recs, err := stalledRecords(ctx, s)
		return len(recs), err
	}
	st, err := s.stats(ctx, false)
	switch {
	case err != nil:
		return 0, err
	case st.Counters == nil:
		return 0, errors.New("ssehub serves no stream count in /metrics (" + hubMetricClients + ")")
	}
	return st.Counters.Clients, nil
}

func stalledRecords(ctx context.Context, s *server) ([]stallServerRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var recs []stallServerRecord
	err := s.call(ctx, http.MethodGet, "/ctl/stalled", nil, &recs)
	return recs, err
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// disconnects is how many clients ours disconnected during the run as
// slow or over budget, or -1 for an implementation without counts.
func (r *stalledRun) disconnects() (slow, budget int64) {
	if r.countsBefore == nil || r.countsAfter == nil {
		return -1, -1
	}
	return int64(r.countsAfter.SlowDisconnects - r.countsBefore.SlowDisconnects),
		int64(r.countsAfter.BudgetDisconnects - r.countsBefore.BudgetDisconnects)
}

// summary is the run's log line.
func (r *stalledRun) summary() string {
	if r.err != nil {
		return "error: " + r.err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "healthy %d/%d complete, p50 %s p99 %s, %d dropped; slowest publish %s",
		r.complete, r.healthy.rr.clients, roundDur(r.healthy.p50), roundDur(r.healthy.p99), r.healthy.rr.dropped, roundDur(r.maxCall))
	if r.blocked {
		b.WriteString(" (still blocked)")
	}
	if r.stalled > 0 {
		fmt.Fprintf(&b, "; stalled: %d served, %d ended by the server, %d saw the end", r.connected, len(r.ended), len(r.sawClose))
		if r.obs1 > 0 {
			fmt.Fprintf(&b, ", %d/%d still established 1s after the end", r.est1, r.obs1)
		}
		if r.obs5 > 0 {
			fmt.Fprintf(&b, ", %d/%d after 5s", r.est5, r.obs5)
		}
	}
	fmt.Fprintf(&b, "; heap peak %s, RSS peak %s, goroutines %d/%d/%d", mib(r.heapPeak), mib(r.rssPeak),
		r.goroutinesBase, r.goroutinesPeak, r.goroutinesEnd)
	return b.String()
}

func kib(b int) string { return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10)) }

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// writeStalledReport prints the stalled scenario's report: one table per
// stalled client count, a row per figure, a column per implementation.
func writeStalledReport(w io.Writer, cfg *config, results []*stalledResult, took time.Duration, foreign float64) {
	fmt.Fprintf(w, "## sseload results: stalled readers\n\n")
	writeEnv(w, took, foreign)
	rcv := "default receive buffers"
	if cfg.rcvbuf > 0 {
		rcv = fmt.Sprintf("SO_RCVBUF %d bytes, set before connecting; Linux doubles it", cfg.rcvbuf)
	}
	fmt.Fprintf(w, "- %d healthy clients read everything; stalled clients send their request and never read (%s), held by child processes of %d at most\n",
		cfg.healthy, rcv, stallPerProcess)
	fmt.Fprintf(w, "- events of %d bytes at %d/s for %v; each implementation ran without stalled clients (baseline) and with them, each run in a fresh server process\n",
		cfg.stallSize, cfg.stallRate, roundDur(cfg.stallDur))
	fmt.Fprintf(w, "- server, healthy clients (driver) and stalled clients in separate processes, over 127.0.0.1\n")
	for _, res := range results {
		fmt.Fprintf(w, "- %s: %s\n", implTitle[res.impl], settings[res.impl])
	}
	for k, n := range cfg.stalled {
		fmt.Fprintf(w, "\n### %d stalled clients beside %d healthy\n\n", n, cfg.healthy)
		fmt.Fprintf(w, "| |")
		for _, res := range results {
			fmt.Fprintf(w, " %s |", implTitle[res.impl])
		}
		fmt.Fprintf(w, "\n|---|")
		for range results {
			fmt.Fprintf(w, "---|")
		}
		fmt.Fprintln(w)
		for _, row := range stalledRows {
			fmt.Fprintf(w, "| %s |", row.name)
			for _, res := range results {
				r := res.runs[k]
				switch {
				case r.err != nil:
					fmt.Fprintf(w, " %s |", errCell(r.err))
				case res.baseline.err != nil && row.baseline:
					fmt.Fprintf(w, " %s |", errCell(res.baseline.err))
				default:
					fmt.Fprintf(w, " %s |", row.cell(r, res.baseline, cfg))
				}
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Times of the stalled clients count from the start of publishing. \"Full\" is when the last bytes")
	fmt.Fprintln(w, "arrived in a stalled socket (it is never read, so its receive buffer then held all it could);")
	fmt.Fprintln(w, "\"ended\" is when the server's handler for the stream returned; \"saw the end\" is when the client's")
	fmt.Fprintln(w, "socket left ESTABLISHED (a FIN or a reset arrived), observed without reading. A FIN queued behind")
	fmt.Fprintln(w, "unsent data cannot reach a client that does not read: such a connection stays established.")
	var notes []string
	for _, res := range results {
		for _, r := range append([]*stalledRun{res.baseline}, res.runs...) {
			if r.foreign >= 0.2 {
				notes = append(notes, fmt.Sprintf("%s, %d stalled: **other processes used %.1f cores meanwhile: skewed**", implTitle[r.impl], r.stalled, r.foreign))
			}
			if r.clientErr != "" {
				notes = append(notes, fmt.Sprintf("%s, %d stalled: %s", implTitle[r.impl], r.stalled, r.clientErr))
			}
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}

// writeEnv prints the run's environment lines shared by both reports.
func writeEnv(w io.Writer, took time.Duration, foreign float64) {
	fmt.Fprintf(w, "- date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "- machine: %d cores (%s), %s\n", runtime.NumCPU(), cpuModel(), runtime.Version())
	fmt.Fprintf(w, "- command: `sseload %s`; run took %s\n", strings.Join(os.Args[1:], " "), roundDur(took))
	fmt.Fprintf(w, "- other processes on the machine used %.2f cores on average during the run\n", foreign)
}

// stalledRow is one figure of the stalled report.
type stalledRow struct {
	name     string
	baseline bool // needs the baseline run
	cell     func(r, base *stalledRun, cfg *config) string
}

// noEndsCell fills the rows about the server's own ends of streams for a
// server that does not report them.
const noEndsCell = "not reported (no control API)"

var stalledRows = []stalledRow{
	{name: "healthy clients with every event, in order, once", cell: func(r, _ *stalledRun, _ *config) string {
		return fmt.Sprintf("%d/%d (%d events lost)", r.complete, r.healthy.rr.clients, r.healthy.rr.lost)
	}},
	{name: "healthy clients disconnected", cell: func(r, _ *stalledRun, _ *config) string {
		return strconv.Itoa(r.healthy.rr.dropped)
	}},
	{name: "healthy p50 / p99 publish→receive", cell: func(r, _ *stalledRun, _ *config) string {
		if r.healthy.rr.delivered == 0 {
			return "nothing delivered"
		}
		return fmt.Sprintf("%s / %s", roundDur(r.healthy.p50), roundDur(r.healthy.p99))
	}},
	{name: "healthy p99 without stalled clients", baseline: true, cell: func(_, base *stalledRun, _ *config) string {
		return fmt.Sprintf("%s (%d/%d complete)", roundDur(base.healthy.p99), base.complete, base.healthy.rr.clients)
	}},
	{name: "p99 ratio, with ÷ without (target ≤ 3×)", baseline: true, cell: func(r, base *stalledRun, _ *config) string {
		if base.healthy.p99 <= 0 || r.healthy.rr.delivered == 0 {
			return "–"
		}
		return fmt.Sprintf("%.1f×", float64(r.healthy.p99)/float64(base.healthy.p99))
	}},
	{name: "healthy p99 by second of publishing", cell: func(r, _ *stalledRun, _ *config) string {
		if len(r.healthy.bySecond) == 0 {
			return "–"
		}
		parts := make([]string, len(r.healthy.bySecond))
		for i, d := range r.healthy.bySecond {
			parts[i] = roundDur(d)
		}
		return strings.Join(parts, ", ")
	}},
	{name: "slowest Broadcast/Publish call", cell: func(r, _ *stalledRun, _ *config) string {
		s := roundDur(r.maxCall)
		if r.blocked {
			s = "≥ " + s + ", still blocked at the end"
		}
		return s
	}},
	{name: "stalled streams served when publishing began", cell: func(r, _ *stalledRun, _ *config) string {
		return fmt.Sprintf("%d/%d", r.connected, r.stalled)
	}},
	{name: "stalled sockets full: last bytes arrived (after: p50 / max)", cell: func(r, _ *stalledRun, _ *config) string {
		if r.clientErr != "" {
			return "no report"
		}
		return countAndTimes(len(r.full), r.stalled, r.full)
	}},
	{name: "bytes left unread in a stalled socket at the end: p50 / max", cell: func(r, _ *stalledRun, _ *config) string {
		if len(r.queued) == 0 {
			return "no report"
		}
		return fmt.Sprintf("%s / %s", kib(r.queued[(len(r.queued)-1)/2]), kib(r.queued[len(r.queued)-1]))
	}},
	{name: "stalled streams ended by the server (after: p50 / max)", cell: func(r, _ *stalledRun, _ *config) string {
		if r.noEnds {
			return noEndsCell
		}
		return countAndTimes(len(r.ended), r.stalled, r.ended)
	}},
	{name: "… counted from when their socket was full: p50 / max", cell: func(r, _ *stalledRun, _ *config) string {
		if r.noEnds {
			return noEndsCell
		}
		if len(r.endedFull) == 0 {
			return "–"
		}
		return fmt.Sprintf("%s / %s", roundDur(r.endedFull[(len(r.endedFull)-1)/2]), roundDur(r.endedFull[len(r.endedFull)-1]))
	}},
	{name: "server's counts: slow / budget disconnects", cell: func(r, _ *stalledRun, _ *config) string {
		slow, budget := r.disconnects()
		if slow < 0 {
			return "not counted"
		}
		return fmt.Sprintf("%d / %d", slow, budget)
	}},
	{name: "stalled clients that saw their connection end (after: p50 / max)", cell: func(r, _ *stalledRun, _ *config) string {
		if r.clientErr != "" {
			return "no report"
		}
		return countAndTimes(len(r.sawClose), r.stalled, r.sawClose)
	}},
	{name: "ended streams still established 1 s / 5 s after the end", cell: func(r, _ *stalledRun, _ *config) string {
		if r.noEnds {
			return noEndsCell
		}
		if len(r.ended) == 0 {
			return "none ended"
		}
		return fmt.Sprintf("1 s: %s; 5 s: %s", fraction(r.est1, r.obs1), fraction(r.est5, r.obs5))
	}},
	{name: "server heap peak (HeapInuse+StackInuse) / RSS peak", cell: func(r, _ *stalledRun, _ *config) string {
		return mib(r.heapPeak) + " / " + mib(r.rssPeak)
	}},
	{name: "server goroutines: before / peak / end", cell: func(r, _ *stalledRun, _ *config) string {
		return fmt.Sprintf("%d / %d / %d", r.goroutinesBase, r.goroutinesPeak, r.goroutinesEnd)
	}},
}

// countAndTimes is "k/n (p50 / max)" of sorted durations ds.
func countAndTimes(k, n int, ds []time.Duration) string {
	if len(ds) == 0 {
		return fmt.Sprintf("%d/%d", k, n)
	}
	return fmt.Sprintf("%d/%d (%s / %s)", k, n, roundDur(ds[(len(ds)-1)/2]), roundDur(ds[len(ds)-1]))
}

// fraction is "k/n", or "not observed" when n is 0.
func fraction(k, n int) string {
	if n == 0 {
		return "not observed"
	}
	return fmt.Sprintf("%d/%d", k, n)
}

// driveStalled runs the stalled scenario and prints its report.
func driveStalled(ctx context.Context, cfg *config, stdout io.Writer, logf func(string, ...any)) error {
	if st := takeCPUSnapshot(); st.jiffies {
		time.Sleep(time.Second)
		if cores, ok := foreignLoad(st, takeCPUSnapshot()); ok && cores > 0.2 {
			logf("sseload: warning: other processes are using %.1f cores; results will be skewed", cores)
		}
	}
	prog := newProgress(stalledSteps(cfg, cfg.impls))
	cpuStart := takeCPUSnapshot()
	results, err := measureStalled(ctx, cfg, cfg.impls, prog, logf)
	if err != nil {
		return err
	}
	foreign, _ := foreignLoad(cpuStart, takeCPUSnapshot())
	logf("sseload: done, %s", describeTook(prog))
	writeStalledReport(stdout, cfg, results, time.Since(prog.start), foreign)
	if cfg.plotDir != "" {
		charts, order := stalledCharts(cfg, results)
		if err := writePlots(cfg.plotDir, charts, order, logf); err != nil {
			return err
		}
	}
	for _, res := range results {
		for _, r := range append([]*stalledRun{res.baseline}, res.runs...) {
			if r.err != nil {
				return fmt.Errorf("%s with %d stalled clients: %w", r.impl, r.stalled, r.err)
			}
		}
	}
	return nil
}
