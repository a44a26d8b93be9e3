package clientbench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

var recordings = []*Recording{
	NewRecording("64B", 10000, 64),
	NewRecording("64KiB", 200, 64<<10),
}

// perEvent reports events/s and the allocations per event of the whole
// benchmark, whose every iteration handled events events.
func perEvent(b *testing.B, events int, before runtime.MemStats) {
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	total := float64(b.N) * float64(events)
	b.ReportMetric(total/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/total, "ns/event")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/total, "allocs/event")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/total, "B/event")
}

func check(b *testing.B, rec *Recording, res Result, err error) {
	if err != nil {
		b.Fatal(err)
	}
	if res.Events != rec.Events || res.Last != rec.Last || res.LastID != rec.LastID {
		b.Fatalf("got %d events, last ID %q with %d bytes; want %d, %q with %d",
			res.Events, res.LastID, len(res.Last), rec.Events, rec.LastID, len(rec.Last))
	}
}

// benchClient measures c receiving the recording from url.
func benchClient(b *testing.B, rec *Recording, c Client, hc *http.Client, url string) {
	b.SetBytes(int64(len(rec.Stream)))
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	for b.Loop() {
		res, err := c.Subscribe(b.Context(), hc, url, rec.Events, nil)
		check(b, rec, res, err)
	}
	perEvent(b, rec.Events, ms)
}

func BenchmarkParse(b *testing.B) {
	for _, rec := range recordings {
		for _, p := range Parsers {
			b.Run(fmt.Sprintf("size=%s/impl=%s", rec.Name, p.Name), func(b *testing.B) {
				b.SetBytes(int64(len(rec.Stream)))
				var ms runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&ms)
				for b.Loop() {
					res, err := p.Parse(rec.Stream)
					check(b, rec, res, err)
				}
				perEvent(b, rec.Events, ms)
			})
		}
	}
}

func BenchmarkClient(b *testing.B) {
	for _, rec := range recordings {
		hc := &http.Client{Transport: Transport{rec}}
		for _, c := range Clients {
			if c.Name == "stream-nofloor" {
				continue // same as stream here
			}
			b.Run(fmt.Sprintf("size=%s/impl=%s", rec.Name, c.Name), func(b *testing.B) {
				benchClient(b, rec, c, hc, "http://recording.test/events")
			})
		}
	}
}

// stormServer ends every response after one event, resuming after the
// client's Last-Event-ID, and asks for a reconnection time of retry.
type stormServer struct {
	retry time.Duration

	mu       sync.Mutex
	requests int
	ended    time.Time     // end of the previous response
	gaps     time.Duration // sum of the times between a response and the next request
	minGap   time.Duration // shortest of them
}

func (s *stormServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	s.mu.Lock()
	if s.requests > 0 {
		gap := now.Sub(s.ended)
		s.gaps += gap
		if s.requests == 1 || gap < s.minGap {
			s.minGap = gap
		}
	}
	s.requests++
	s.mu.Unlock()
	last, _ := strconv.Atoi(r.Header.Get("Last-Event-ID"))
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprintf(w, "retry: %d\nid: %d\ndata: %d\n\n", s.retry.Milliseconds(), last+1, last+1)
	w.(http.Flusher).Flush()
	s.mu.Lock()
	s.ended = time.Now()
	s.mu.Unlock()
}

// BenchmarkReconnectStorm runs each client for a few seconds against a
// server that ends every response after one event. It reports the
// connections per second, the mean time from the end of a response to
// the next request and the shortest (compare with the retry asked for),
// and per run the
// events received, lost (gaps in the sequence) and repeated. Run it with
// -benchtime 1x.
func BenchmarkReconnectStorm(b *testing.B) {
	const duration = 3 * time.Second
	for _, retry := range []time.Duration{0, 250 * time.Millisecond} {
		for _, c := range Clients {
			b.Run(fmt.Sprintf("retry=%v/impl=%s", retry, c.Name), func(b *testing.B) {
				var reqs, lost, dups, got int
				var gaps time.Duration
				minGap := time.Duration(-1)
				for b.Loop() {
					s := &stormServer{retry: retry}
					srv := httptest.NewUnstartedServer(s)
					srv.Config.SetKeepAlivesEnabled(false)
					srv.Start()
					ctx, cancel := context.WithTimeout(b.Context(), duration)
					next := 1
					see := func(_, data string) {
						n, _ := strconv.Atoi(data)
						switch {
						case n > next:
							lost += n - next
						case n < next:
							dups++
							return
						}
						next = n + 1
					}
					c.Subscribe(ctx, srv.Client(), srv.URL, 1<<30, see)
					cancel()
					got += next - 1
					srv.Close()
					s.mu.Lock()
					reqs += s.requests
					gaps += s.gaps
					if s.requests > 1 && (minGap < 0 || s.minGap < minGap) {
						minGap = s.minGap
					}
					s.mu.Unlock()
				}
				secs := duration.Seconds() * float64(b.N)
				b.ReportMetric(float64(reqs)/secs, "conns/s")
				if reqs > b.N {
					b.ReportMetric(float64(gaps.Microseconds())/1e3/float64(reqs-b.N), "ms/gap")
					b.ReportMetric(float64(minGap.Microseconds())/1e3, "min-ms/gap")
				}
				b.ReportMetric(float64(got)/float64(b.N), "events")
				b.ReportMetric(float64(lost)/float64(b.N), "lost")
				b.ReportMetric(float64(dups)/float64(b.N), "dups")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
