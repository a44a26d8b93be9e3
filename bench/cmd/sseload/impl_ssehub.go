package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The ssehub implementation is the repository's Mercure hub, cmd/ssehub,
// run as its own program: it has no control API, so the driver starts
// it, subscribes over the Mercure protocol, publishes with HTTP POSTs as
// an application would, and reads the hub process's figures from /proc
// (and from /metrics, when the hub serves Go runtime metrics there).

const implSSEHub = "ssehub"

const (
	// hubTopic is the one topic every subscriber matches exactly and
	// every update is published to.
	hubTopic = "urn:sseload:bench"
	// hubAudience is the resource identifier the hub is started with and
	// every token is issued for.
	hubAudience = "urn:sseload:hub"
	// hubTokenLife bounds the tokens: the hub closes a stream when its
	// token expires, so it outlives the longest run.
	hubTokenLife = 2 * time.Hour
	// hubLogLines is how many of the hub's log lines are passed on.
	hubLogLines = 50
	// maxPublishers bounds -publishers.
	maxPublishers = 64
)

const ssehubSettings = "cmd/ssehub with its defaults, in its own process, HS256 key given with -jwt-key; " +
	"subscribers: GET /.well-known/mercure?match=TOPIC with a subscriber token (Authorization: Bearer); " +
	"updates: POSTs (form topic, data) with a publisher token from the driver process over keep-alive connections, " +
	"-publishers at a time (default 1: one at a time; with more, \"in order\" means in each publisher's order); memory: VmRSS of the hub (no GC forced: the hub has no such endpoint), " +
	"heap+stack from its /metrics if it serves go_memstats_*"

// hubURLRE finds the hub's URL in its start-up log.
var hubURLRE = regexp.MustCompile(`http://([^/\s"]+)/\.well-known/mercure`)

// checkSSEHubFlags refuses flags that need the control API the hub does
// not have.
func checkSSEHubFlags(cfg *config) error {
	if cfg.publishers < 1 || cfg.publishers > maxPublishers {
		return fmt.Errorf("-publishers: must be between 1 and %d, got %d", maxPublishers, cfg.publishers)
	}
	if !slices.Contains(cfg.impls, implSSEHub) {
		switch {
		case cfg.ssehubBin != "":
			return errors.New("-ssehub-bin: only with -impls ssehub")
		case cfg.publishers != 1:
			return errors.New("-publishers: only with -impls ssehub")
		}
		return nil
	}
	switch {
	case cfg.cpuProfDir != "":
		return fmt.Errorf("-cpuprofile-dir: not with -impls %s (the hub has no profiling endpoint)", implSSEHub)
	case cfg.target != "":
		return fmt.Errorf("-target: not with -impls %s (the driver starts each hub itself)", implSSEHub)
	}
	return nil
}

// prepareSSEHub builds the hub binary into a temporary directory when
// impls has ssehub and -ssehub-bin is not given; cleanup removes it.
func prepareSSEHub(ctx context.Context, cfg *config, impls []string, logf func(string, ...any)) (cleanup func(), err error) {
	if !slices.Contains(impls, implSSEHub) || cfg.ssehubBin != "" {
		return func() {}, nil
	}
	dir, err := os.MkdirTemp("", "sseload-ssehub-")
	if err != nil {
		return nil, err
	}
	logf("sseload: building cmd/ssehub")
	if cfg.ssehubBin, err = buildSSEHub(ctx, dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return func() { os.RemoveAll(dir) }, nil
}

// buildSSEHub builds cmd/ssehub of the repository this module replaces
// github.com/coregx/stream with into dir and returns the binary's path.
func buildSSEHub(ctx context.Context, dir string) (string, error) {
	root, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/coregx/stream").Output()
	if err != nil {
		return "", fmt.Errorf("locating the repository (run inside the bench module, or give -ssehub-bin): %w", err)
	}
	src := filepath.Join(strings.TrimSpace(string(root)), "cmd", "ssehub")
	bin := filepath.Join(dir, "ssehub")
	out, err := exec.CommandContext(ctx, "go", "build", "-C", src, "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building %s: %w\n%s", src, err, bytes.TrimSpace(out))
	}
	return bin, nil
}

// hubProc is a running ssehub process as the driver uses it.
type hubProc struct {
	pid          int
	base         string // http://host:port
	pubToken     string
	streamPath   string // the subscribers' request target
	streamHeader string // the subscribers' Authorization header line
	hc           *http.Client
	inCall       []atomic.Int64 // per publisher: unix ns its running POST began; 0: none
}

