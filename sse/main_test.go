package sse_test

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// TestMain fails the run when goroutines started by the tests outlive
// them. Started with benchClientsEnv set, the binary is instead the client
// process of BenchmarkHubBroadcastLoopback.
func TestMain(m *testing.M) {
	if os.Getenv(benchClientsEnv) != "" {
		os.Exit(runBenchClients())
	}
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(5 * time.Second); len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "leaked %d goroutines:\n\n%s\n", len(leaked), strings.Join(leaked, "\n\n"))
			code = 1
		}
		// Every lone Conn has ended: none is left watched or beating.
		if groups, watched, beats, timers := sse.SoloLeft(); groups != 0 || watched != 0 || beats != 0 || timers {
			fmt.Fprintf(os.Stderr, "left in solo: %d groups, %d watched Conns, %d heartbeats, timers %v\n", groups, watched, beats, timers)
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines waits up to d for stray goroutines to end and returns
// the stacks of those still running.
func leakedGoroutines(d time.Duration) []string {
	deadline := time.Now().Add(d)
	for {
		leaked := strayGoroutines()
		if len(leaked) == 0 || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// allStacks returns the stacks of every goroutine, one per string.
func allStacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return strings.Split(string(buf), "\n\n")
}

func strayGoroutines() []string {
	var out []string
	for _, g := range allStacks() {
		if g == "" || isExpectedGoroutine(g) {
			continue
		}
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}

func isExpectedGoroutine(stack string) bool {
	for _, s := range []string{
		"testing.(*M).",
		"testing.tRunner(",
		"testing.runFuzzing(",
		"testing.(*F).",
		"main.main()",
		"os/signal.",
		"sse_test.leakedGoroutines(",
	} {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}
