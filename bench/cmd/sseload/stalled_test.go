package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStallClientsReport runs the stalled clients' child process logic
// against a raw TCP server that ends each connection its own way, and
// checks what the clients report: a reset and a FIN are seen at once,
// without reading; a FIN queued behind data the client never reads is
// not, and neither is a connection left open.
func TestStallClientsReport(t *testing.T) {
	type action int
	const (
		reset action = iota
		fin
		finBehindData
		keepOpen
	)
	tests := []struct {
		name      string
		act       action
		wantSeen  bool
		wantState string
	}{
		{"reset", reset, true, "CLOSE"},
		{"FIN", fin, true, "CLOSE-WAIT"},
		{"FIN behind unsent data", finBehindData, false, "ESTAB"},
		{"left open", keepOpen, false, "ESTAB"},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ended := make(chan net.Conn, len(tests))
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					c.Close()
					return
				}
				id, _ := strconv.Atoi(req.URL.Query().Get("id"))
				switch tests[id].act {
				case reset:
					_ = c.(*net.TCPConn).SetLinger(0)
					c.Close()
				case fin:
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n")
					c.Close()
				case finBehindData:
					// Fill the client's window and the send buffer, then close:
					// the FIN waits behind data the client never reads.
					_ = c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
					_, _ = c.Write(make([]byte, 8<<20))
					c.Close()
				}
				ended <- c
			}()
		}
	}()

	cfg := &config{stallClients: len(tests), target: ln.Addr().String(), rcvbuf: defaultRcvbuf, timeout: 30 * time.Second}
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		err := runStallClients(t.Context(), cfg, stdinR, stdoutW)
		stdoutW.Close()
		errc <- err
	}()
	out := bufio.NewReader(stdoutR)
	line, err := out.ReadString('\n')
	if want := stallReadyLine + strconv.Itoa(len(tests)) + "\n"; err != nil || line != want {
		t.Fatalf("first line: got %q (%v), want %q", line, err, want)
	}
	for range tests { // held until the test ends: a collected conn would close
		select {
		case c := <-ended:
			t.Cleanup(func() { c.Close() })
		case <-time.After(10 * time.Second):
			t.Fatal("the server did not handle every connection")
		}
	}
	time.Sleep(300 * time.Millisecond) // a FIN or reset crosses loopback in microseconds
	if _, err := io.WriteString(stdinW, "report\n"); err != nil {
		t.Fatal(err)
	}
	line, err = out.ReadString('\n')
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	js, ok := strings.CutPrefix(line, stallReportLine)
	if !ok {
		t.Fatalf("report line: got %.80q, want prefix %q", line, stallReportLine)
	}
	var recs []stallClientRecord
	if err := json.Unmarshal([]byte(js), &recs); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("runStallClients: %v", err)
	}
	if len(recs) != len(tests) {
		t.Fatalf("got %d records, want %d", len(recs), len(tests))
	}
	for i, tt := range tests {
		r := recs[i]
		if r.ID != i {
			t.Errorf("%s: got id %d, want %d", tt.name, r.ID, i)
		}
		if tt.act == finBehindData && (r.FullNS == 0 || r.Queued == 0) {
			t.Errorf("%s: got full at %d with %d bytes queued; want a time and bytes", tt.name, r.FullNS, r.Queued)
		}
		if tt.act == keepOpen && (r.FullNS != 0 || r.Queued != 0) {
			t.Errorf("%s: got full at %d with %d bytes queued; want neither (nothing was sent)", tt.name, r.FullNS, r.Queued)
		}
		if seen := r.ClosedNS > 0; seen != tt.wantSeen || r.State != tt.wantState {
			t.Errorf("%s: got seen %v, state %s; want seen %v, state %s", tt.name, seen, r.State, tt.wantSeen, tt.wantState)
		}
	}
}

