package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
)

// BenchmarkHubFanout publishes updates over HTTP to a hub whose streams
// all follow one URL pattern, and waits for every stream to get each
// one: ns/op is the time from POST to the last delivery.
//
//	go test -run '^$' -bench HubFanout -benchtime 200x ./cmd/ssehub
func BenchmarkHubFanout(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			h := startHub(b, nil, "-anonymous")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			got := make(chan struct{}, n)
			tr := &http.Transport{MaxIdleConnsPerHost: n}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			for range n {
				req, _ := http.NewRequestWithContext(ctx, "GET", h.url+"?matchURLPattern=https://example.com/books/:id", nil)
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
			body := url.Values{"topic": {"https://example.com/books/1"}, "data": {`{"title":"x"}`}}.Encode()
			auth := "Bearer " + h.admin(b)
			b.ResetTimer()
			for b.Loop() {
				req, _ := http.NewRequest("POST", h.url, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Authorization", auth)
				res, err := client.Do(req)
				if err != nil || res.StatusCode != 200 {
					b.Fatalf("publish: %v %v", err, res)
				}
				res.Body.Close()
				for range n {
					<-got
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
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
	inUse := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse + ms.StackInuse
	}
	for b.Loop() {
		before := inUse()
		conns := make([]net.Conn, 0, n)
		for range n {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			fmt.Fprintf(c, "GET /.well-known/mercure?matchURLPattern=https://example.com/books/:id HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
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
		after := inUse()
		b.ReportMetric(float64(after-before)/n, "bytes/stream")
		for _, c := range conns {
			c.Close()
		}
	}
}
