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
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	rpprof "runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// broadcaster is one SSE implementation as the server process runs it:
// an HTTP handler for the event stream and a way to broadcast one event's
// data to every subscriber, each through the library's own idiomatic API.
type broadcaster interface {
	http.Handler
	// Publish broadcasts data to every connected client.
	Publish(data string) error
	// Close stops the implementation's background work.
	Close()
}

// settings documents every non-default setting of each implementation.
var settings = map[string]string{
	implStream:       "sse.NewHub[string]() with defaults; handler as in the user guide (Upgrade, Register, <-Done)",
	implGoSSE:        "sse.Server{} with its default Joe provider (no replayer); Publish(msg)",
	implR3labs:       "sse.New() with AutoReplay=false (the default true keeps every event forever and replays it to each new client); CreateStream, Publish",
	implStreamHTTP:   "sse.NewHub[string]() with defaults, serving the requests itself (Hub.ServeHTTP)",
	implStreamServer: "&sse.Server{} with defaults: one topic (Topics nil), the default MemoryBroker; Publish(ctx, \"\", sse.NewEvent(data))",
	implStreamFilter: "the same Server with a Filter whose predicate passes every event",
	implStreamDrop:   "the Hub as above, with Options{SlowClients: sse.SlowDropOldest}",
	implSSEHub:       ssehubSettings,
}

var newBroadcaster = map[string]func() broadcaster{}

// eventsPath is where every implementation serves its stream; r3labs
// needs the stream name in the query, the others ignore it.
const eventsPath = "/events?stream=bench"

// control is the server process: one implementation plus the control
// endpoints the driver uses, all on one loopback listener.
type control struct {
	impl   string
	b      broadcaster
	active atomic.Int64 // event stream handlers running

	stalls stallLog     // streams of the stalled scenario's non-reading clients
	inCall atomic.Int64 // unix ns the running Publish call began; 0: none

	profMu  sync.Mutex
	profOut *os.File
}

func newControl(impl string) (*control, error) {
	nb := newBroadcaster[impl]
	if nb == nil {
		return nil, fmt.Errorf("implementation %q is not built into this binary", impl)
	}
	return &control{impl: impl, b: nb()}, nil
}

func (c *control) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		c.active.Add(1)
		defer c.active.Add(-1)
		if id, ok := stalledID(r); ok {
			c.stalls.begin(id)
			defer c.stalls.end(id)
		}
		c.b.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /ctl/stalled", c.stalledStreams)
	mux.HandleFunc("POST /ctl/publish", c.publish)
	mux.HandleFunc("GET /ctl/stats", c.stats)
	mux.HandleFunc("POST /ctl/cpuprofile", c.cpuProfile)
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// publishResult is the answer of POST /ctl/publish.
type publishResult struct {
	Published int    `json:"published"`
	Errors    int    `json:"errors"`
	FirstErr  string `json:"first_error,omitempty"`
	ElapsedNS int64  `json:"elapsed_ns"`
	MaxCallNS int64  `json:"max_call_ns"` // the slowest Publish call
}

// publish broadcasts n events of the given size, as fast as the
// implementation accepts them (rate=0) or at a fixed rate, and answers
// when the last one was handed over. Each event's data is
//
//	<kind> <run> <seq> <unix-nanoseconds> xxx…
//
// padded to size bytes; kind "d" is a measured event, "p" a priming one.
func (c *control) publish(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	kind := q.Get("kind")
	if kind == "" {
		kind = "d"
	}
	run, err1 := strconv.ParseInt(q.Get("run"), 10, 64)
	n, err2 := strconv.Atoi(q.Get("n"))
	size, err3 := strconv.Atoi(q.Get("size"))
	rate, err4 := strconv.Atoi(q.Get("rate"))
	if err := errors.Join(err1, err2, err3, err4); err != nil || (kind != "d" && kind != "p") ||
		n < 1 || n > maxEvents || size < minSize || size > maxSize || rate < 0 || rate > maxRate {
		http.Error(w, "bad publish parameters", http.StatusBadRequest)
		return
	}
	res := publishEvents(r.Context(), kind[0], run, 0, 1, n, size, rate, &c.inCall, c.b.Publish)
	writeJSON(w, res)
}

// publishEvents calls publish with events first, first+step, … below n
// of the given size, as fast as it returns (rate=0) or each at its time
// on a fixed schedule of rate events per second, and returns when the
// last call did or ctx ended; inCall holds the unix ns the running call
// began.
func publishEvents(ctx context.Context, kind byte, run int64, first, step, n, size, rate int, inCall *atomic.Int64, publish func(data string) error) publishResult {
	var res publishResult
	var interval time.Duration
	if rate > 0 {
		interval = time.Second / time.Duration(rate)
	}
	buf := make([]byte, 0, size)
	start := time.Now()
	for i := first; i < n; i += step {
		ts := time.Now()
		if interval > 0 {
			// The timestamp is the scheduled time: a publisher held up
			// by backpressure counts against latency instead of hiding
			// it (no coordinated omission).
			ts = start.Add(time.Duration(i) * interval)
			if d := time.Until(ts); d > 0 {
				time.Sleep(d)
			}
		}
		if ctx.Err() != nil {
			break
		}
		buf = appendEventData(buf[:0], kind, run, int64(i), ts.UnixNano(), size)
		callStart := time.Now()
		inCall.Store(callStart.UnixNano())
		err := publish(string(buf))
		inCall.Store(0)
		res.MaxCallNS = max(res.MaxCallNS, int64(time.Since(callStart)))
		if err != nil {
			res.Errors++
			if res.FirstErr == "" {
				res.FirstErr = err.Error()
			}
			continue
		}
		res.Published++
	}
	res.ElapsedNS = int64(time.Since(start))
	return res
}