// TestStalledScenarioTiny runs the stalled scenario end to end at a tiny
// size, every server, healthy pool and stalled-client process as in a
// real run, and checks the counts that do not depend on timing.
func TestStalledScenarioTiny(t *testing.T) {
	const healthy, stalled, rate = 5, 12, 1000
	impls := []string{implStream, implStreamServer, implGoSSE, implR3labs}
	cfg, err := parseFlags([]string{"-scenario=stalled", "-impls=" + strings.Join(impls, ","),
		"-stalled=" + strconv.Itoa(stalled), "-healthy=" + strconv.Itoa(healthy), "-stall-rate=" + strconv.Itoa(rate),
		"-stall-duration=500ms", "-timeout=60s"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.stallSize != 1024 || cfg.rcvbuf != defaultRcvbuf {
		t.Fatalf("defaults: got size %d, rcvbuf %d; want 1024, %d", cfg.stallSize, cfg.rcvbuf, defaultRcvbuf)
	}
	var steps []string
	logf := func(format string, a ...any) {
		line := fmt.Sprintf(format, a...)
		t.Log(line)
		if strings.HasPrefix(line, "[") {
			steps = append(steps, line[:strings.IndexByte(line, ']')+1])
		}
	}
	results, err := measureStalled(t.Context(), cfg, cfg.impls, newProgress(stalledSteps(cfg, cfg.impls)), logf)
	if err != nil {
		t.Fatal(err)
	}
	if want := "[1/8] [2/8] [3/8] [4/8] [5/8] [6/8] [7/8] [8/8]"; strings.Join(steps, " ") != want {
		t.Errorf("progress steps: got %q, want %q", strings.Join(steps, " "), want)
	}
	if len(results) != len(impls) {
		t.Fatalf("got %d results, want %d", len(results), len(impls))
	}
	const events = rate / 2
	for i, res := range results {
		if res.impl != impls[i] {
			t.Errorf("result %d: got %s, want %s", i, res.impl, impls[i])
		}
		if len(res.runs) != 1 {
			t.Fatalf("%s: got %d stalled runs, want 1", res.impl, len(res.runs))
		}
		base, r := res.baseline, res.runs[0]
		for _, run := range []*stalledRun{base, r} {
			if run.err != nil {
				t.Fatalf("%s, %d stalled: %v", res.impl, run.stalled, run.err)
			}
			if run.healthy.rr.clients != healthy {
				t.Errorf("%s, %d stalled: got %d healthy clients counted, want %d", res.impl, run.stalled, run.healthy.rr.clients, healthy)
			}
		}
		// Without stalled clients every implementation delivers everything.
		if base.complete != healthy || base.healthy.rr.delivered != healthy*events || base.stalled != 0 || base.connected != 0 {
			t.Errorf("%s baseline: got %d/%d complete, %d delivered, %d stalled, %d served; want %d/%d, %d, 0, 0",
				res.impl, base.complete, healthy, base.healthy.rr.delivered, base.stalled, base.connected, healthy, healthy, healthy*events)
		}
		if r.stalled != stalled || r.connected != stalled {
			t.Errorf("%s: got %d stalled, %d served when publishing began; want %d, %d", res.impl, r.stalled, r.connected, stalled, stalled)
		}
		if r.clientErr != "" || len(r.queued) != stalled {
			t.Errorf("%s: got %d stalled clients' records (%s), want %d", res.impl, len(r.queued), r.clientErr, stalled)
		}
		if len(r.sawClose) > len(r.ended) || r.obs1 > len(r.ended) || r.est1 > r.obs1 || r.est5 > r.obs5 {
			t.Errorf("%s: got %d ended, %d saw the end, %d/%d and %d/%d still established; inconsistent",
				res.impl, len(r.ended), len(r.sawClose), r.est1, r.obs1, r.est5, r.obs5)
		}
		if isOurs(res.impl) {
			// Ours never block the publisher; a few stalled clients never
			// delay the healthy ones.
			if r.complete != healthy || r.blocked || r.healthy.publishErrs != 0 {
				t.Errorf("%s: got %d/%d healthy complete, publish blocked %v, %d publish errors; want all complete, not blocked, none",
					res.impl, r.complete, healthy, r.blocked, r.healthy.publishErrs)
			}
			if r.countsBefore == nil || r.countsAfter == nil || r.countsBefore.Clients != healthy+stalled {
				t.Errorf("%s: server counts before %+v, after %+v; want %d clients before", res.impl, r.countsBefore, r.countsAfter, healthy+stalled)
			}
		} else if r.countsBefore != nil {
			t.Errorf("%s: got server counts %+v, want none (a peer keeps none)", res.impl, r.countsBefore)
		}
		if r.goroutinesBase <= 0 || r.goroutinesPeak < r.goroutinesBase || r.heapPeak == 0 || r.rssPeak == 0 {
			t.Errorf("%s: goroutines %d/%d, heap peak %d, RSS peak %d; want positive, peak ≥ before",
				res.impl, r.goroutinesBase, r.goroutinesPeak, r.heapPeak, r.rssPeak)
		}
	}
	checkStalledReport(t, cfg, results, "### 12 stalled clients beside 5 healthy",
		"| | coregx/stream Hub | coregx/stream Server | tmaxmax/go-sse | r3labs/sse v2 |",
		"| healthy clients with every event, in order, once | 5/5 (0 events lost) | 5/5 (0 events lost) |",
		"| stalled streams served when publishing began | 12/12 | 12/12 | 12/12 | 12/12 |",
		"events of 1024 bytes at 1000/s for 500ms")
}

// checkStalledReport writes the stalled-readers report of results and
// checks that it has every line of wants, and no error.
func checkStalledReport(t *testing.T, cfg *config, results []*stalledResult, wants ...string) {
	t.Helper()
	var out bytes.Buffer
	writeStalledReport(&out, cfg, results, time.Second, 0)
	report := out.String()
	for _, want := range wants {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "error") {
		t.Errorf("report has an error:\n%s", report)
	}
}

func TestStalledFlagDefaults(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		wantStalled []int
		wantDur     time.Duration
		wantSize    int
		wantImpls   string
		wantRcvbuf  int
	}{
		{"full", []string{"-scenario=stalled"}, []int{5000, 10000}, 10 * time.Second, 1024, "stream,stream-server,gosse,r3labs", 4096},
		{"quick", []string{"-scenario=stalled", "-quick"}, []int{200}, 2 * time.Second, 1024, "stream,stream-server,gosse,r3labs", 4096},
		{"given", []string{"-scenario=stalled", "-stalled=7,8", "-size=64", "-impls=r3labs", "-rcvbuf=0", "-stall-duration=3s"},
			[]int{7, 8}, 3 * time.Second, 64, "r3labs", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseFlags(tt.args, &bytes.Buffer{})
			if err != nil {
				t.Fatalf("parseFlags(%q): %v", tt.args, err)
			}
			if !equalInts(cfg.stalled, tt.wantStalled) || cfg.stallDur != tt.wantDur || cfg.stallSize != tt.wantSize ||
				strings.Join(cfg.impls, ",") != tt.wantImpls || cfg.rcvbuf != tt.wantRcvbuf || cfg.healthy != 200 || cfg.stallRate != 1000 {
				t.Errorf("got stalled %v, duration %v, size %d, impls %v, rcvbuf %d, healthy %d, rate %d; want %v, %v, %d, %s, %d, 200, 1000",
					cfg.stalled, cfg.stallDur, cfg.stallSize, cfg.impls, cfg.rcvbuf, cfg.healthy, cfg.stallRate,
					tt.wantStalled, tt.wantDur, tt.wantSize, tt.wantImpls, tt.wantRcvbuf)
			}
		})
	}
}

