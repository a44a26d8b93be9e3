package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The cluster scenario (-scenario cluster): three server nodes, each its
// own process with an sse.Server on the broker under test, share N
// clients (N/3 each, held by the driver); events are published on the
// first node only. Clients of that node are "local", the others'
// "remote": their latency includes the broker's hop. The memory broker
// cannot be shared between processes, so it runs as a single node with
// all N clients: the baseline. Every client checks every event once, in
// order, and each node reports what it read from the broker, so that a
// read per client, not per node, would show.

// clusterNodes is the number of nodes of a shared broker.
const clusterNodes = 3

// clusterFileSpare is the open files the driver or a node needs beside
// one per client.
const clusterFileSpare = 256

// Defaults and limits of the cluster scenario.
const (
	maxClusterClients   = 10000
	fullClusterClients  = "300,3000"
	quickClusterClients = "30,300"
	clusterRate         = "100"
	defaultRedisURL     = "redis://127.0.0.1:6379"
	defaultNATSURL      = "nats://127.0.0.1:4222"
)

// clusterConfig holds the flags of -scenario cluster and of its nodes.
type clusterConfig struct {
	brokers  []string
	redisURL string
	natsURL  string

	// node mode (-cluster-node): a child process of the scenario
	node      string // the broker of this node
	brokerURL string // its address
	run       string // the run's name, which names the broker's keys or stream
}

// clusterFlags are the flag values before parsing.
type clusterFlags struct {
	brokers, redisURL, natsURL *string
	node, brokerURL, run       *string
}

func addClusterFlags(fs *flag.FlagSet) *clusterFlags {
	return &clusterFlags{
		brokers:   fs.String("brokers", strings.Join(allBrokers, ","), "-scenario cluster: brokers to compare: "+strings.Join(allBrokers, ", ")+" (memory is one node, the others three)"),
		redisURL:  fs.String("redis-url", defaultRedisURL, "-scenario cluster: the Redis the redis broker uses (loopback only)"),
		natsURL:   fs.String("nats-url", defaultNATSURL, "-scenario cluster: the NATS server, with JetStream, the nats broker uses (loopback only)"),
		node:      fs.String("cluster-node", "", "internal: serve one node of -scenario cluster on this broker"),
		brokerURL: fs.String("broker-url", "", "internal: with -cluster-node, the broker's address"),
		run:       fs.String("cluster-run", "", "internal: with -cluster-node, the run's name"),
	}
}

// parseClusterNode checks the flags of a node process.
func parseClusterNode(cfg *config, f *clusterFlags) error {
	cfg.cluster = clusterConfig{node: *f.node, brokerURL: *f.brokerURL, run: *f.run}
	if !slices.Contains(allBrokers, cfg.cluster.node) {
		return fmt.Errorf("-cluster-node: unknown broker %q (want one of %s)", cfg.cluster.node, strings.Join(allBrokers, ", "))
	}
	if cfg.cluster.run == "" || strings.ContainsAny(cfg.cluster.run, ". *>:") {
		return fmt.Errorf("-cluster-run: %q is not a run name", cfg.cluster.run)
	}
	if err := checkLoopbackHostPort(cfg.listen); err != nil {
		return fmt.Errorf("-listen: %w", err)
	}
	return nil
}

// parseClusterFlags checks and completes the flags of -scenario cluster;
// set holds the flags given on the command line. It fills in the
// defaults of -clients and -rates before the common checks.
func parseClusterFlags(cfg *config, f *clusterFlags, set map[string]bool, clients, rates *string) error {
	if cfg.target != "" {
		return errors.New("-target: -scenario cluster starts its own nodes")
	}
	if set["impls"] {
		return errors.New("-impls: -scenario cluster compares brokers: use -brokers")
	}
	seen := map[string]bool{}
	for _, b := range strings.Split(*f.brokers, ",") {
		b = strings.TrimSpace(b)
		if !slices.Contains(allBrokers, b) {
			return fmt.Errorf("-brokers: unknown broker %q (want some of %s)", b, strings.Join(allBrokers, ", "))
		}
		if !seen[b] {
			seen[b] = true
			cfg.cluster.brokers = append(cfg.cluster.brokers, b)
		}
	}
	cfg.cluster.redisURL, cfg.cluster.natsURL = *f.redisURL, *f.natsURL
	if seen[brokerRedis] {
		if err := checkRedisURL(cfg.cluster.redisURL); err != nil {
			return err
		}
	}
	if seen[brokerNATS] {
		if err := checkNATSURL(cfg.cluster.natsURL); err != nil {
			return err
		}
	}
	if *clients == "" {
		*clients = fullClusterClients
		if cfg.quick {
			*clients = quickClusterClients
		}
	}
	if _, err := parseInts(*clients, 1, maxClusterClients); err != nil {
		return fmt.Errorf("-clients: %w", err)
	}
	if !set["rates"] {
		*rates = clusterRate
	}
	return nil
}