// appendEventData appends one event's data: kind, run, seq and the
// publish time, padded with 'x' to size bytes.
func appendEventData(b []byte, kind byte, run, seq, ts int64, size int) []byte {
	b = append(b, kind, ' ')
	b = strconv.AppendInt(b, run, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, ' ')
	for len(b) < size {
		b = append(b, 'x')
	}
	return b
}

// serverStats is the answer of GET /ctl/stats.
type serverStats struct {
	Impl       string `json:"impl"`
	Active     int64  `json:"active"` // event stream handlers running
	Goroutines int    `json:"goroutines"`
	HeapInuse  uint64 `json:"heap_inuse"`
	StackInuse uint64 `json:"stack_inuse"`
	HeapAlloc  uint64 `json:"heap_alloc"`
	Sys        uint64 `json:"sys"`
	RSS        uint64 `json:"rss"`      // VmRSS, bytes
	RSSPeak    uint64 `json:"rss_peak"` // VmHWM, bytes: the highest RSS so far
	NumGC      uint32 `json:"num_gc"`
	FileLimit  uint64 `json:"file_limit"`
	CPUNS      int64  `json:"cpu_ns"` // user+system CPU time of the process

	InCallSinceNS int64 `json:"in_call_since_ns,omitempty"` // unix ns the running Publish call began

	// NoRuntime is set when Goroutines, HeapInuse and StackInuse are
	// unknown: a server that exposes no Go runtime figures.
	NoRuntime bool `json:"no_runtime,omitempty"`

	// Counters are the implementation's own counts of the clients it
	// disconnected, where it keeps them (ours); nil otherwise.
	Counters *engineCounts `json:"counters,omitempty"`
}

// stats reports memory; with gc=1 it collects garbage first and returns
// freed memory to the OS, so the numbers are what live data holds.
func (c *control) stats(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("gc") == "1" {
		runtime.GC()
		debug.FreeOSMemory()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	writeJSON(w, serverStats{
		Impl:          c.impl,
		Active:        c.active.Load(),
		Goroutines:    runtime.NumGoroutine(),
		HeapInuse:     ms.HeapInuse,
		StackInuse:    ms.StackInuse,
		HeapAlloc:     ms.HeapAlloc,
		Sys:           ms.Sys,
		RSS:           readProcStatus("self", "VmRSS:"),
		RSSPeak:       readProcStatus("self", "VmHWM:"),
		NumGC:         ms.NumGC,
		FileLimit:     fileLimit(),
		CPUNS:         cpuTime(),
		Counters:      countsOf(c.b),
		InCallSinceNS: c.inCall.Load(),
	})
}

// cpuProfile starts (start=FILE) or stops (stop=1) a CPU profile of the
// server process, written to FILE.
func (c *control) cpuProfile(w http.ResponseWriter, r *http.Request) {
	c.profMu.Lock()
	defer c.profMu.Unlock()
	if file := r.URL.Query().Get("start"); file != "" {
		if c.profOut != nil {
			http.Error(w, "a profile is already running", http.StatusConflict)
			return
		}
		f, err := os.Create(file)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := rpprof.StartCPUProfile(f); err != nil {
			f.Close()
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		c.profOut = f
		return
	}
	if c.profOut == nil {
		http.Error(w, "no profile is running", http.StatusConflict)
		return
	}
	rpprof.StopCPUProfile()
	err := c.profOut.Close()
	c.profOut = nil
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// readProcStatus returns a size field of /proc/<pid>/status, such as
// "VmRSS:", in bytes, or 0.
func readProcStatus(pid, field string) uint64 {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// listenLine is what a server process prints first on stdout, followed by
// its address; the driver waits for it.
const listenLine = "sseload: listening on "

// serve runs one implementation and the control endpoints until ctx ends.
func serve(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	c, err := newControl(cfg.serve)
	if err != nil {
		return err
	}
	return serveControl(ctx, cfg.listen, c.handler(), c.b.Close, stdout)
}

// serveControl serves h on listen until ctx ends, printing listenLine
// first; closeFn stops the implementation before the server shuts down.
func serveControl(ctx context.Context, listen string, h http.Handler, closeFn func(), stdout io.Writer) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		closeFn()
		return err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          nil,
	}
	fmt.Fprintf(stdout, "%s%s\n", listenLine, ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	closeFn()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		srv.Close()
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
