package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// childEnv marks a process started by the driver as a server (tests use
// it to run the test binary as the server).
const childEnv = "SSELOAD_CHILD"

// server is a running server process (or a -target) and its control API.
type server struct {
	impl string
	addr string
	cmd  *exec.Cmd // nil for a -target
	hc   *http.Client

	// hub is set for an ssehub process, which has no control API: the
	// driver publishes to it and reads its figures itself.
	hub *hubProc
	// exited, when set, is closed once a goroutine's cmd.Wait returned.
	exited chan struct{}
}

// startServer starts this binary as a server of impl in a child process
// and waits for its address.
func startServer(ctx context.Context, impl, host string, stderr io.Writer) (*server, error) {
	return startChild(ctx, impl, []string{"-serve=" + impl, "-listen=" + net.JoinHostPort(host, "0")}, stderr)
}

// startChild starts this binary with args as a server in a child process
// that dies with this one, and waits for its address.
func startChild(ctx context.Context, impl string, args []string, stderr io.Writer) (*server, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	killWithParent(cmd)
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s server: %w", impl, err)
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), listenLine); ok {
				addrc <- a
			}
		}
		close(addrc) // the process ended, or closed its stdout
	}()
	s := &server{impl: impl, cmd: cmd, hc: &http.Client{}}
	select {
	case a, ok := <-addrc:
		if ok {
			s.addr = a
			return s, nil
		}
		err = errors.New("it exited without listening (its error is above)")
	case <-time.After(20 * time.Second):
		err = errors.New("no address within 20s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.stop()
	return nil, fmt.Errorf("start %s server: %w", impl, err)
}

// stop ends a server process the driver started.
func (s *server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	if s.exited != nil {
		<-s.exited
	} else {
		_ = s.cmd.Wait()
	}
	s.cmd = nil
}

func (s *server) call(ctx context.Context, method, path string, q url.Values, v any) error {
	u := "http://" + s.addr + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err
	}
	body, err := roundTrip(s.hc, req, 1<<20)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(body, v)
}

// roundTrip sends req and returns up to limit bytes of the body of a 200
// answer; another status is an error with the start of the body.
func roundTrip(hc *http.Client, req *http.Request, limit int64) ([]byte, error) {
	res, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, limit))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", res.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