// startSSEHub starts cfg.ssehubBin on a free loopback port with a fresh
// HMAC key and waits for the address it logs.
func startSSEHub(ctx context.Context, cfg *config, stderr io.Writer) (*server, error) {
	if cfg.ssehubBin == "" {
		return nil, errors.New("start ssehub: no binary (-ssehub-bin)")
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	key := []byte(hex.EncodeToString(secret))
	exp := time.Now().Add(hubTokenLife)
	subToken, err := hubToken(key, "subscribe", exp)
	if err != nil {
		return nil, err
	}
	pubToken, err := hubToken(key, "publish", exp)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(cfg.ssehubBin, "-addr="+net.JoinHostPort(cfg.host, "0"), "-jwt-key="+string(key),
		"-resource-identifier="+hubAudience)
	// Only the flags above differ from the hub's defaults.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SSEHUB_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	log := &hubLog{out: stderr, addrc: make(chan string, 1)}
	cmd.Stdout, cmd.Stderr = log, log
	killWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start ssehub: %w", err)
	}
	s := &server{impl: implSSEHub, cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	select {
	case s.addr = <-log.addrc:
		err = checkLoopbackHostPort(s.addr)
	case <-s.exited:
		err = fmt.Errorf("the hub exited: %v", cmd.ProcessState)
	case <-time.After(20 * time.Second):
		err = errors.New("no address logged within 20s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("start ssehub: %w", err)
	}
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: cfg.publishers + 2, IdleConnTimeout: time.Minute}
	s.hc = &http.Client{Transport: tr}
	s.hub = &hubProc{
		pid:          cmd.Process.Pid,
		base:         "http://" + s.addr,
		pubToken:     pubToken,
		streamPath:   "/.well-known/mercure?" + url.Values{"match": {hubTopic}}.Encode(),
		streamHeader: "Authorization: Bearer " + subToken + "\r\n",
		hc:           s.hc,
		inCall:       make([]atomic.Int64, cfg.publishers),
	}
	return s, nil
}

// hubToken signs an access token (RFC 9068) granting action on hubTopic.
func hubToken(key []byte, action string, exp time.Time) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"aud": hubAudience,
		"iss": "urn:sseload",
		"exp": exp.Unix(),
		"sub": "urn:sseload:" + action,
		"authorization_details": []any{map[string]any{
			"type":    "https://mercure.rocks/authorization-detail",
			"actions": []string{action},
			"topics":  []any{map[string]string{"match": hubTopic}},
		}},
	})
	t.Header["typ"] = "at+jwt"
	return t.SignedString(key)
}

// hubLog receives the hub's output: it sends the first hub URL it sees
// on addrc and passes on the first hubLogLines lines.
type hubLog struct {
	out   io.Writer
	addrc chan string

	mu      sync.Mutex
	partial []byte
	lines   int
	found   bool
}

func (l *hubLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := l.partial[:i]
		if m := hubURLRE.FindSubmatch(line); m != nil && !l.found {
			l.found = true
			l.addrc <- string(m[1])
		}
		if l.lines++; l.lines <= hubLogLines {
			fmt.Fprintf(l.out, "ssehub: %s\n", line)
		} else if l.lines == hubLogLines+1 {
			fmt.Fprintf(l.out, "ssehub: (further log lines dropped)\n")
		}
		l.partial = l.partial[i+1:]
	}
	if len(l.partial) > 64<<10 {
		l.partial = l.partial[:0] // no newline in sight: not a log line
	}
	return len(p), nil
}

// publish posts n updates like control.publish does for the in-process
// implementations, from len(h.inCall) publishers at once, each taking
// every len(h.inCall)-th event; each POST returns once the hub stored
// the update.
func (h *hubProc) publish(ctx context.Context, kind string, run int64, n, size, rate int) (publishResult, error) {
	if (kind != "d" && kind != "p") || n < 1 || n > maxEvents || size < minSize || size > maxSize || rate < 0 || rate > maxRate {
		return publishResult{}, errors.New("bad publish parameters")
	}
	post := func(data string) error { return h.post(ctx, data) }
	step := min(len(h.inCall), n)
	results := make([]publishResult, step)
	var wg sync.WaitGroup
	for w := range step {
		wg.Go(func() { results[w] = publishEvents(ctx, kind[0], run, w, step, n, size, rate, &h.inCall[w], post) })
	}
	wg.Wait()
	var res publishResult
	for _, r := range results {
		res.Published += r.Published
		res.Errors += r.Errors
		if res.FirstErr == "" {
			res.FirstErr = r.FirstErr
		}
		res.ElapsedNS = max(res.ElapsedNS, r.ElapsedNS)
		res.MaxCallNS = max(res.MaxCallNS, r.MaxCallNS)
	}
	return res, ctx.Err()
}

