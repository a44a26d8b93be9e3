package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSSEHub builds cmd/ssehub once and drives it as a real run does: a
// tiny run with exact counts, the process ending with its server, and a
// publish the hub refuses counted as an error.
func TestSSEHub(t *testing.T) {
	bin, err := buildSSEHub(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const clients, events, rate = 5, 20, 40
	cfg, err := parseFlags([]string{"-impls=ssehub", "-ssehub-bin=" + bin, fmt.Sprintf("-clients=%d", clients),
		fmt.Sprintf("-events=%d", events), fmt.Sprintf("-rates=%d", rate), "-latency-duration=500ms", "-timeout=60s"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("tiny run", func(t *testing.T) {
		r := measureOne(t.Context(), cfg, implSSEHub, clients, events, t.Logf)
		checkTinyRun(t, r, clients, events, rate)
		if r.tput.pubPerSec <= 0 {
			t.Errorf("throughput run: got %v publishes/s, want > 0", r.tput.pubPerSec)
		}
		if !r.heapUnknown && r.heapStackConn == 0 {
			t.Errorf("memory: hub serves runtime figures but heap+stack per connection is 0")
		}
		var out bytes.Buffer
		writeReport(&out, cfg, cfg.impls, []*result{r}, time.Second, 0)
		report := out.String()
		for _, want := range []string{"| coregx/stream ssehub (Mercure) |", "| throughput, deliveries/s (lost) ↑ | 5 |",
			"| publishes/s in the throughput run ↑ | 5 |", "| latency @ 40 ev/s, p50 / p99 / max (lost) ↓ | 5 |"} {
			if !strings.Contains(report, want) {
				t.Errorf("report lacks %q:\n%s", want, report)
			}
		}
		if strings.Contains(report, "error") {
			t.Errorf("report has an error cell:\n%s", report)
		}
	})

	t.Run("tiny run, 3 publishers", func(t *testing.T) {
		cfg3 := *cfg
		cfg3.publishers = 3
		r := measureOne(t.Context(), &cfg3, implSSEHub, clients, events, t.Logf)
		checkTinyRun(t, r, clients, events, rate)
	})

	t.Run("stalled clients", func(t *testing.T) {
		const healthy, stalled, rate = 5, 12, 1000
		scfg, err := parseFlags([]string{"-scenario=stalled", "-impls=ssehub", "-ssehub-bin=" + bin, "-publishers=2",
			"-stalled=" + strconv.Itoa(stalled), "-healthy=" + strconv.Itoa(healthy), "-stall-rate=" + strconv.Itoa(rate),
			"-stall-duration=500ms", "-timeout=60s", "-quick"}, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		results, err := measureStalled(t.Context(), scfg, scfg.impls, newProgress(stalledSteps(scfg, scfg.impls)), t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		if len(results) != 1 || len(results[0].runs) != 1 {
			t.Fatalf("got %d results, want 1 with 1 stalled run", len(results))
		}
		base, r := results[0].baseline, results[0].runs[0]
		for _, run := range []*stalledRun{base, r} {
			if run.err != nil {
				t.Fatalf("%d stalled: %v", run.stalled, run.err)
			}
			// Two publishers: each one's updates in order, all of them once.
			if run.complete != healthy || run.healthy.rr.delivered != healthy*rate/2 || run.healthy.publishErrs != 0 {
				t.Errorf("%d stalled: got %d/%d healthy complete, %d delivered, %d publish errors; want %d/%d, %d, 0",
					run.stalled, run.complete, run.healthy.rr.clients, run.healthy.rr.delivered, run.healthy.publishErrs, healthy, healthy, healthy*rate/2)
			}
		}
		if r.connected != stalled || r.countsBefore == nil || r.countsBefore.Clients != healthy+stalled || !r.noEnds {
			t.Errorf("got %d stalled served, counts before %+v, ends unknown %v; want %d, %d clients, true",
				r.connected, r.countsBefore, r.noEnds, stalled, healthy+stalled)
		}
		if r.clientErr != "" || len(r.queued) != stalled || len(r.ended) != 0 {
			t.Errorf("got %d stalled clients' records (%s), %d ends; want %d, none", len(r.queued), r.clientErr, len(r.ended), stalled)
		}
		checkStalledReport(t, scfg, results, "| | coregx/stream ssehub (Mercure) |",
			"| healthy clients with every event, in order, once | 5/5 (0 events lost) |",
			"| stalled streams served when publishing began | 12/12 |",
			"| stalled streams ended by the server (after: p50 / max) | not reported (no control API) |")
	})

	t.Run("stop ends the hub process", func(t *testing.T) {
		s, err := startSSEHub(t.Context(), cfg, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		pid := s.hub.pid
		st, err := s.stats(t.Context(), true)
		if err != nil || st.RSS == 0 || st.Impl != implSSEHub {
			t.Fatalf("stats of a running hub: got %+v, %v; want its RSS", st, err)
		}
		s.stop()
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("after stop: signal 0 to hub process %d: got %v, want ESRCH", pid, err)
		}
	})

	t.Run("refused publish is an error", func(t *testing.T) {
		s, err := startSSEHub(t.Context(), cfg, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.stop)
		s.hub.pubToken = "not-a-token"
		res, err := s.publish(t.Context(), "d", 1, 3, 64, 0)
		if err != nil {
			t.Fatal(err)
		}
		if res.Published != 0 || res.Errors != 3 || !strings.HasPrefix(res.FirstErr, "401 ") {
			t.Errorf("got %d published, %d errors, first %q; want 0, 3, a 401", res.Published, res.Errors, res.FirstErr)
		}
	})
}

func TestSSEHubFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"stall path outside a stall child", []string{"-stall-path=/x"}, "-stall-path: only with -stall-clients"},
		{"stall path not a target", []string{"-stall-clients=1", "-target=127.0.0.1:1", "-stall-path=x"}, "-stall-path: want a request target starting with /"},
		{"stall path with a line break", []string{"-stall-clients=1", "-target=127.0.0.1:1", "-stall-path=/x\r\nHost: y"}, "-stall-path: want a request target"},
		{"cpu profile", []string{"-impls=stream,ssehub", "-cpuprofile-dir=/tmp/x"}, "-cpuprofile-dir: not with -impls ssehub"},
		{"target", []string{"-impls=ssehub", "-target=127.0.0.1:8080"}, "-target: not with -impls ssehub"},
		{"binary without the impl", []string{"-impls=stream", "-ssehub-bin=/tmp/ssehub"}, "-ssehub-bin: only with -impls ssehub"},
		{"serve", []string{"-serve=ssehub"}, `-serve: unknown implementation "ssehub"`},
		{"no publishers", []string{"-impls=ssehub", "-publishers=0"}, "-publishers: must be between 1 and 64, got 0"},
		{"too many publishers", []string{"-impls=ssehub", "-publishers=65"}, "-publishers: must be between 1 and 64, got 65"},
		{"publishers without the impl", []string{"-impls=stream", "-publishers=2"}, "-publishers: only with -impls ssehub"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFlags(tt.args, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
	cfg, err := parseFlags([]string{"-impls=stream,ssehub,ssehub", "-ssehub-bin=/tmp/ssehub"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.impls, ","); got != "stream,ssehub" || cfg.ssehubBin != "/tmp/ssehub" {
		t.Errorf("got impls %q, binary %q; want stream,ssehub and /tmp/ssehub", got, cfg.ssehubBin)
	}
	cfg, err = parseFlags([]string{"-scenario=stalled", "-impls=ssehub", "-publishers=4"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.impls, ","); got != "ssehub" || cfg.scenario != scenarioStalled || cfg.publishers != 4 {
		t.Errorf("stalled: got impls %q, scenario %q, %d publishers; want ssehub, stalled, 4", got, cfg.scenario, cfg.publishers)
	}
}

// TestHubStats reads a hub's figures from a /metrics like the one ssehub
// serves: the runtime's, its stream count and its disconnects by reason.
func TestHubStats(t *testing.T) {
	text := `# TYPE go_goroutines gauge
go_goroutines 17
go_memstats_heap_inuse_bytes 2.5e+06
go_memstats_stack_inuse_bytes 524288
ssehub_sse_connections 205
ssehub_sse_disconnects_total{reason="budget"} 3
ssehub_sse_disconnects_total{reason="client"} 11
ssehub_sse_disconnects_total{reason="shutdown"} 0
ssehub_sse_disconnects_total{reason="slow"} 4000
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, text)
	}))
	t.Cleanup(srv.Close)
	h := &hubProc{pid: os.Getpid(), base: srv.URL, hc: srv.Client()}
	st, err := h.stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := engineCounts{Clients: 205, SlowDisconnects: 4000, BudgetDisconnects: 3, ClientDisconnects: 11}
	if st.Counters == nil || *st.Counters != want || st.Active != 205 {
		t.Errorf("counts: got %+v, active %d; want %+v, 205", st.Counters, st.Active, want)
	}
	if st.Goroutines != 17 || st.HeapInuse != 2500000 || st.StackInuse != 524288 || st.NoRuntime || st.RSS == 0 {
		t.Errorf("runtime: got %d goroutines, heap %d, stack %d, unknown %v, RSS %d; want 17, 2500000, 524288, false, > 0",
			st.Goroutines, st.HeapInuse, st.StackInuse, st.NoRuntime, st.RSS)
	}

	text = "go_goroutines 3\n"
	st, err = h.stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Counters != nil || st.Active != 0 || !st.NoRuntime {
		t.Errorf("without the hub's figures: got counts %+v, active %d, runtime unknown %v; want none, 0, true", st.Counters, st.Active, st.NoRuntime)
	}
}

func TestHubLog(t *testing.T) {
	var out bytes.Buffer
	l := &hubLog{out: &out, addrc: make(chan string, 1)}
	text := "time=x level=WARN msg=dev\n" +
		`time=x level=INFO msg="ssehub: listening" url=http://127.0.0.1:4711/.well-known/mercure demo=http://127.0.0.1:4711/` + "\n" +
		`{"msg":"again","url":"http://127.0.0.1:9999/.well-known/mercure"}` + "\n"
	for i := 0; i < len(text); i += 7 { // split lines across writes
		if n, err := l.Write([]byte(text[i:min(i+7, len(text))])); err != nil || n != min(7, len(text)-i) {
			t.Fatalf("write: got %d, %v", n, err)
		}
	}
	select {
	case a := <-l.addrc:
		if a != "127.0.0.1:4711" {
			t.Errorf("address: got %q, want 127.0.0.1:4711", a)
		}
	default:
		t.Fatal("no address found")
	}
	if got, want := strings.Count(out.String(), "\nssehub: ")+1, 3; got != want || !strings.HasPrefix(out.String(), "ssehub: time=x level=WARN msg=dev\n") {
		t.Errorf("passed on %d lines, want %d with the prefix:\n%s", got, want, out.String())
	}
	for range hubLogLines + 10 {
		l.Write([]byte("line\n"))
	}
	if got, want := strings.Count(out.String(), "\n"), hubLogLines+1; got != want {
		t.Errorf("after many lines: got %d lines out, want %d (the cap and one note)", got, want)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 42
go_memstats_heap_inuse_bytes 1.2345e+06
go_memstats_heap_inuse_bytes_total 7
go_memstats_stack_inuse_bytes{x="y"} 9
go_memstats_stack_inuse_bytes 65536 1700000000000
`
	got := parseMetrics(strings.NewReader(text), "go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes")
	want := map[string]float64{"go_goroutines": 42, "go_memstats_heap_inuse_bytes": 1234500, "go_memstats_stack_inuse_bytes": 65536}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestProcCPUTime(t *testing.T) {
	if got := procCPUTime("0"); got != 0 {
		t.Errorf("pid 0: got %d, want 0", got)
	}
	self := strconv.Itoa(os.Getpid())
	got, own := procCPUTime(self), cpuTime()
	// /proc counts in clock ticks: within one tick of getrusage, plus
	// the time between the two reads.
	if d := time.Duration(own - got); got <= 0 || d < -10*time.Millisecond || d > 50*time.Millisecond {
		t.Errorf("this process: got %v from /proc, %v from getrusage; want them within a tick", time.Duration(got), time.Duration(own))
	}
}

// TestStartSSEHubExits checks that a hub that exits before it listens is
// an error at once, not after the start-up timeout.
func TestStartSSEHubExits(t *testing.T) {
	bin, err := exec.LookPath("false")
	if err != nil {
		t.Fatalf("no false(1) on PATH: %v", err)
	}
	start := time.Now()
	s, err := startSSEHub(t.Context(), &config{ssehubBin: bin, host: "127.0.0.1", publishers: 1}, &bytes.Buffer{})
	if s != nil || err == nil || !strings.Contains(err.Error(), "start ssehub: the hub exited: exit status 1") {
		t.Errorf("got %v, %v; want no server and the hub's exit", s, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v, want well under the 20 s start-up timeout", d)
	}
}
