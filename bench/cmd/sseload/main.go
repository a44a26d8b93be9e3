// Command sseload measures server-sent event broadcast fan-out over real
// loopback TCP: throughput, latency and memory per idle connection, for
// this module's sse.Hub and, side by side in the same run, for
// github.com/tmaxmax/go-sse and github.com/r3labs/sse/v2.
//
// The driver (this process) holds the clients; every server runs in a
// child process (this same binary started with -serve=IMPL), so the two
// share the machine's cores the way a real client and server would.
//
//	go run ./cmd/sseload -quick
//	go run ./cmd/sseload                      # the full comparison
//	go run ./cmd/sseload -serve=stream -listen=127.0.0.1:8080   # a server alone
//
// Only loopback addresses are accepted, as listen address and as target.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Implementation names, as used by -impls and -serve.
const (
	implStream       = "stream"
	implGoSSE        = "gosse"
	implR3labs       = "r3labs"
	implStreamHTTP   = "stream-http"
	implStreamServer = "stream-server"
	implStreamFilter = "stream-server-filter"
	implStreamDrop   = "stream-dropoldest"
)

var allImpls = []string{implStream, implGoSSE, implR3labs, implStreamHTTP, implStreamServer, implStreamFilter, implStreamDrop}

// defaultImpls are compared when -impls is not given; stream-http, the
// Hub serving requests itself, is measured only when asked for.
var defaultImpls = []string{implStream, implGoSSE, implR3labs}

// implTitle is the column heading of each implementation in the report.
var implTitle = map[string]string{
	implStream:       "coregx/stream Hub",
	implGoSSE:        "tmaxmax/go-sse",
	implR3labs:       "r3labs/sse v2",
	implStreamHTTP:   "coregx/stream Hub.ServeHTTP",
	implStreamServer: "coregx/stream Server",
	implStreamFilter: "coregx/stream Server with a Filter",
	implStreamDrop:   "coregx/stream Hub, SlowDropOldest",
	implSSEHub:       "coregx/stream ssehub (Mercure)",
}

// isOurs reports whether impl is this module's, not a peer.
func isOurs(impl string) bool {
	return impl == implStream || impl == implStreamHTTP || impl == implStreamServer || impl == implStreamFilter || impl == implStreamDrop || impl == implSSEHub
}

// Limits that keep every run bounded on a small machine.
const (
	maxClients   = 15000
	maxEvents    = 1_000_000
	maxRate      = 10000
	minSize      = 48
	maxSize      = 16 << 10
	maxDuration  = 60 * time.Second
	maxTimeout   = 5 * time.Minute
	maxRounds    = 20
	quickClients = "100,1000"
	fullClients  = "100,1000,10000"
)

// defaultEvents picks the throughput run length for n clients: the same
// number of deliveries (n×M) at every n where it can, so each run takes a
// few seconds, but never a burst over 1 000 events: the publisher sends
// as fast as the server accepts, and a hub that never blocks its
// publisher must hold the whole burst in each client's queue (the Hub's
// default holds 1 024), or count the overflow as lost.
func defaultEvents(n int, quick bool) int {
	total, lo, hi := 1_000_000, 100, 1000
	if quick {
		total, lo, hi = 200_000, 200, 1000
	}
	return min(max(total/n, lo), hi)
}

// config is the parsed and validated command line.
type config struct {
	// driver mode
	impls      []string
	clients    []int
	events     []int // one per clients entry
	size       int
	rates      []int
	latencyDur time.Duration
	timeout    time.Duration // hard limit of one scenario
	target     string        // host:port of an already running server, or ""
	host       string        // loopback host the servers listen on
	cpuProfDir string
	quick      bool
	waitIdle   time.Duration // wait this long at most for other load to stop
	rounds     int           // latency rounds per client count; 1: latency once, with the rest

	plotDir string // write SVG charts here

	ssehubBin  string // the ssehub binary; "": built from ../cmd/ssehub when -impls has ssehub
	publishers int    // ssehub: publish requests in flight at once

	// the stalled scenario
	scenario  string // scenarioFanout or scenarioStalled
	stalled   []int  // stalled client counts, one run each
	healthy   int    // healthy clients beside them
	stallRate int    // events per second
	stallDur  time.Duration
	stallSize int // event data bytes
	rcvbuf    int // stalled clients' SO_RCVBUF; 0: the system's default

	// server mode
	serve  string
	listen string

	// stalled clients mode (a child process of the stalled scenario)
	stallClients int
	stallIDBase  int
	stallPath    string // the stream request's target; "": stalledPath(id)

	cluster clusterConfig // -scenario cluster, and its nodes
}

