package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
)

// benchBroker is the -broker of the benchmarks' hubs. What they publish
// stays in the broker: give a prefix (or stream) of their own, and
// delete it afterwards.
//
//	go test -run '^$' -bench HubPublish -benchtime 500x ./cmd/ssehub -args -hub.broker 'redis://127.0.0.1:6379/0?prefix=bench:'
//	redis-cli --scan --pattern 'bench:*' | xargs redis-cli del
var benchBroker = flag.String("hub.broker", "memory", "the -broker of the benchmarks' hubs")

// openStreams opens n streams on h following one URL pattern; each
// update a stream receives is counted on got.
func openStreams(b *testing.B, h *testHub, client *http.Client, n int, got chan<- struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	for range n {
		req, _ := http.NewRequestWithContext(ctx, "GET", h.url+"?match_urlpattern=https://example.com/books/:id", nil)
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			defer res.Body.Close()
			br := bufio.NewReader(res.Body)
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if strings.HasPrefix(line, "id: ") {
					got <- struct{}{}
				}
			}
		}()
	}
}

// publisher returns a function posting one update to h.
func publisher(b *testing.B, h *testHub, client *http.Client) func() {
	body := url.Values{"topic": {"https://example.com/books/1"}, "data": {`{"title":"x"}`}}.Encode()
	auth := "Bearer " + h.admin(b)
	return func() {
		req, _ := http.NewRequest("POST", h.url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", auth)
		res, err := client.Do(req)
		if err != nil || res.StatusCode != 200 {
			b.Fatalf("publish: %v %v", err, res)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
}

// BenchmarkHubFanout publishes updates over HTTP to a hub whose streams
// all follow one URL pattern, and waits for every stream to get each
// one: ns/op is the time from POST to the last delivery.
//
//	go test -run '^$' -bench HubFanout -benchtime 200x ./cmd/ssehub
func BenchmarkHubFanout(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			h := startHub(b, nil, "-anonymous", "-broker", *benchBroker)
			tr := &http.Transport{MaxIdleConnsPerHost: n}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			got := make(chan struct{}, n)
			openStreams(b, h, client, n, got)
			publish := publisher(b, h, client)
			b.ResetTimer()
			for b.Loop() {
				publish()
				for range n {
					<-got
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkHubPublish posts updates back to back, one publisher, to a
// hub with n streams following them, without waiting for deliveries: a
// publish returns once the broker stored the update, so publishes/s
// should not fall as streams grow. Keep -benchtime below the streams'
// queue (1024 updates) so that none is disconnected as slow.
//
//	go test -run '^$' -bench HubPublish -benchtime 500x ./cmd/ssehub
func BenchmarkHubPublish(b *testing.B) {
	for _, n := range []int{0, 100, 1000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			h := startHub(b, nil, "-anonymous", "-broker", *benchBroker)
			tr := &http.Transport{MaxIdleConnsPerHost: n + 1}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			got := make(chan struct{}, 1<<16)
			openStreams(b, h, client, n, got)
			publish := publisher(b, h, client)
			b.ResetTimer()
			for b.Loop() {
				publish()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
			b.StopTimer()
			for range n * b.N {
				<-got
			}
		})
	}
}

// BenchmarkIdleStreams opens idle streams with raw TCP clients (a socket
// each, no goroutine) and reports the heap and stack the process holds
// per stream, most of it on the hub's side.
//
//	go test -run '^$' -bench IdleStreams -benchtime 1x ./cmd/ssehub
func BenchmarkIdleStreams(b *testing.B) {
	const n = 2000
	h := startHub(b, nil, "-anonymous")
	addr := strings.TrimPrefix(h.base, "http://")
	inUse := func() (heap, stack uint64) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse, ms.StackInuse
	}
	for b.Loop() {
		heap0, stack0 := inUse()
		g0 := runtime.NumGoroutine()
		conns := make([]net.Conn, 0, n)
		for range n {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			fmt.Fprintf(c, "GET /.well-known/mercure?match_urlpattern=https://example.com/books/:id HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
			conns = append(conns, c)
		}
		// Wait until the hub serves them all: each got its opening.
		buf := make([]byte, 512)
		for _, c := range conns {
			var got string
			for !strings.Contains(got, ": connected") {
				k, err := c.Read(buf)
				if err != nil {
					b.Fatal(err)
				}
				got += string(buf[:k])
			}
		}
		heap1, stack1 := inUse()
		b.ReportMetric(float64(heap1+stack1-heap0-stack0)/n, "bytes/stream")
		b.ReportMetric(float64(heap1-heap0)/n, "heap-bytes/stream")
		b.ReportMetric(float64(stack1-stack0)/n, "stack-bytes/stream")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/n, "goroutines/stream")
		for _, c := range conns {
			c.Close()
		}
	}
}