// TestSummarizeStalls checks the stalled clients' figures from made-up
// server and client records.
func TestSummarizeStalls(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) int64 { return t0.Add(d).UnixNano() }
	ends := []stallServerRecord{
		{ID: 0, StartNS: at(-time.Second), EndNS: at(2 * time.Second)},  // closed 0.5 s after
		{ID: 1, StartNS: at(-time.Second), EndNS: at(3 * time.Second)},  // closed 2 s after
		{ID: 2, StartNS: at(-time.Second), EndNS: at(4 * time.Second)},  // never closed
		{ID: 3, StartNS: at(-time.Second)},                              // never ended
		{ID: 4, StartNS: at(-time.Second), EndNS: at(10 * time.Second)}, // ended too late to observe
	}
	clients := []stallClientRecord{
		{ID: 0, ClosedNS: at(2500 * time.Millisecond), FullNS: at(100 * time.Millisecond), Queued: 8000, State: "CLOSE"},
		{ID: 1, ClosedNS: at(5 * time.Second), FullNS: at(200 * time.Millisecond), Queued: 7000, State: "CLOSE-WAIT"},
		{ID: 2, State: "ESTAB"},
		{ID: 3, FullNS: at(-time.Second), Queued: 300, State: "ESTAB"},
		{ID: 4, FullNS: at(50 * time.Millisecond), Queued: 9000, State: "ESTAB"},
	}
	var r stalledRun
	r.summarizeStalls(ends, clients, t0, t0.Add(9*time.Second+500*time.Millisecond))
	s := func(ds []time.Duration) string { return fmt.Sprint(ds) }
	if got, want := s(r.ended), "[2s 3s 4s 10s]"; got != want {
		t.Errorf("ended: got %s, want %s", got, want)
	}
	if got, want := s(r.sawClose), "[2.5s 5s]"; got != want {
		t.Errorf("saw close: got %s, want %s", got, want)
	}
	if got, want := s(r.afterEnd), "[500ms 2s]"; got != want {
		t.Errorf("after end: got %s, want %s", got, want)
	}
	if got, want := s(r.full), "[-1s 50ms 100ms 200ms]"; got != want {
		t.Errorf("full: got %s, want %s", got, want)
	}
	if got, want := s(r.endedFull), "[1.9s 2.8s 9.95s]"; got != want {
		t.Errorf("ended after full: got %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(r.queued), "[0 300 7000 8000 9000]"; got != want {
		t.Errorf("queued: got %s, want %s", got, want)
	}
	// 1 s after the end: ids 0, 1, 2 observed; 1 and 2 still established.
	// 5 s after: ids 0, 1, 2 observed (ends at 2, 3, 4 s, reported at 9.5 s); 2 still established.
	if r.est1 != 2 || r.obs1 != 3 || r.est5 != 1 || r.obs5 != 3 {
		t.Errorf("still established: got %d/%d after 1s, %d/%d after 5s; want 2/3, 1/3", r.est1, r.obs1, r.est5, r.obs5)
	}
}

// TestStallGroupStopsByItself checks that a stalled-client process whose
// driver goes away exits: closing its stdin makes it report and exit.
func TestStallGroupStopsByItself(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		for range len(accepted) {
			(<-accepted).Close()
		}
	})
	cfg := &config{rcvbuf: defaultRcvbuf, timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	g, err := startStallGroup(ctx, cfg, &server{addr: ln.Addr().String()}, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	g.stop()
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("stop took %v; want the child to exit by itself when its stdin closes", d)
	}
}