func (s *server) stats(ctx context.Context, gc bool) (serverStats, error) {
	if s.hub != nil {
		return s.hub.stats(ctx)
	}
	var st serverStats
	q := url.Values{}
	if gc {
		q.Set("gc", "1")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := s.call(ctx, http.MethodGet, "/ctl/stats", q, &st)
	return st, err
}

func (s *server) publish(ctx context.Context, kind string, run int64, n, size, rate int) (publishResult, error) {
	if s.hub != nil {
		return s.hub.publish(ctx, kind, run, n, size, rate)
	}
	var res publishResult
	q := url.Values{"kind": {kind}, "run": {strconv.FormatInt(run, 10)}, "n": {strconv.Itoa(n)},
		"size": {strconv.Itoa(size)}, "rate": {strconv.Itoa(rate)}}
	err := s.call(ctx, http.MethodPost, "/ctl/publish", q, &res)
	return res, err
}

// runIDs numbers runs and priming events; unique within the driver.
var runIDs atomic.Int64

// result holds every measurement of one implementation at one client count.
type result struct {
	impl    string
	clients int
	events  int
	err     error // setting up failed; no measurement

	memErr        error
	heapStackConn float64 // bytes per idle connection
	heapUnknown   bool    // the server exposes no heap and stack figures
	rssConn       float64
	goroutines    float64 // server goroutines per idle connection

	foreign float64 // cores other processes used meanwhile

	tput    measurement
	latency map[int]measurement // by rate: what the table shows (with rounds, the medians)
	rounds  []latencyRound      // every latency round, in run order; round 1 is measureOne's
	profile string
}

// latencyRound is one round of latency runs of one implementation at one
// client count, in its own server process.
type latencyRound struct {
	latency map[int]measurement // by rate
	foreign float64             // cores other processes used meanwhile
	err     error               // setting up failed; every rate has it too
}

// measurement is one throughput or latency run.
type measurement struct {
	err         error
	rr          runResult
	seconds     float64 // publish start to last delivery
	perSec      float64 // deliveries per second
	publishErrs int
	publishErr  string
	p50         time.Duration
	p99         time.Duration
	max         time.Duration
	stalled     bool
	serverCPU   time.Duration // CPU the server process used during the run
	clientCPU   time.Duration // CPU this (client) process used during the run
	medianOf    int           // > 0: medians over this many latency rounds, counts summed
	startNS     int64         // unix ns the publish request was sent
	maxCall     time.Duration // the slowest publish call
	callBlocked bool          // a publish call was still running when the run ended
	pubPerSec   float64       // publish calls that succeeded per second
	// bySecond is the p99 of the events published in each second of the
	// run, from its start (latency runs).
	bySecond []time.Duration
}

func (m measurement) ok() bool { return m.err == nil && m.rr.clients > 0 }

// drive runs every scenario for every implementation and client count and
// prints the report.
func drive(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	if cfg.cpuProfDir != "" {
		if err := os.MkdirAll(cfg.cpuProfDir, 0o755); err != nil {
			return err
		}
		abs, err := filepath.Abs(cfg.cpuProfDir)
		if err != nil {
			return err
		}
		cfg.cpuProfDir = abs
	}
	switch cfg.scenario {
	case scenarioStalled:
		cleanup, err := prepareSSEHub(ctx, cfg, cfg.impls, logf)
		if err != nil {
			return err
		}
		defer cleanup()
		return driveStalled(ctx, cfg, stdout, logf)
	case scenarioCluster:
		return driveCluster(ctx, cfg, stdout, logf)
	}
	impls := cfg.impls
	if cfg.target != "" {
		s := &server{addr: cfg.target, hc: &http.Client{}}
		st, err := s.stats(ctx, false)
		if err != nil {
			return fmt.Errorf("-target %s: not an sseload server: %w", cfg.target, err)
		}
		impls = []string{st.Impl}
	}
	cleanup, err := prepareSSEHub(ctx, cfg, impls, logf)
	if err != nil {
		return err
	}
	defer cleanup()
	if st := takeCPUSnapshot(); st.jiffies {
		time.Sleep(time.Second)
		if cores, ok := foreignLoad(st, takeCPUSnapshot()); ok && cores > 0.2 {
			logf("sseload: warning: other processes are using %.1f cores of %d; results will be skewed", cores, runtime.NumCPU())
		}
	}
	start := time.Now()
	cpuStart := takeCPUSnapshot()
	results, err := measureAll(ctx, cfg, impls, logf)
	if err != nil {
		return err
	}
	foreign, _ := foreignLoad(cpuStart, takeCPUSnapshot())
	writeReport(stdout, cfg, impls, results, time.Since(start), foreign)
	if cfg.plotDir != "" {
		charts, order := fanoutCharts(cfg, impls, results)
		if err := writePlots(cfg.plotDir, charts, order, logf); err != nil {
			return err
		}
	}
	for _, r := range results {
		if r.err != nil {
			return fmt.Errorf("%s with %d clients: %w", r.impl, r.clients, r.err)
		}
	}
	for _, r := range results {
		for k, rd := range r.rounds {
			if rd.err != nil {
				return fmt.Errorf("%s with %d clients, latency round %d: %w", r.impl, r.clients, k+1, rd.err)
			}
		}
	}
	return nil
}

// measureAll measures every implementation at every client count, all
// rounds of one client count before the next, and returns one result per
// implementation and client count, in the order of cfg.clients and
// impls. It stops with ctx's error when ctx is cancelled.
func measureAll(ctx context.Context, cfg *config, impls []string, logf func(string, ...any)) ([]*result, error) {
	var results []*result
	prog := newProgress(len(cfg.clients) * len(impls) * effectiveRounds(cfg))
	for i, n := range cfg.clients {
		rs, err := measureRounds(ctx, cfg, impls, n, cfg.events[i], prog, logf)
		if err != nil {
			return nil, err
		}
		results = append(results, rs...)
	}
	return results, nil
}

// measureRounds runs every round at n clients: round 1 is measureOne for
// each implementation; rounds 2..cfg.rounds measure latency only. Within
// a round the implementations run in roundOrder, so slow drifts of the
// machine hit each alike. With more than one round, each result's
// latency is set to the medians over its rounds.
func measureRounds(ctx context.Context, cfg *config, impls []string, n, m int, prog *progress, logf func(string, ...any)) ([]*result, error) {
	byImpl := make(map[string]*result, len(impls))
	for _, impl := range roundOrder(impls, 0) {
		if err := beforeMeasurement(ctx, cfg, logf); err != nil {
			return nil, err
		}
		prog.step(logf, fmt.Sprintf("%s, %d clients", impl, n))
		snap := takeCPUSnapshot()
		r := measureOne(ctx, cfg, impl, n, m, logf)
		r.foreign, _ = foreignLoad(snap, takeCPUSnapshot())
		r.rounds = []latencyRound{firstRound(r, cfg.rates)}
		byImpl[impl] = r
	}
	rounds := effectiveRounds(cfg)
	for k := 1; k < rounds; k++ {
		for _, impl := range roundOrder(impls, k) {
			if err := beforeMeasurement(ctx, cfg, logf); err != nil {
				return nil, err
			}
			prog.step(logf, fmt.Sprintf("%s, %d clients, latency round %d", impl, n, k+1))
			r := byImpl[impl]
			r.rounds = append(r.rounds, measureRound(ctx, cfg, impl, n, k, logf))
		}
	}
	out := make([]*result, 0, len(impls))
	for _, impl := range impls {
		r := byImpl[impl]
		if rounds > 1 {
			r.summarize(cfg.rates)
		}
		out = append(out, r)
	}
	return out, nil
}

// effectiveRounds is the number of rounds per client count: cfg.rounds,
// or 1 when there is no latency run to repeat.
func effectiveRounds(cfg *config) int {
	if len(cfg.rates) == 0 {
		return 1
	}
	return cfg.rounds
}

// roundOrder is the order the implementations run in round k (0-based):
// impls rotated to start at index k mod len(impls), so that none always
// goes first.
func roundOrder(impls []string, k int) []string {
	if len(impls) == 0 {
		return nil
	}
	i := k % len(impls)
	return append(slices.Clone(impls[i:]), impls[:i]...)
}

// beforeMeasurement returns ctx's error if it is cancelled, and otherwise
// waits for other processes to go idle if -wait-idle asks for it.
func beforeMeasurement(ctx context.Context, cfg *config, logf func(string, ...any)) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if cfg.waitIdle > 0 {
		waitIdle(ctx, cfg.waitIdle, logf)
	}
	return nil
}

