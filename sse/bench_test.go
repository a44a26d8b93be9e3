package sse_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

func BenchmarkEventAppendText(b *testing.B) {
	ev := sse.NewEvent(`{"user":"alice","text":"hello, world","n":12345}`).WithType("message").WithID("12345")
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = ev.AppendText(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

// discardWriter is a flushing ResponseWriter that throws writes away.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(int)             {}
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) Flush()                      {}

func BenchmarkConnSend(b *testing.B) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	conn, err := sse.Upgrade(&discardWriter{h: http.Header{}}, r)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ev := sse.NewEvent("0123456789012345678901234567890123456789012345678901234").WithID("1")
	b.ReportAllocs()
	for b.Loop() {
		if err := conn.Send(ev); err != nil {
			b.Fatal(err)
		}
	}
}

// countingClient reads a stream and counts the events in it.
type countingClient struct {
	events atomic.Int64
}

func (c *countingClient) read(body io.Reader) {
	buf := make([]byte, 32<<10)
	var prev byte
	for {
		n, err := body.Read(buf)
		p := buf[:n]
		if n > 0 && prev == '\n' && p[0] == '\n' {
			c.events.Add(1)
		}
		c.events.Add(int64(bytes.Count(p, []byte("\n\n"))))
		if n > 0 {
			prev = p[n-1]
		}
		if err != nil {
			return
		}
	}
}

// waitAll waits until every client has counted at least want events.
func waitAll(clients []*countingClient, want int64) {
	for _, c := range clients {
		for c.events.Load() < want {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// benchClientsEnv names the variable that makes the test binary a
// process of benchmark clients (see TestMain) instead of running tests.
const benchClientsEnv = "SSE_BENCH_CLIENTS_URL"

// runBenchClients is the client process of BenchmarkHubBroadcastLoopback.
// It opens -count streams to the URL in benchClientsEnv, prints "ready"
// once each has its opening comment, then answers each "wait K" line on
// stdin with "ok" once every client has counted K events.
func runBenchClients() int {
	url := os.Getenv(benchClientsEnv)
	n, err := strconv.Atoi(os.Getenv("SSE_BENCH_CLIENTS_N"))
	if err != nil || n <= 0 {
		fmt.Fprintln(os.Stderr, "bench clients: SSE_BENCH_CLIENTS_N must be a positive count")
		return 2
	}
	tr := &http.Transport{MaxIdleConnsPerHost: -1, DisableCompression: true}
	client := &http.Client{Transport: tr}
	clients := make([]*countingClient, n)
	for i := range clients {
		resp, err := client.Get(url)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench clients: client %d: %v\n", i, err)
			return 1
		}
		clients[i] = &countingClient{}
		go clients[i].read(resp.Body)
	}
	waitAll(clients, 1)
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var want int64
		if _, err := fmt.Sscanf(in.Text(), "wait %d", &want); err != nil {
			fmt.Fprintf(os.Stderr, "bench clients: bad command %q\n", in.Text())
			return 2
		}
		waitAll(clients, want)
		fmt.Println("ok")
	}
	return 0
}

// clientProcess drives the client process from the benchmark.
type clientProcess struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startClients(b *testing.B, url string, n int) *clientProcess {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchClientsEnv+"="+url, fmt.Sprintf("SSE_BENCH_CLIENTS_N=%d", n))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &clientProcess{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	b.Cleanup(func() {
		p.in.Close()
		p.cmd.Wait()
	})
	p.expect(b, "ready")
	return p
}

func (p *clientProcess) expect(b *testing.B, want string) {
	b.Helper()
	if !p.out.Scan() {
		b.Fatalf("client process ended: %v", p.out.Err())
	}
	if got := p.out.Text(); got != want {
		b.Fatalf("client process said %q, want %q", got, want)
	}
}

// waitEvents waits until every client has counted k events.
func (p *clientProcess) waitEvents(b *testing.B, k int) {
	b.Helper()
	fmt.Fprintf(p.in, "wait %d\n", k)
	p.expect(b, "ok")
}

// BenchmarkHubBroadcastLoopback broadcasts 64-byte events through a Hub
// with its defaults to clients connected over real loopback TCP from a
// second process (this test binary, re-executed). It reports deliveries
// per second from the first broadcast until every client has every event.
// Allocations are the server's alone.
func BenchmarkHubBroadcastLoopback(b *testing.B) {
	for _, n := range []int{1, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			hub := sse.NewHub[string]()
			srv := httptest.NewServer(hub)
			b.Cleanup(srv.Close)
			b.Cleanup(func() { hub.Close() }) // before srv.Close, which waits for streams
			clients := startClients(b, srv.URL, n)
			if got := hub.Clients(); got != n {
				b.Fatalf("Clients() = %d, want %d", got, n)
			}

			msg := string(bytes.Repeat([]byte("x"), 64-len("data: \n\n")))
			const window = 512 // events a client may lag behind
			sent := 0
			start := time.Now()
			cpu := processCPU()
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
			if st := hub.Stats(); st.SlowDisconnects != 0 {
				b.Fatalf("%d clients disconnected as slow", st.SlowDisconnects)
			}
			b.ReportMetric(float64(n*sent)/elapsed.Seconds(), "deliveries/s")
			if used := processCPU() - cpu; used > 0 {
				// The server's CPU (the clients run in another process).
				b.ReportMetric(float64(used.Nanoseconds())/float64(n*sent), "cpu-ns/delivery")
			}
		})
	}
}

// BenchmarkIdleStreams measures what an idle stream costs the server: n
// clients in a second process connect to a Hub over loopback, and the
// server's heap and goroutine stacks in use are compared with before they
// came (after a GC). One op is the whole census.
func BenchmarkIdleStreams(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			for b.Loop() {
				hub := sse.NewHub[string]()
				srv := httptest.NewServer(hub)
				before := inUse()
				clients := startClients(b, srv.URL, n)
				if got := hub.Clients(); got != n {
					b.Fatalf("Clients() = %d, want %d", got, n)
				}
				time.Sleep(200 * time.Millisecond) // let the handshakes settle
				after := inUse()
				b.ReportMetric(float64(after.heap-before.heap)/float64(n), "heap-B/stream")
				b.ReportMetric(float64(after.stack-before.stack)/float64(n), "stack-B/stream")
				b.ReportMetric(float64(after.heap+after.stack-before.heap-before.stack)/float64(n), "B/stream")
				hub.Close()
				clients.in.Close()
				clients.cmd.Wait()
				srv.Close()
			}
		})
	}
}

type memInUse struct{ heap, stack uint64 }

func inUse() memInUse {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memInUse{heap: ms.HeapAlloc, stack: ms.StackInuse}
}