// checkRedisURL accepts redis://host:port[/db] on loopback only.
func checkRedisURL(url string) error {
	rest, ok := cutScheme(url, "redis://")
	if !ok {
		return fmt.Errorf("-redis-url: %q is not redis://host:port", url)
	}
	hp, _, _ := strings.Cut(rest, "/")
	if err := checkLoopbackHostPort(hp); err != nil {
		return fmt.Errorf("-redis-url: %w", err)
	}
	return nil
}

// clusterResult is one broker at one client count.
type clusterResult struct {
	broker  string
	run     string // names the run's Redis keys or NATS stream
	clients int
	events  int
	perNode []int // clients of each node; node 0 publishes
	err     error

	tput    clusterMeasurement
	latency map[int]clusterMeasurement // by rate
	foreign float64
}

// clusterMeasurement is one run over the cluster.
type clusterMeasurement struct {
	m             measurement // every client, as runScenario saw it
	local, remote latencies   // clients of the publishing node, of the others
	nodes         []nodeDelta // what each node read from the broker meanwhile
	consumers     []int64     // NATS: messages each consumer of the stream delivered meanwhile; nil otherwise
	events        int
}

// latencies are the percentiles of one group of clients' deliveries.
type latencies struct {
	n        int
	p50, p99 time.Duration
}

// nodeDelta is what one node read from its broker during a run.
type nodeDelta struct {
	counts brokerCounts // differences, except Subscribes: the total
	cpu    time.Duration
}

// clusterSteps is how many runs the cluster scenario makes.
func clusterSteps(cfg *config) int { return len(cfg.cluster.brokers) * len(cfg.clients) }

// driveCluster runs the cluster scenario and prints its report.
func driveCluster(ctx context.Context, cfg *config, stdout io.Writer, logf func(string, ...any)) error {
	// A missing broker is an error at once, with the command that starts it.
	for _, b := range cfg.cluster.brokers {
		var err error
		switch b {
		case brokerRedis:
			err = pingRedis(ctx, cfg.cluster.redisURL)
		case brokerNATS:
			err = pingNATS(ctx, cfg.cluster.natsURL)
		}
		if err != nil {
			return err
		}
	}
	// The driver holds every client, and the memory node as many
	// connections: both need a descriptor each, and some to spare.
	if need, have := uint64(slices.Max(cfg.clients)+clusterFileSpare), fileLimit(); have < need {
		return fmt.Errorf("-clients: %d clients need an open-file limit of at least %d, and it is %d (raise ulimit -Hn)", slices.Max(cfg.clients), need, have)
	}
	prog := newProgress(clusterSteps(cfg))
	cpuStart := takeCPUSnapshot()
	var results []*clusterResult
	for i, n := range cfg.clients {
		for _, b := range cfg.cluster.brokers {
			if err := beforeMeasurement(ctx, cfg, logf); err != nil {
				return err
			}
			nodes := clusterNodes
			if b == brokerMemory {
				nodes = 1
			}
			prog.step(logf, fmt.Sprintf("%s, %d clients on %d node(s)", b, n, nodes))
			snap := takeCPUSnapshot()
			r := clusterOnce(ctx, cfg, b, n, cfg.events[i], logf)
			r.foreign, _ = foreignLoad(snap, takeCPUSnapshot())
			results = append(results, r)
		}
	}
	foreign, _ := foreignLoad(cpuStart, takeCPUSnapshot())
	logf("sseload: done, %s", describeTook(prog))
	writeClusterReport(stdout, cfg, results, time.Since(prog.start), foreign)
	if cfg.plotDir != "" {
		charts, order := clusterCharts(cfg, results)
		if err := writePlots(cfg.plotDir, charts, order, logf); err != nil {
			return err
		}
	}
	for _, r := range results {
		if r.err != nil {
			return fmt.Errorf("%s with %d clients: %w", r.broker, r.clients, r.err)
		}
	}
	return ctx.Err()
}