// firstRound is round 1 of r, the latency runs measureOne made; if
// setting up failed, every rate has that error.
func firstRound(r *result, rates []int) latencyRound {
	rd := latencyRound{latency: r.latency}
	if r.err != nil {
		rd = failedRound(r.err, rates)
	}
	rd.foreign = r.foreign
	return rd
}

// failedRound is a round whose setup failed with err.
func failedRound(err error, rates []int) latencyRound {
	rd := latencyRound{latency: make(map[int]measurement, len(rates)), err: err}
	for _, rate := range rates {
		rd.latency[rate] = measurement{err: err}
	}
	return rd
}

// measureRound is latency round k (0-based, k > 0) of impl at n clients:
// a fresh server process, n freshly connected and settled clients, and a
// latency run at every rate; no memory or throughput run.
func measureRound(ctx context.Context, cfg *config, impl string, n, k int, logf func(string, ...any)) latencyRound {
	snap := takeCPUSnapshot()
	rd := roundRuns(ctx, cfg, impl, n, k, logf)
	rd.foreign, _ = foreignLoad(snap, takeCPUSnapshot())
	return rd
}

// roundRuns sets up and runs the latency runs of measureRound.
func roundRuns(ctx context.Context, cfg *config, impl string, n, k int, logf func(string, ...any)) latencyRound {
	s, err := openServer(ctx, cfg, impl)
	if err != nil {
		logf("%-7s n=%-6d round %d: %v", impl, n, k+1, err)
		return failedRound(err, cfg.rates)
	}
	defer s.stop()
	p, err := connectClients(ctx, cfg, s, n)
	if err != nil {
		logf("%-7s n=%-6d round %d: %v", impl, n, k+1, err)
		return failedRound(err, cfg.rates)
	}
	defer p.close()
	return latencyRound{latency: measureLatency(ctx, cfg, s, p, impl, n, k, logf)}
}