// Scenarios, as -scenario names them.
const (
	scenarioFanout  = "fanout"
	scenarioStalled = "stalled"
	scenarioCluster = "cluster"
)

// Defaults and limits of the stalled scenario.
const (
	fullStalled     = "5000,10000"
	quickStalled    = "200"
	maxStalled      = 15000
	maxHealthy      = 1000
	defaultRcvbuf   = 4096
	maxRcvbuf       = 64 << 20
	defaultStallDur = 10 * time.Second
	quickStallDur   = 2 * time.Second
)

// stalledImpls are compared by -scenario stalled when -impls is not
// given: the Hub and the Server, beside the peers.
var stalledImpls = []string{implStream, implStreamServer, implGoSSE, implR3labs}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole command: it parses args, then either serves one
// implementation or drives the comparison. It returns the exit code:
// 0 on success, 2 for bad flags, 1 for a failed run.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "sseload: %v\n", err)
		return 2
	}
	raiseFileLimit(stderr)
	switch {
	case cfg.stallClients > 0:
		err = runStallClients(ctx, cfg, os.Stdin, stdout)
	case cfg.cluster.node != "":
		err = serveClusterNode(ctx, cfg, stdout)
	case cfg.serve != "":
		err = serve(ctx, cfg, stdout, stderr)
	default:
		err = drive(ctx, cfg, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sseload: %v\n", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("sseload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		impls      = fs.String("impls", strings.Join(builtImpls(), ","), "implementations to compare: "+strings.Join(allImpls, ", ")+", "+implSSEHub+" (the Mercure hub cmd/ssehub, in its own process)")
		clients    = fs.String("clients", "", "comma-separated client counts (default "+fullClients+"; with -quick "+quickClients+")")
		events     = fs.String("events", "", "events per throughput run: one number, or one per -clients entry (default 1 000 000 / clients within 100..1000; with -quick 200 000 / clients within 200..1000)")
		size       = fs.Int("size", 64, "event data size in bytes")
		rates      = fs.String("rates", "10,100", "latency scenario publish rates, events per second")
		latencyDur = fs.Duration("latency-duration", 0, "length of each latency run (default 5s; with -quick 1s)")
		timeout    = fs.Duration("timeout", 90*time.Second, "hard limit for one scenario")
		target     = fs.String("target", "", "host:port of a server already started with -serve (loopback only); runs against it instead of starting servers")
		host       = fs.String("host", "127.0.0.1", "loopback address the started servers listen on")
		cpuProfDir = fs.String("cpuprofile-dir", "", "write a server CPU profile of every throughput, latency and stalled run into this directory")
		waitIdle   = fs.Duration("wait-idle", 0, "before each measurement, wait up to this long for other processes to go idle (0: don't wait)")
		rounds     = fs.Int("rounds", 1, "latency rounds per client count, 1.."+strconv.Itoa(maxRounds)+": round 1 measures everything; rounds 2..N measure latency only, each implementation in a fresh server, in an order that rotates every round; the table shows the median")
		quick      = fs.Bool("quick", false, "smoke test: small counts, short latency runs (under a minute)")
		serveImpl  = fs.String("serve", "", "serve one implementation ("+strings.Join(allImpls, ", ")+") instead of driving")
		listen     = fs.String("listen", "127.0.0.1:0", "with -serve: loopback address to listen on")
		plotDir    = fs.String("plot", "", "write SVG charts of the results into this directory")
		ssehubBin  = fs.String("ssehub-bin", "", "with -impls ssehub: the ssehub binary to run (default: built from the repository's cmd/ssehub)")
		publishers = fs.Int("publishers", 1, "with -impls ssehub: publish requests in flight at once, each on its own connection (1: one at a time, in order)")
		scenario   = fs.String("scenario", scenarioFanout, "what to measure: "+scenarioFanout+" (throughput, latency, memory), "+scenarioStalled+" (clients that never read beside healthy ones) or "+scenarioCluster+" (three nodes sharing a broker)")
		stalled    = fs.String("stalled", "", "-scenario stalled: comma-separated counts of stalled clients, one run each (default "+fullStalled+"; with -quick "+quickStalled+")")
		healthy    = fs.Int("healthy", 200, "-scenario stalled: healthy clients beside the stalled ones")
		stallRate  = fs.Int("stall-rate", 1000, "-scenario stalled: events published per second")
		stallDur   = fs.Duration("stall-duration", 0, "-scenario stalled: how long to publish (default 10s; with -quick 2s)")
		rcvbuf     = fs.Int("rcvbuf", defaultRcvbuf, "-scenario stalled: the stalled clients' receive buffer (SO_RCVBUF, set before connecting; Linux doubles it); 0 keeps the system's default")
		stallN     = fs.Int("stall-clients", 0, "internal: run this many stalled clients against -target (a child process of -scenario stalled)")
		stallBase  = fs.Int("stall-id-base", 0, "internal: id of the first of -stall-clients")
		stallPath  = fs.String("stall-path", "", "internal: the request target of -stall-clients (default: the control server's stalled stream)")
	)
	cf := addClusterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg := &config{size: *size, timeout: *timeout, target: *target, host: *host,
		cpuProfDir: *cpuProfDir, quick: *quick, waitIdle: *waitIdle, rounds: *rounds, serve: *serveImpl, listen: *listen,
		plotDir: *plotDir, scenario: *scenario, healthy: *healthy, stallRate: *stallRate, stallDur: *stallDur,
		rcvbuf: *rcvbuf, stallClients: *stallN, stallIDBase: *stallBase, stallPath: *stallPath, ssehubBin: *ssehubBin, publishers: *publishers}

	if cfg.rcvbuf < 0 || cfg.rcvbuf > maxRcvbuf {
		return nil, fmt.Errorf("-rcvbuf: must be between 0 and %d bytes, got %d", maxRcvbuf, cfg.rcvbuf)
	}
	if cfg.stallClients != 0 {
		if cfg.stallClients < 0 || cfg.stallClients > maxStalled {
			return nil, fmt.Errorf("-stall-clients: must be between 1 and %d, got %d", maxStalled, cfg.stallClients)
		}
		if cfg.stallIDBase < 0 {
			return nil, fmt.Errorf("-stall-id-base: must not be negative, got %d", cfg.stallIDBase)
		}
		if err := checkLoopbackHostPort(cfg.target); err != nil {
			return nil, fmt.Errorf("-target (needed by -stall-clients): %w", err)
		}
		if cfg.timeout <= 0 || cfg.timeout > maxTimeout {
			return nil, fmt.Errorf("-timeout: must be > 0 and at most %v, got %v", maxTimeout, cfg.timeout)
		}
		if p := cfg.stallPath; p != "" && (!strings.HasPrefix(p, "/") || strings.ContainsAny(p, " \r\n")) {
			return nil, fmt.Errorf("-stall-path: want a request target starting with /, without spaces or line breaks, got %q", p)
		}
		return cfg, nil
	}
	if cfg.stallPath != "" {
		return nil, errors.New("-stall-path: only with -stall-clients")
	}

	if *cf.node != "" {
		return cfg, parseClusterNode(cfg, cf)
	}

	if cfg.serve != "" {
		if !isImpl(cfg.serve) {
			return nil, fmt.Errorf("-serve: unknown implementation %q (want one of %s)", cfg.serve, strings.Join(allImpls, ", "))
		}
		if err := checkLoopbackHostPort(cfg.listen); err != nil {
			return nil, fmt.Errorf("-listen: %w", err)
		}
		return cfg, nil
	}

	var err error
	switch cfg.scenario {
	case scenarioFanout:
	case scenarioStalled:
		if err := parseStalledFlags(cfg, *stalled, *size, set); err != nil {
			return nil, err
		}
		if !set["impls"] {
			*impls = strings.Join(stalledImpls, ",")
		}
	case scenarioCluster:
		if err := parseClusterFlags(cfg, cf, set, clients, rates); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("-scenario: unknown scenario %q (want %s, %s or %s)", cfg.scenario, scenarioFanout, scenarioStalled, scenarioCluster)
	}
	if cfg.impls, err = parseImpls(*impls); err != nil {
		return nil, fmt.Errorf("-impls: %w", err)
	}
	if err := checkSSEHubFlags(cfg); err != nil {
		return nil, err
	}
	defClients, defDur := fullClients, 5*time.Second
	if cfg.quick {
		defClients, defDur = quickClients, time.Second
	}
	if *clients == "" {
		*clients = defClients
	}
	if cfg.clients, err = parseInts(*clients, 1, maxClients); err != nil {
		return nil, fmt.Errorf("-clients: %w", err)
	}
	if *events == "" {
		for _, n := range cfg.clients {
			cfg.events = append(cfg.events, defaultEvents(n, cfg.quick))
		}
	} else if cfg.events, err = parseInts(*events, 1, maxEvents); err != nil {
		return nil, fmt.Errorf("-events: %w", err)
	}
	switch {
	case len(cfg.events) == 1:
		for len(cfg.events) < len(cfg.clients) {
			cfg.events = append(cfg.events, cfg.events[0])
		}
	case len(cfg.events) != len(cfg.clients):
		return nil, fmt.Errorf("-events: got %d values for %d -clients values; give one, or one per client count", len(cfg.events), len(cfg.clients))
	}
	if cfg.size < minSize || cfg.size > maxSize {
		return nil, fmt.Errorf("-size: must be between %d and %d bytes, got %d", minSize, maxSize, cfg.size)
	}
	if *rates == "" || *rates == "0" || *rates == "none" {
		cfg.rates = nil
	} else if cfg.rates, err = parseInts(*rates, 1, maxRate); err != nil {
		return nil, fmt.Errorf("-rates: %w", err)
	}
	cfg.latencyDur = *latencyDur
	if cfg.latencyDur == 0 {
		cfg.latencyDur = defDur
	}
	if cfg.latencyDur < 0 || cfg.latencyDur > maxDuration {
		return nil, fmt.Errorf("-latency-duration: must be > 0 and at most %v, got %v", maxDuration, cfg.latencyDur)
	}
	if cfg.timeout <= 0 || cfg.timeout > maxTimeout {
		return nil, fmt.Errorf("-timeout: must be > 0 and at most %v, got %v", maxTimeout, cfg.timeout)
	}
	if cfg.waitIdle < 0 || cfg.waitIdle > maxTimeout {
		return nil, fmt.Errorf("-wait-idle: must be between 0 and %v, got %v", maxTimeout, cfg.waitIdle)
	}
	if cfg.rounds < 1 || cfg.rounds > maxRounds {
		return nil, fmt.Errorf("-rounds: must be between 1 and %d, got %d", maxRounds, cfg.rounds)
	}
	if err := checkLoopbackHost(cfg.host); err != nil {
		return nil, fmt.Errorf("-host: %w", err)
	}
	if cfg.target != "" {
		if err := checkLoopbackHostPort(cfg.target); err != nil {
			return nil, fmt.Errorf("-target: %w", err)
		}
		if _, port, _ := net.SplitHostPort(cfg.target); port == "0" {
			return nil, fmt.Errorf("-target: port 0 is not a server address")
		}
	}
	return cfg, nil
}