func pingRedis(ctx context.Context, url string) error {
	rdb, err := dialRedis(ctx, url, "sseload-driver")
	if err != nil {
		return err
	}
	return rdb.Close()
}

func pingNATS(ctx context.Context, url string) error {
	nc, err := dialNATS(ctx, url, "sseload-driver")
	if err != nil {
		return err
	}
	nc.Close()
	return nil
}

// clusterOnce is one run: fresh nodes, fresh broker state (removed at
// the end), n clients, a throughput run and a latency run per rate.
func clusterOnce(ctx context.Context, cfg *config, broker string, n, m int, logf func(string, ...any)) *clusterResult {
	run := fmt.Sprintf("%d_%d", os.Getpid(), time.Now().UnixNano())
	r := &clusterResult{broker: broker, run: run, clients: n, events: m, latency: map[int]clusterMeasurement{}}
	var url string
	var consumers func(context.Context) (map[string]int64, error)
	switch broker {
	case brokerRedis:
		url = cfg.cluster.redisURL
		defer func() {
			if err := removeRedisKeys(url, namesFor(run).redisPrefix); err != nil && r.err == nil {
				r.err = err
			}
		}()
	case brokerNATS:
		url = cfg.cluster.natsURL
		nc, err := dialNATS(ctx, url, "sseload-driver-"+run)
		if err != nil {
			r.err = err
			return r
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			r.err = err
			return r
		}
		stream := namesFor(run).natsStream
		defer func() {
			dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := js.DeleteStream(dctx, stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) && r.err == nil {
				r.err = fmt.Errorf("deleting stream %s: %w", stream, err)
			}
		}()
		consumers = func(ctx context.Context) (map[string]int64, error) { return consumerDeliveries(ctx, js, stream) }
	}

	k := clusterNodes
	if broker == brokerMemory {
		k = 1
	}
	var nodes []*server
	defer func() {
		for _, s := range nodes {
			s.stop()
		}
	}()
	for range k {
		s, err := startChild(ctx, "cluster-"+broker, []string{"-cluster-node=" + broker, "-broker-url=" + url,
			"-cluster-run=" + run, "-listen=" + net.JoinHostPort(cfg.host, "0")}, os.Stderr)
		if err != nil {
			r.err = err
			return r
		}
		nodes = append(nodes, s)
	}

	p := newPool(nodes[0].addr, n)
	group := make([]int, n) // the node of each client
	r.perNode = make([]int, k)
	for i, c := range p.clients {
		j := i * k / n
		c.addr, group[i] = nodes[j].addr, j
		r.perNode[j]++
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	err := p.connect(cctx)
	cancel()
	defer p.close()
	if err != nil {
		r.err = fmt.Errorf("connecting %d clients: %w", n, err)
		return r
	}
	if err := settle(ctx, nodes[0], p, cfg); err != nil {
		r.err = err
		return r
	}

	measure := func(events, rate int) clusterMeasurement {
		before, err := snapshotCluster(ctx, nodes, consumers)
		if err != nil {
			return clusterMeasurement{m: measurement{err: err}}
		}
		cm := clusterMeasurement{m: runScenario(ctx, cfg, nodes[0], p, events, rate, ""), events: events}
		after, err := snapshotCluster(context.WithoutCancel(ctx), nodes, consumers)
		if err != nil && cm.m.err == nil {
			cm.m.err = err
		}
		if err == nil {
			cm.nodes, cm.consumers = before.delta(after)
		}
		if rate > 0 {
			cm.local, cm.remote = splitLatencies(p, group)
		}
		return cm
	}
	name := fmt.Sprintf("%-6s n=%-6d", broker, n)
	r.tput = measure(m, 0)
	logf("%s throughput: %s; %s", name, describe(r.tput.m), r.tput.describeReads())
	for _, rate := range cfg.rates {
		if err := reconnect(ctx, nodes[0], p, cfg); err != nil {
			r.latency[rate] = clusterMeasurement{m: measurement{err: err}}
			continue
		}
		events := max(1, int(float64(rate)*cfg.latencyDur.Seconds()))
		cm := measure(events, rate)
		r.latency[rate] = cm
		logf("%s latency @%d/s: local p50 %s p99 %s, remote p50 %s p99 %s; %s; %s", name, rate,
			roundDur(cm.local.p50), roundDur(cm.local.p99), roundDur(cm.remote.p50), roundDur(cm.remote.p99),
			describe(cm.m), cm.describeReads())
	}
	return r
}

// splitLatencies gathers the latency samples of the last run per group:
// clients of node 0 (local) and of the others (remote).
func splitLatencies(p *pool, group []int) (local, remote latencies) {
	var ls, rs []int64
	for i, c := range p.clients {
		c.mu.Lock()
		if group[i] == 0 {
			ls = append(ls, c.lats...)
		} else {
			rs = append(rs, c.lats...)
		}
		c.mu.Unlock()
	}
	return latencyOf(ls), latencyOf(rs)
}

func latencyOf(samples []int64) latencies {
	if len(samples) == 0 {
		return latencies{}
	}
	slices.Sort(samples)
	return latencies{n: len(samples), p50: time.Duration(percentile(samples, 0.50)), p99: time.Duration(percentile(samples, 0.99))}
}

// clusterSnapshot is every node's counters and CPU, and the stream's
// consumers' deliveries, at one moment.
type clusterSnapshot struct {
	counts    []brokerCounts
	cpu       []int64
	consumers map[string]int64 // nil without NATS
}

func snapshotCluster(ctx context.Context, nodes []*server, consumers func(context.Context) (map[string]int64, error)) (clusterSnapshot, error) {
	var s clusterSnapshot
	for _, n := range nodes {
		var c brokerCounts
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := n.call(cctx, http.MethodGet, "/ctl/broker", nil, &c)
		cancel()
		if err != nil {
			return s, err
		}
		st, err := n.stats(ctx, false)
		if err != nil {
			return s, err
		}
		s.counts, s.cpu = append(s.counts, c), append(s.cpu, st.CPUNS)
	}
	if consumers != nil {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var err error
		if s.consumers, err = consumers(cctx); err != nil {
			return s, err
		}
	}
	return s, nil
}

// delta returns what each node read between s and later, and what each
// consumer delivered, largest first.
func (s clusterSnapshot) delta(later clusterSnapshot) ([]nodeDelta, []int64) {
	out := make([]nodeDelta, len(s.counts))
	for i, a := range s.counts {
		b := later.counts[i]
		diff := func(x, y int64) int64 {
			if x < 0 || y < 0 {
				return -1
			}
			return y - x
		}
		out[i] = nodeDelta{counts: brokerCounts{Subscribes: b.Subscribes, Fed: b.Fed - a.Fed,
			ReadCalls: diff(a.ReadCalls, b.ReadCalls), ReadEntries: diff(a.ReadEntries, b.ReadEntries),
			Commands: diff(a.Commands, b.Commands), InMsgs: diff(a.InMsgs, b.InMsgs)},
			cpu: time.Duration(later.cpu[i] - s.cpu[i])}
	}
	var cons []int64
	if later.consumers != nil {
		for name, d := range later.consumers {
			cons = append(cons, d-s.consumers[name])
		}
		slices.Sort(cons)
		slices.Reverse(cons)
	}
	return out, cons
}

// consumerDeliveries returns, by consumer name, how many messages each
// consumer of the stream has delivered.
func consumerDeliveries(ctx context.Context, js jetstream.JetStream, stream string) (map[string]int64, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	out := map[string]int64{}
	l := s.ListConsumers(ctx)
	for ci := range l.Info() {
		out[ci.Name] = int64(ci.Delivered.Consumer)
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("consumers of %s: %w", stream, err)
	}
	return out, nil
}

// removeRedisKeys deletes every key under prefix.
func removeRedisKeys(url, prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb, err := dialRedis(ctx, url, "sseload-cleanup")
	if err != nil {
		return err
	}
	defer rdb.Close()
	it := rdb.Scan(ctx, 0, prefix+"*", 100).Iterator()
	var keys []string
	for it.Next(ctx) {
		keys = append(keys, it.Val())
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("listing keys %s*: %w", prefix, err)
	}
	if len(keys) > 0 {
		if err := rdb.Del(ctx, keys...).Err(); err != nil {
			return fmt.Errorf("deleting keys %s*: %w", prefix, err)
		}
	}
	return nil
}

// perEvent formats what each node read per event, "1.00 / 1.00 / 1.00";
// get returns -1 for a figure not counted.
func (cm clusterMeasurement) perEvent(get func(brokerCounts) int64) string {
	var parts []string
	for _, d := range cm.nodes {
		v := get(d.counts)
		if v < 0 {
			return "not counted"
		}
		parts = append(parts, strconv.FormatFloat(float64(v)/float64(max(cm.events, 1)), 'f', 2, 64))
	}
	return strings.Join(parts, " / ")
}

// describeReads is the log summary of what the nodes read.
func (cm clusterMeasurement) describeReads() string {
	if len(cm.nodes) == 0 {
		return "no broker counts"
	}
	s := "fed per event per node " + cm.perEvent(func(c brokerCounts) int64 { return c.Fed })
	if cm.nodes[0].counts.ReadEntries >= 0 {
		s += ", XREAD entries " + cm.perEvent(func(c brokerCounts) int64 { return c.ReadEntries }) +
			", XREAD calls " + cm.perEvent(func(c brokerCounts) int64 { return c.ReadCalls }) +
			", Redis commands " + cm.perEvent(func(c brokerCounts) int64 { return c.Commands })
	}
	if cm.consumers != nil {
		s += ", consumer deliveries " + cm.consumerPerEvent() +
			", NATS messages received " + cm.perEvent(func(c brokerCounts) int64 { return c.InMsgs })
	}
	return s
}

// consumerPerEvent formats each NATS consumer's deliveries per event.
func (cm clusterMeasurement) consumerPerEvent() string {
	var parts []string
	for _, d := range cm.consumers {
		parts = append(parts, strconv.FormatFloat(float64(d)/float64(max(cm.events, 1)), 'f', 2, 64))
	}
	return fmt.Sprintf("%s (%d consumers)", strings.Join(parts, " / "), len(cm.consumers))
}

// brokerNames are the brokers' names in the report.
var brokerNames = map[string]string{brokerMemory: "memory", brokerRedis: "Redis", brokerNATS: "NATS JetStream"}

// brokerTitle is a broker's column heading.
func brokerTitle(b string, nodes int) string {
	if nodes == 1 {
		return brokerNames[b] + ", 1 node"
	}
	return fmt.Sprintf("%s, %d nodes", brokerNames[b], nodes)
}

// clusterRow is one figure of the cluster report.
type clusterRow struct {
	name string
	cell func(r, base *clusterResult, cfg *config) string // base: memory at the same N, or nil
}

func clusterRows(cfg *config) []clusterRow {
	rows := []clusterRow{
		{"clients per node", func(r, _ *clusterResult, _ *config) string {
			parts := make([]string, len(r.perNode))
			for i, n := range r.perNode {
				parts[i] = strconv.Itoa(n)
			}
			return strings.Join(parts, " / ")
		}},
		{"throughput, deliveries/s (events)", func(r, _ *clusterResult, _ *config) string {
			if !r.tput.m.ok() {
				return errCell(r.tput.m.err)
			}
			return fmt.Sprintf("%s (%d)", si(r.tput.m.perSec), r.events)
		}},
		{"throughput: clients with every event once, in order; lost / dup", func(r, _ *clusterResult, _ *config) string {
			return completeCell(r.tput.m)
		}},
		{"throughput: broker entries read per event, per node", func(r, _ *clusterResult, _ *config) string {
			return readsCell(r, r.tput)
		}},
	}
	for _, rate := range cfg.rates {
		rows = append(rows,
			clusterRow{fmt.Sprintf("@%d ev/s: local p50 / p99", rate), func(r, _ *clusterResult, _ *config) string {
				cm := r.latency[rate]
				if !cm.m.ok() {
					return errCell(cm.m.err)
				}
				return fmt.Sprintf("%s / %s", roundDur(cm.local.p50), roundDur(cm.local.p99))
			}},
			clusterRow{fmt.Sprintf("@%d ev/s: remote p50 / p99", rate), func(r, _ *clusterResult, _ *config) string {
				cm := r.latency[rate]
				if !cm.m.ok() || cm.remote.n == 0 {
					return "–"
				}
				return fmt.Sprintf("%s / %s", roundDur(cm.remote.p50), roundDur(cm.remote.p99))
			}},
			clusterRow{fmt.Sprintf("@%d ev/s: remote p99 ÷ local p99 (target ≤ 2×)", rate), func(r, _ *clusterResult, _ *config) string {
				cm := r.latency[rate]
				return ratioCell(cm.remote.p99, cm.local.p99)
			}},
			clusterRow{fmt.Sprintf("@%d ev/s: remote p99 ÷ one memory node's p99", rate), func(r, base *clusterResult, _ *config) string {
				if base == nil {
					return "–"
				}
				return ratioCell(r.latency[rate].remote.p99, base.latency[rate].local.p99)
			}},
			clusterRow{fmt.Sprintf("@%d ev/s: clients with every event once, in order; lost / dup", rate), func(r, _ *clusterResult, _ *config) string {
				return completeCell(r.latency[rate].m)
			}},
			clusterRow{fmt.Sprintf("@%d ev/s: broker entries read per event, per node", rate), func(r, _ *clusterResult, _ *config) string {
				return readsCell(r, r.latency[rate])
			}},
			clusterRow{fmt.Sprintf("@%d ev/s: node CPU per 1 000 deliveries", rate), func(r, _ *clusterResult, _ *config) string {
				return cpuCell(r.latency[rate])
			}},
		)
	}
	rows = append(rows, clusterRow{"throughput: node CPU per 1 000 deliveries", func(r, _ *clusterResult, _ *config) string {
		return cpuCell(r.tput)
	}})
	return rows
}

// completeCell is "k/n; lost / dup" of a run.
func completeCell(m measurement) string {
	if m.err != nil {
		return errCell(m.err)
	}
	return fmt.Sprintf("%d/%d; %d / %d", m.rr.complete, m.rr.clients, m.rr.lost, m.rr.dups)
}

// readsCell shows what each node read per event: the broker's own count
// where there is one (Redis: entries XREAD returned, and XREAD calls;
// NATS: the consumers' deliveries), else the messages the broker fed the
// node's subscription; and the node's Subscribe calls.
func readsCell(r *clusterResult, cm clusterMeasurement) string {
	if len(cm.nodes) == 0 {
		return "–"
	}
	subs := make([]string, len(cm.nodes))
	for i, d := range cm.nodes {
		subs[i] = strconv.FormatInt(d.counts.Subscribes, 10)
	}
	var s string
	switch {
	case r.broker == brokerRedis:
		s = "XREAD entries " + cm.perEvent(func(c brokerCounts) int64 { return c.ReadEntries }) +
			"; XREAD calls " + cm.perEvent(func(c brokerCounts) int64 { return c.ReadCalls })
	case r.broker == brokerNATS:
		s = "consumer deliveries " + cm.consumerPerEvent()
	default:
		s = "fed " + cm.perEvent(func(c brokerCounts) int64 { return c.Fed })
	}
	return s + "; Subscribe calls " + strings.Join(subs, " / ")
}

// cpuCell is each node's CPU per 1 000 deliveries of its own clients.
func cpuCell(cm clusterMeasurement) string {
	if len(cm.nodes) == 0 || cm.m.rr.delivered == 0 {
		return "–"
	}
	parts := make([]string, len(cm.nodes))
	per := float64(cm.m.rr.delivered) / float64(len(cm.nodes)) / 1000
	for i, d := range cm.nodes {
		parts[i] = roundDur(time.Duration(float64(d.cpu) / per))
	}
	return strings.Join(parts, " / ")
}

// ratioCell is a ÷ b, or "–" when either is unknown.
func ratioCell(a, b time.Duration) string {
	if a <= 0 || b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}

// writeClusterReport prints one table per client count, a column per
// broker.
func writeClusterReport(w io.Writer, cfg *config, results []*clusterResult, took time.Duration, foreign float64) {
	fmt.Fprintf(w, "## sseload results: cluster\n\n")
	writeEnv(w, took, foreign)
	fmt.Fprintf(w, "- each node is its own process: an `sse.Server` (one topic, defaults) on the broker under test; clients in the driver process, split evenly over the nodes; over 127.0.0.1\n")
	fmt.Fprintf(w, "- events of %d bytes are published on node 1 only: its clients are local, the other nodes' remote; memory is one node holding every client (a MemoryBroker cannot be shared between processes): the single-node baseline\n", cfg.size)
	fmt.Fprintf(w, "- Redis (`redisbroker`, %s) and NATS JetStream (`natsbroker`, %s, file storage) get a fresh key prefix or stream per run, removed at the end; history limits %d events, %d MiB, %v\n",
		cfg.cluster.redisURL, cfg.cluster.natsURL, clusterLimits.MaxEvents, clusterLimits.MaxBytes>>20, clusterLimits.MaxAge)
	fmt.Fprintf(w, "- throughput: the events published as fast as node 1 accepts them; latency: at a fixed rate for %v, publish time → receipt per delivery\n", cfg.latencyDur)
	fmt.Fprintf(w, "- broker reads per node: Redis: entries the node's XREADs returned, and its XREAD calls (a go-redis hook in the node); NATS: messages each consumer of the run's stream delivered (JetStream consumer info); memory: messages the broker fed the node. Target: 1.00 per node, whatever the clients\n")
	for _, n := range cfg.clients {
		var row []*clusterResult
		var base *clusterResult
		for _, r := range results {
			if r.clients == n {
				row = append(row, r)
				if r.broker == brokerMemory {
					base = r
				}
			}
		}
		if len(row) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n### %d clients\n\n| |", n)
		for _, r := range row {
			fmt.Fprintf(w, " %s |", brokerTitle(r.broker, len(r.perNode)))
		}
		fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---|", len(row)))
		for _, cr := range clusterRows(cfg) {
			fmt.Fprintf(w, "| %s |", cr.name)
			for _, r := range row {
				if r.err != nil {
					fmt.Fprintf(w, " %s |", errCell(r.err))
					continue
				}
				b := base
				if r == base || (base != nil && base.err != nil) {
					b = nil
				}
				fmt.Fprintf(w, " %s |", cr.cell(r, b, cfg))
			}
			fmt.Fprintln(w)
		}
	}
	var notes []string
	for _, r := range results {
		if r.foreign >= 0.2 {
			notes = append(notes, fmt.Sprintf("%s, %d clients: **other processes used %.1f cores meanwhile: skewed**", r.broker, r.clients, r.foreign))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
		fmt.Fprintln(w, "- (for Redis and NATS, other processes include the Redis or NATS server itself)")
	}
}

// clusterCharts draws the local and remote p99 of each broker and client
// count at the first rate.
func clusterCharts(cfg *config, results []*clusterResult) (map[string][]byte, []string) {
	if len(cfg.rates) == 0 {
		return nil, nil
	}
	rate := cfg.rates[0]
	series := []plotSeries{{name: "local p99", color: palette[0]}, {name: "remote p99", color: palette[1]}}
	var groups []string
	var values [][]float64
	for _, r := range results {
		groups = append(groups, fmt.Sprintf("%s ×%d, %s", strings.Fields(brokerNames[r.broker])[0], len(r.perNode), fmtCount(float64(r.clients))))
		v := []float64{math.NaN(), math.NaN()}
		if cm := r.latency[rate]; r.err == nil && cm.m.ok() {
			for i, l := range []latencies{cm.local, cm.remote} {
				if l.n > 0 {
					v[i] = float64(l.p99) / float64(time.Millisecond)
				}
			}
		}
		values = append(values, v)
	}
	desc := fmt.Sprintf("p99 publish→receive at %d ev/s of clients on the publishing node (local) and on the other nodes (remote), per broker × nodes, clients; lower is better.", rate)
	return map[string][]byte{"cluster-p99.svg": barChart("Cluster: p99 local and remote", desc, groups, series, values, true, fmtMs, "p99 (log)")},
		[]string{"cluster-p99.svg"}
}
