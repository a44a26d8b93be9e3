package ssetest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// BenchmarkCluster measures a cluster of three [sse.Server] nodes on
// loopback, each with a broker from newNode (sharing topics, as for
// [TestCluster]), and clients clients on each node following one topic.
// It publishes b.N events on node A at rate events per second and
// reports deliveries per second and the publish-to-receive latency, p50
// and p99, of the clients on A (local) and on B and C (remote).
func BenchmarkCluster(b *testing.B, newNode func(tb testing.TB) sse.Broker, clients, rate int) {
	var nodes []*node
	for _, name := range []string{"A", "B", "C"} {
		nodes = append(nodes, startNode(b, name, newNode(b)))
	}
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	b.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()

	lat := make([][]time.Duration, len(nodes)) // latencies per node
	var mu sync.Mutex
	var wg, ready sync.WaitGroup
	want := b.N
	for i, n := range nodes {
		for range clients {
			ready.Add(1)
			wg.Go(func() {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.hs.URL+"?topic=bench", nil)
				resp, err := hc.Do(req)
				if err != nil {
					b.Errorf("connecting to %s: %v", n.name, err)
					ready.Done()
					return
				}
				defer resp.Body.Close()
				br := bufio.NewReader(resp.Body)
				if line, err := br.ReadString('\n'); err != nil || line != ": connected\n" {
					b.Errorf("opening of %s: got %q, %v", n.name, line, err)
					ready.Done()
					return
				}
				ready.Done()
				var mine []time.Duration
				for got := 0; got < want; {
					line, err := br.ReadString('\n')
					if err != nil {
						b.Errorf("client of %s: %v after %d of %d events", n.name, err, got, want)
						return
					}
					data, ok := strings.CutPrefix(line, "data: ")
					if !ok {
						continue
					}
					sent, err := strconv.ParseInt(strings.TrimSpace(data), 10, 64)
					if err != nil {
						b.Errorf("client of %s: bad data %q", n.name, data)
						return
					}
					mine = append(mine, time.Since(time.Unix(0, sent)))
					got++
				}
				mu.Lock()
				lat[i] = append(lat[i], mine...)
				mu.Unlock()
			})
		}
	}
	ready.Wait()
	b.ResetTimer()
	start := time.Now()
	every := time.Second / time.Duration(max(rate, 1))
	for i := range b.N {
		if d := time.Until(start.Add(time.Duration(i) * every)); d > 0 {
			time.Sleep(d)
		}
		ev := sse.NewEvent(strconv.FormatInt(time.Now().UnixNano(), 10))
		if _, err := nodes[0].srv.Publish(ctx, "bench", ev); err != nil {
			b.Fatalf("Publish: %v", err)
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	local, remote := lat[0], append(lat[1], lat[2]...)
	b.ReportMetric(float64(len(local)+len(remote))/elapsed.Seconds(), "deliveries/s")
	for _, x := range []struct {
		name string
		d    []time.Duration
	}{{"local", local}, {"remote", remote}} {
		slices.Sort(x.d)
		if len(x.d) == 0 {
			continue
		}
		b.ReportMetric(float64(x.d[len(x.d)/2].Microseconds()), fmt.Sprintf("p50-%s-µs", x.name))
		b.ReportMetric(float64(x.d[len(x.d)*99/100].Microseconds()), fmt.Sprintf("p99-%s-µs", x.name))
	}
}