// parseStalledFlags checks and completes the flags of -scenario stalled;
// set holds the flags given on the command line.
func parseStalledFlags(cfg *config, stalled string, size int, set map[string]bool) error {
	if cfg.target != "" {
		return errors.New("-target: -scenario stalled starts a fresh server for each run")
	}
	if stalled == "" {
		stalled = fullStalled
		if cfg.quick {
			stalled = quickStalled
		}
	}
	var err error
	if cfg.stalled, err = parseInts(stalled, 1, maxStalled); err != nil {
		return fmt.Errorf("-stalled: %w", err)
	}
	if cfg.healthy < 1 || cfg.healthy > maxHealthy {
		return fmt.Errorf("-healthy: must be between 1 and %d, got %d", maxHealthy, cfg.healthy)
	}
	if cfg.stallRate < 1 || cfg.stallRate > maxRate {
		return fmt.Errorf("-stall-rate: must be between 1 and %d, got %d", maxRate, cfg.stallRate)
	}
	if cfg.stallDur == 0 {
		cfg.stallDur = defaultStallDur
		if cfg.quick {
			cfg.stallDur = quickStallDur
		}
	}
	if cfg.stallDur < 0 || cfg.stallDur > maxDuration {
		return fmt.Errorf("-stall-duration: must be > 0 and at most %v, got %v", maxDuration, cfg.stallDur)
	}
	if events := float64(cfg.stallRate) * cfg.stallDur.Seconds(); events > maxEvents {
		return fmt.Errorf("-stall-rate × -stall-duration: %.0f events, more than %d", events, maxEvents)
	}
	cfg.stallSize = 1024
	if set["size"] {
		cfg.stallSize = size
	}
	return nil
}

