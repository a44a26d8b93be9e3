package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

// BenchmarkFanout broadcasts b.N events to N raw-TCP clients over
// loopback, server and clients in this one process, for profiling:
//
//	go test -run=^$ -bench=Fanout/stream -cpuprofile=cpu.prof ./cmd/sseload
//
// The reported deliveries/s counts b.N × clients over the time until
// every client has every event.
func BenchmarkFanout(b *testing.B) {
	for _, impl := range builtImpls() {
		for _, n := range []int{100, 1000} {
			b.Run(fmt.Sprintf("impl=%s/clients=%d", impl, n), func(b *testing.B) {
				benchFanout(b, impl, n)
			})
		}
	}
}

func benchFanout(b *testing.B, impl string, n int) {
	raiseFileLimit(nil)
	c, err := newControl(impl)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: c.handler(), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	defer func() {
		c.b.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if hs.Shutdown(ctx) != nil {
			hs.Close()
		}
	}()
	s := &server{impl: impl, addr: ln.Addr().String(), hc: &http.Client{}}
	cfg := &config{size: 64, timeout: time.Minute}
	p := newPool(s.addr, n)
	defer p.close()
	if err := p.connect(b.Context()); err != nil {
		b.Fatal(err)
	}
	if err := settle(b.Context(), s, p, cfg); err != nil {
		b.Fatal(err)
	}
	spec := &runSpec{id: runIDs.Add(1), events: b.N}
	p.begin(spec)
	buf := make([]byte, 0, cfg.size)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		buf = appendEventData(buf[:0], 'd', spec.id, int64(i), time.Now().UnixNano(), cfg.size)
		if err := c.b.Publish(string(buf)); err != nil {
			b.Fatalf("publish %d: %v", i, err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for p.completed.Load() < int64(n) {
		if time.Now().After(deadline) || p.alive.Load() < int64(n) {
			b.Fatalf("only %d of %d clients got all %d events (%d connected)", p.completed.Load(), n, b.N, p.alive.Load())
		}
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)*float64(n)/el.Seconds(), "deliveries/s")
}