// oldestCall returns the unix ns the longest-running POST began; 0: none.
func (h *hubProc) oldestCall() int64 {
	var oldest int64
	for i := range h.inCall {
		if t := h.inCall[i].Load(); t != 0 && (oldest == 0 || t < oldest) {
			oldest = t
		}
	}
	return oldest
}

// post publishes one update and reads the hub's answer.
func (h *hubProc) post(ctx context.Context, data string) error {
	body := url.Values{"topic": {hubTopic}, "data": {data}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.base+"/.well-known/mercure", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+h.pubToken)
	answer, err := roundTrip(h.hc, req, 4<<10)
	if err != nil {
		return err
	}
	if len(answer) == 0 {
		return errors.New("200 without an update id")
	}
	return nil
}

// stats reads the hub process's RSS and CPU time from /proc and, when it
// serves them, heap, stack and goroutines from /metrics.
func (h *hubProc) stats(ctx context.Context) (serverStats, error) {
	pid := strconv.Itoa(h.pid)
	st := serverStats{
		Impl:          implSSEHub,
		RSS:           readProcStatus(pid, "VmRSS:"),
		RSSPeak:       readProcStatus(pid, "VmHWM:"),
		CPUNS:         procCPUTime(pid),
		InCallSinceNS: h.oldestCall(),
	}
	if st.RSS == 0 {
		return st, fmt.Errorf("ssehub process %d: no VmRSS in /proc", h.pid)
	}
	vals := h.metrics(ctx)
	heap, hok := vals["go_memstats_heap_inuse_bytes"]
	stack, sok := vals["go_memstats_stack_inuse_bytes"]
	goroutines, gok := vals["go_goroutines"]
	if hok && sok && gok {
		st.HeapInuse, st.StackInuse, st.Goroutines = uint64(heap), uint64(stack), int(goroutines)
	} else {
		st.NoRuntime = true
	}
	if clients, ok := vals[hubMetricClients]; ok {
		st.Active = int64(clients)
		st.Counters = &engineCounts{Clients: int(clients), SlowDisconnects: uint64(vals[hubMetricSlow]),
			BudgetDisconnects: uint64(vals[hubMetricBudget]), ClientDisconnects: uint64(vals[hubMetricClientGone])}
	}
	return st, nil
}

// The hub's own figures in its /metrics (sseprom, namespace ssehub).
const (
	hubMetricClients    = "ssehub_sse_connections"
	hubMetricSlow       = `ssehub_sse_disconnects_total{reason="slow"}`
	hubMetricBudget     = `ssehub_sse_disconnects_total{reason="budget"}`
	hubMetricClientGone = `ssehub_sse_disconnects_total{reason="client"}`
)

// metrics reads the Go runtime's figures (go_memstats_heap_inuse_bytes,
// go_memstats_stack_inuse_bytes, go_goroutines) and the hub's counts of
// its streams from the hub's /metrics; a figure it does not serve is
// missing from the map.
func (h *hubProc) metrics(ctx context.Context) map[string]float64 {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.base+"/metrics", nil)
	if err != nil {
		return nil
	}
	body, err := roundTrip(h.hc, req, 16<<20)
	if err != nil {
		return nil
	}
	return parseMetrics(bytes.NewReader(body), "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes",
		"go_goroutines", hubMetricClients, hubMetricSlow, hubMetricBudget, hubMetricClientGone)
}

// parseMetrics returns the values of the named unlabelled samples in a
// Prometheus text exposition.
func parseMetrics(r io.Reader, names ...string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !slices.Contains(names, name) {
			continue
		}
		value, _, _ = strings.Cut(strings.TrimSpace(value), " ") // drop a timestamp
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	return out
}

// procCPUTime returns the user+system CPU time of process pid in ns, from
// /proc/PID/stat, or 0.
func procCPUTime(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// The command name, field 2, is in parentheses and may hold spaces;
	// after it come state (3) … utime (14) and stime (15).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return (utime + stime) * int64(time.Second) / clockTick
}