// builtImpls lists the implementations compiled into this binary.
func builtImpls() []string {
	var out []string
	for _, i := range defaultImpls {
		if newBroadcaster[i] != nil {
			out = append(out, i)
		}
	}
	return out
}

func isImpl(s string) bool {
	for _, i := range allImpls {
		if s == i {
			return true
		}
	}
	return false
}

func parseImpls(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == implSSEHub {
			if !seen[f] {
				seen[f] = true
				out = append(out, f)
			}
			continue
		}
		if !isImpl(f) {
			return nil, fmt.Errorf("unknown implementation %q (want some of %s, %s)", f, strings.Join(allImpls, ", "), implSSEHub)
		}
		if newBroadcaster[f] == nil {
			return nil, fmt.Errorf("implementation %q is not built into this binary", f)
		}
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	return out, nil
}

// parseInts parses a comma-separated list of integers in [lo, hi].
func parseInts(s string, lo, hi int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a whole number", f)
		}
		if n < lo || n > hi {
			return nil, fmt.Errorf("%d is out of range: must be between %d and %d", n, lo, hi)
		}
		out = append(out, n)
	}
	return out, nil
}

// checkLoopbackHost accepts "localhost" and loopback IP literals only.
// Names are not resolved: anything but "localhost" is refused.
func checkLoopbackHost(h string) error {
	if strings.EqualFold(h, "localhost") {
		return nil
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	if ip == nil {
		return fmt.Errorf("%q is not a loopback address: only 127.0.0.0/8, ::1 or localhost are allowed", h)
	}
	if !ip.IsLoopback() {
		return fmt.Errorf("%s is not a loopback address: this tool only sends load to 127.0.0.0/8 or ::1", ip)
	}
	return nil
}

func checkLoopbackHostPort(hp string) error {
	h, port, err := net.SplitHostPort(hp)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %v", hp, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q has a bad port", hp)
	}
	return checkLoopbackHost(h)
}

// raiseFileLimit lifts the soft open-file limit to the hard one: 10 000
// connections need 10 000 descriptors on each side.
func raiseFileLimit(stderr io.Writer) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			if stderr != nil {
				fmt.Fprintf(stderr, "sseload: warning: cannot raise open-file limit: %v\n", err)
			}
		}
	}
}

// fileLimit reports the current soft open-file limit.
func fileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return lim.Cur
}

// cpuTime returns the user+system CPU time this process has used, in ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
