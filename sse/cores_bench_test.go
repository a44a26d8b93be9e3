package sse_test

import (
	"bytes"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// writeSyscalls returns how many write system calls this process made so
// far (syscw in /proc/self/io), or -1 where that is not known.
func writeSyscalls() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// BenchmarkHubFanoutCores is BenchmarkHubBroadcastLoopback at 10 000
// clients (SSE_BENCH_FANOUT_CLIENTS sets another count) with the server's
// write system calls counted too: run it with -cpu=1,2,4,8 to see how the
// cost of a delivery follows GOMAXPROCS. It reports deliveries per
// second, the server's CPU and its writes per delivery (Linux only).
func BenchmarkHubFanoutCores(b *testing.B) {
	n := 10000
	if s := os.Getenv("SSE_BENCH_FANOUT_CLIENTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	hub := sse.NewHub[string]()
	srv := httptest.NewServer(hub)
	b.Cleanup(srv.Close)
	b.Cleanup(func() { hub.Close() })
	clients := startClients(b, srv.URL, n)
	if got := hub.Clients(); got != n {
		b.Fatalf("Clients() = %d, want %d", got, n)
	}
	msg := string(bytes.Repeat([]byte("x"), 64-len("data: \n\n")))
	const window = 512
	sent := 0
	runtime.GC()
	start := time.Now()
	cpu := processCPU()
	writes := writeSyscalls()
	b.ReportAllocs()
	for b.Loop() {
		if err := hub.Broadcast(msg); err != nil {
			b.Fatal(err)
		}
		sent++
		if sent%window == 0 {
			clients.waitEvents(b, 1+sent-window)
		}
	}
	clients.waitEvents(b, 1+sent)
	elapsed := time.Since(start)
	st := hub.Stats()
	if st.SlowDisconnects != 0 || st.Dropped != 0 {
		b.Fatalf("%d clients disconnected as slow, %d events dropped", st.SlowDisconnects, st.Dropped)
	}
	d := float64(n * sent)
	b.ReportMetric(d/elapsed.Seconds(), "deliveries/s")
	// Writes that ran 5 ms (a client that did not keep up) and were
	// handed off: where there are many, the clients were the bottleneck.
	b.ReportMetric(float64(st.StalledWrites), "stalled-writes")
	b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/d, "cpu-ns/delivery")
	if writes >= 0 {
		b.ReportMetric(float64(writeSyscalls()-writes)/d, "writes/delivery")
	}
}

// BenchmarkHubFanoutPaced broadcasts to n clients over loopback (as
// BenchmarkHubFanoutCores) at a fixed pace instead of as fast as it can,
// one event every SSE_BENCH_PACE (default 500µs): where the writers keep
// pace with the publisher, as all of them do on a machine with many
// cores, every event is written on its own. It reports the server's
// writes and CPU per delivery.
func BenchmarkHubFanoutPaced(b *testing.B) {
	n := 100
	if s := os.Getenv("SSE_BENCH_FANOUT_CLIENTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	pace := 500 * time.Microsecond
	if s := os.Getenv("SSE_BENCH_PACE"); s != "" {
		pace, _ = time.ParseDuration(s)
	}
	hub := sse.NewHub[string]()
	srv := httptest.NewServer(hub)
	b.Cleanup(srv.Close)
	b.Cleanup(func() { hub.Close() })
	clients := startClients(b, srv.URL, n)
	msg := string(bytes.Repeat([]byte("x"), 64-len("data: \n\n")))
	sent := 0
	runtime.GC()
	start := time.Now()
	cpu := processCPU()
	writes := writeSyscalls()
	for b.Loop() {
		if err := hub.Broadcast(msg); err != nil {
			b.Fatal(err)
		}
		sent++
		time.Sleep(time.Until(start.Add(time.Duration(sent) * pace)))
	}
	clients.waitEvents(b, 1+sent)
	if st := hub.Stats(); st.SlowDisconnects != 0 || st.Dropped != 0 {
		b.Fatalf("%d clients disconnected as slow, %d events dropped", st.SlowDisconnects, st.Dropped)
	}
	d := float64(n * sent)
	b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/d, "cpu-ns/delivery")
	if writes >= 0 {
		b.ReportMetric(float64(writeSyscalls()-writes)/d, "writes/delivery")
	}
}