// openServer starts a server process for impl, or returns -target.
func openServer(ctx context.Context, cfg *config, impl string) (*server, error) {
	if impl == implSSEHub {
		return startSSEHub(ctx, cfg, os.Stderr)
	}
	if cfg.target != "" {
		return &server{impl: impl, addr: cfg.target, hc: &http.Client{}}, nil
	}
	return startServer(ctx, impl, cfg.host, os.Stderr)
}

// connectClients connects n clients to s and settles them; on error it
// closes whatever it connected.
func connectClients(ctx context.Context, cfg *config, s *server, n int) (*pool, error) {
	p := newPool(s.addr, n)
	if s.hub != nil {
		p.path, p.header = s.hub.streamPath, s.hub.streamHeader
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	err := p.connect(cctx)
	cancel()
	if err != nil {
		p.close()
		return nil, fmt.Errorf("connecting %d clients: %w", n, err)
	}
	if err := settle(ctx, s, p, cfg); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// measureOne measures memory, throughput and latency for one
// implementation at n clients, in a fresh server process.
func measureOne(ctx context.Context, cfg *config, impl string, n, m int, logf func(string, ...any)) *result {
	r := &result{impl: impl, clients: n, events: m, latency: map[int]measurement{}}
	s, err := openServer(ctx, cfg, impl)
	if err != nil {
		r.err = err
		return r
	}
	defer s.stop()

	base, err := s.stats(ctx, true)
	if err != nil {
		r.err = err
		return r
	}
	p, err := connectClients(ctx, cfg, s, n)
	if err != nil {
		r.err = err
		return r
	}
	defer p.close()

	// Memory: idle connections, after a GC.
	loaded, err := s.stats(ctx, true)
	if err != nil {
		r.memErr = err
	} else if base.NoRuntime || loaded.NoRuntime {
		r.heapUnknown = true
		r.rssConn = (float64(loaded.RSS) - float64(base.RSS)) / float64(n)
		logf("%-7s n=%-6d memory: heap+stack unknown (the server exposes no runtime figures), %.0f B RSS/conn", impl, n, r.rssConn)
	} else {
		r.heapStackConn = (float64(loaded.HeapInuse+loaded.StackInuse) - float64(base.HeapInuse+base.StackInuse)) / float64(n)
		r.rssConn = (float64(loaded.RSS) - float64(base.RSS)) / float64(n)
		r.goroutines = float64(loaded.Goroutines-base.Goroutines) / float64(n)
		logf("%-7s n=%-6d memory: %.0f B heap+stack/conn (heap %.0f, stack %.0f), %.0f B RSS/conn, %.2f goroutines/conn", impl, n,
			r.heapStackConn, (float64(loaded.HeapInuse)-float64(base.HeapInuse))/float64(n),
			(float64(loaded.StackInuse)-float64(base.StackInuse))/float64(n), r.rssConn, r.goroutines)
	}

	// Throughput.
	if cfg.cpuProfDir != "" {
		r.profile = filepath.Join(cfg.cpuProfDir, fmt.Sprintf("cpu-%s-%d.prof", impl, n))
	}
	r.tput = runScenario(ctx, cfg, s, p, m, 0, r.profile)
	logf("%-7s n=%-6d throughput: %s", impl, n, describe(r.tput))

	r.latency = measureLatency(ctx, cfg, s, p, impl, n, 0, logf)
	return r
}

// measureLatency makes the latency run at each rate of round k (0-based)
// and returns them by rate.
func measureLatency(ctx context.Context, cfg *config, s *server, p *pool, impl string, n, k int, logf func(string, ...any)) map[int]measurement {
	out := make(map[int]measurement, len(cfg.rates))
	round := ""
	if k > 0 {
		round = fmt.Sprintf(" round %d", k+1)
	}
	for _, rate := range cfg.rates {
		if err := reconnect(ctx, s, p, cfg); err != nil {
			out[rate] = measurement{err: err}
			continue
		}
		events := max(1, int(float64(rate)*cfg.latencyDur.Seconds()))
		profile := ""
		if cfg.cpuProfDir != "" {
			name := fmt.Sprintf("cpu-%s-%d-rate%d", impl, n, rate)
			if k > 0 {
				name += fmt.Sprintf("-round%d", k+1)
			}
			profile = filepath.Join(cfg.cpuProfDir, name+".prof")
		}
		lm := runScenario(ctx, cfg, s, p, events, rate, profile)
		out[rate] = lm
		logf("%-7s n=%-6d%s latency @%d/s: %s", impl, n, round, rate, describe(lm))
	}
	return out
}

// summarize sets r.latency, the values the table shows, to the medians
// over r.rounds at each rate.
func (r *result) summarize(rates []int) {
	r.latency = make(map[int]measurement, len(rates))
	for _, rate := range rates {
		runs := make([]measurement, 0, len(r.rounds))
		for _, rd := range r.rounds {
			runs = append(runs, rd.latency[rate])
		}
		r.latency[rate] = combineRounds(runs)
	}
}

// delivered reports whether m is a latency run that delivered events, one
// a median is taken over.
func delivered(m measurement) bool { return m.ok() && m.rr.delivered > 0 }

// combineRounds merges the latency runs of one rate over several rounds:
// p50, p99 and max are each the median over the rounds that delivered;
// deliveries, losses, drops and publish errors are summed over those
// rounds. With no such round it returns the first round's run, so the
// table shows its error as it would for one round.
func combineRounds(runs []measurement) measurement {
	var out measurement
	var p50s, p99s, maxs []time.Duration
	for _, m := range runs {
		if !delivered(m) {
			continue
		}
		p50s, p99s, maxs = append(p50s, m.p50), append(p99s, m.p99), append(maxs, m.max)
		out.rr.clients = max(out.rr.clients, m.rr.clients)
		out.rr.delivered += m.rr.delivered
		out.rr.lost += m.rr.lost
		out.rr.dups += m.rr.dups
		out.rr.dropped += m.rr.dropped
		out.publishErrs += m.publishErrs
		if out.publishErr == "" {
			out.publishErr = m.publishErr
		}
		out.stalled = out.stalled || m.stalled
	}
	if len(p99s) == 0 {
		if len(runs) == 0 {
			return measurement{err: errors.New("no latency round")}
		}
		return runs[0]
	}
	out.p50, out.p99, out.max = median(p50s), median(p99s), median(maxs)
	out.medianOf = len(p99s)
	return out
}

// median returns the middle value of ds, or the mean of the two middle
// values when there is an even number of them. It sorts ds.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	h := len(ds) / 2
	if len(ds)%2 == 1 {
		return ds[h]
	}
	return (ds[h-1] + ds[h]) / 2
}

// reconnect re-dials clients a server dropped, so every scenario starts
// with all n, and settles them.
func reconnect(ctx context.Context, s *server, p *pool, cfg *config) error {
	if int(p.alive.Load()) < len(p.clients) {
		cctx, cancel := context.WithTimeout(ctx, cfg.timeout)
		err := p.connect(cctx)
		cancel()
		if err != nil {
			return fmt.Errorf("reconnecting: %w", err)
		}
	}
	return settle(ctx, s, p, cfg)
}

// settle waits until every connected client is subscribed and has
// received everything published before: it publishes priming events
// every 250ms until each client has seen one published after settle
// began. Streams are in order, so that one is also a barrier.
func settle(ctx context.Context, s *server, p *pool, cfg *config) error {
	ctx, cancel := context.WithTimeout(ctx, min(cfg.timeout, 60*time.Second))
	defer cancel()
	first := runIDs.Add(1)
	k := first
	for {
		if _, err := s.publish(ctx, "p", k, 1, cfg.size, 0); err != nil {
			return fmt.Errorf("priming: %w", err)
		}
		for range 25 {
			primed, alive := p.primed(first)
			if alive == 0 {
				return errors.New("priming: every client was disconnected")
			}
			if primed == alive {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("priming: only %d of %d clients subscribed: %w", primed, alive, ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
		k = runIDs.Add(1)
	}
}

// runScenario publishes m events (rate 0: as fast as accepted) and waits
// until every client connected at the start has them all, nothing has
// arrived for a while after publishing ended, or the hard timeout.
func runScenario(ctx context.Context, cfg *config, s *server, p *pool, m, rate int, profile string) measurement {
	var out measurement
	counted, alive := p.aliveSet()
	if alive == 0 {
		out.err = errors.New("no client connected")
		return out
	}
	spec := &runSpec{id: runIDs.Add(1), events: m, latency: rate > 0}
	if s.hub != nil {
		spec.orders = len(s.hub.inCall) // -publishers
	}
	p.begin(spec)

	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	if profile != "" {
		if err := s.call(ctx, http.MethodPost, "/ctl/cpuprofile", url.Values{"start": {profile}}, nil); err != nil {
			out.err = fmt.Errorf("cpu profile: %w", err)
			return out
		}
	}
	type pubDone struct {
		res publishResult
		err error
	}
	pubc := make(chan pubDone, 1)
	before, _ := s.stats(ctx, false)
	cpu0 := cpuTime()
	t0 := time.Now()
	go func() {
		res, err := s.publish(ctx, "d", spec.id, m, cfg.size, rate)
		pubc <- pubDone{res, err}
	}()

	const quiet = 5 * time.Second // no progress for this long after publishing ends: stop
	var pub *pubDone
	lastProgress, lastCount := time.Now(), int64(-1)
	var lastSettledCheck time.Time
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case d := <-pubc:
			pub = &d
		case <-ctx.Done():
			out.stalled = true
			break wait
		case <-tick.C:
		}
		if pub != nil && p.completed.Load() >= int64(alive) {
			break
		}
		if pub != nil && pub.err != nil {
			out.err = fmt.Errorf("publish: %w", pub.err)
			break
		}
		if pub != nil && time.Since(lastSettledCheck) > 100*time.Millisecond {
			// Clients the server dropped will never complete.
			lastSettledCheck = time.Now()
			if p.settled(spec, counted) {
				break
			}
		}
		if c := p.progress(spec); c != lastCount {
			lastCount, lastProgress = c, time.Now()
		} else if pub != nil && time.Since(lastProgress) > quiet {
			out.stalled = true
			break
		}
	}
	if profile != "" {
		pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.call(pctx, http.MethodPost, "/ctl/cpuprofile", url.Values{"stop": {"1"}}, nil); err != nil && out.err == nil {
			out.err = fmt.Errorf("cpu profile: %w", err)
		}
		pcancel()
	}
	if pub == nil {
		cancel() // the hard timeout hit while publishing: stop the publisher
		d := <-pubc
		pub = &d
	}
	// The run's context may be past its deadline: ask with a fresh one.
	out.startNS, out.maxCall = t0.UnixNano(), time.Duration(pub.res.MaxCallNS)
	if after, err := s.stats(context.WithoutCancel(ctx), false); err == nil {
		if before.CPUNS > 0 {
			out.serverCPU = time.Duration(after.CPUNS - before.CPUNS)
		}
		if pub.err != nil && after.InCallSinceNS > 0 {
			// The publish request was abandoned with a call still running.
			out.callBlocked = true
			out.maxCall = max(out.maxCall, time.Since(time.Unix(0, after.InCallSinceNS)))
		}
	}
	out.clientCPU = time.Duration(cpuTime() - cpu0)
	out.rr = p.collect(spec, counted)
	out.publishErrs = pub.res.Errors
	out.publishErr = pub.res.FirstErr
	if pub.res.ElapsedNS > 0 {
		out.pubPerSec = float64(pub.res.Published) / (float64(pub.res.ElapsedNS) / 1e9)
	}
	if out.rr.lastAt > 0 {
		out.seconds = float64(out.rr.lastAt-t0.UnixNano()) / 1e9
		if out.seconds > 0 {
			out.perSec = float64(out.rr.delivered) / out.seconds
		}
	}
	if len(out.rr.lats) > 0 {
		out.bySecond = p99BySecond(out.rr.lats, out.rr.pubs, t0.UnixNano())
		out.rr.pubs = nil
		slices.Sort(out.rr.lats)
		out.p50 = time.Duration(percentile(out.rr.lats, 0.50))
		out.p99 = time.Duration(percentile(out.rr.lats, 0.99))
		out.max = time.Duration(out.rr.lats[len(out.rr.lats)-1])
		out.rr.lats = nil
	}
	return out
}

// percentile returns the nearest-rank percentile of sorted samples.
func percentile(sorted []int64, q float64) int64 {
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func describe(m measurement) string {
	if m.err != nil {
		return "error: " + m.err.Error()
	}
	var b strings.Builder
	if m.rr.lats == nil && m.p50 > 0 {
		fmt.Fprintf(&b, "p50 %s p99 %s max %s, ", roundDur(m.p50), roundDur(m.p99), roundDur(m.max))
	}
	fmt.Fprintf(&b, "%d deliveries in %.2fs = %s/s, %d lost, %d duplicates, %d clients dropped",
		m.rr.delivered, m.seconds, si(m.perSec), m.rr.lost, m.rr.dups, m.rr.dropped)
	fmt.Fprintf(&b, ", CPU server %.2fs clients %.2fs", m.serverCPU.Seconds(), m.clientCPU.Seconds())
	if m.pubPerSec > 0 {
		fmt.Fprintf(&b, ", %s publishes/s", si(m.pubPerSec))
	}
	if m.publishErrs > 0 {
		fmt.Fprintf(&b, ", %d publish errors (%s)", m.publishErrs, m.publishErr)
	}
	if m.stalled {
		b.WriteString(", stopped early (no progress or hard timeout)")
	}
	if m.rr.firstErr != nil {
		fmt.Fprintf(&b, ", first client error: %v", m.rr.firstErr)
	}
	return b.String()
}

// si formats a rate with a k/M suffix.
func si(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 2, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// waitIdle waits, up to limit, until other processes use less than a
// fifth of a core over one second.
func waitIdle(ctx context.Context, limit time.Duration, logf func(string, ...any)) {
	deadline := time.Now().Add(limit)
	for {
		a := takeCPUSnapshot()
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		cores, ok := foreignLoad(a, takeCPUSnapshot())
		if !ok || cores < 0.2 {
			return
		}
		if time.Now().After(deadline) {
			logf("sseload: other processes still use %.1f cores; going on", cores)
			return
		}
	}
}

// p99BySecond returns the p99 of lats for the events published in each
// second from start (pubs[i] is when the event of lats[i] was published).
func p99BySecond(lats, pubs []int64, start int64) []time.Duration {
	var secs [][]int64
	for i, l := range lats {
		if i >= len(pubs) {
			break
		}
		k := int((pubs[i] - start) / int64(time.Second))
		if k < 0 {
			k = 0
		}
		for len(secs) <= k {
			secs = append(secs, nil)
		}
		secs[k] = append(secs[k], l)
	}
	out := make([]time.Duration, len(secs))
	for k, ls := range secs {
		if len(ls) > 0 {
			slices.Sort(ls)
			out[k] = time.Duration(percentile(ls, 0.99))
		}
	}
	return out
}
