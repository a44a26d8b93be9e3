// Command dashboard pushes runtime metrics (memory, goroutines, GC) as
// JSON to every client, as typed "metrics" events, and serves a page at /
// that shows them live.
//
//	go run ./examples/dashboard
//	curl -N http://localhost:8080/events    # or open http://localhost:8080/
//
// Each sample arrives as:
//
//	event: metrics
//	data: {"time":"...","goroutines":5,"heap_alloc":281432,...}
//
// The page charts the heap, goroutines and clients over the last five
// minutes. Ctrl-C (or SIGTERM) ends every stream with a "retry:" hint,
// then the program.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/coregx/stream/examples/internal/page"
	"github.com/coregx/stream/examples/internal/serve"
	"github.com/coregx/stream/sse"
)

//go:embed index.html
var indexHTML []byte

// Metrics is one sample.
type Metrics struct {
	Time       time.Time `json:"time"`
	Goroutines int       `json:"goroutines"`
	HeapAlloc  uint64    `json:"heap_alloc"`
	HeapInuse  uint64    `json:"heap_inuse"`
	Sys        uint64    `json:"sys"`
	NumGC      uint32    `json:"num_gc"`
	Clients    int       `json:"clients"`
}

// dashboard samples the metrics and broadcasts them.
type dashboard struct {
	// A hub of *sse.Event sends each event with its own fields, so the
	// samples can carry a type. (BroadcastJSON, or a Hub[Metrics], would
	// send untyped "message" events.)
	hub  *sse.Hub[*sse.Event]
	stop chan struct{}
	done chan struct{}
}

// newDashboard starts sampling every interval.
func newDashboard(every time.Duration) *dashboard {
	d := &dashboard{hub: sse.NewHub[*sse.Event](), stop: make(chan struct{}), done: make(chan struct{})}
	go d.publish(every)
	return d
}

// Shutdown stops sampling and ends every stream, each with a retry hint.
func (d *dashboard) Shutdown(ctx context.Context) error {
	close(d.stop)
	<-d.done
	return d.hub.Shutdown(ctx)
}

func (d *dashboard) publish(every time.Duration) {
	defer close(d.done)
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			// The sample is encoded once, whatever the number of clients.
			if err := d.hub.Broadcast(d.event()); err != nil {
				log.Printf("broadcast: %v", err)
			}
		case <-d.stop:
			return
		}
	}
}

// event takes a sample and returns it as a "metrics" event.
func (d *dashboard) event() *sse.Event {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	data, _ := json.Marshal(Metrics{ // cannot fail: plain fields only
		Time:       time.Now().UTC(),
		Goroutines: runtime.NumGoroutine(),
		HeapAlloc:  ms.HeapAlloc,
		HeapInuse:  ms.HeapInuse,
		Sys:        ms.Sys,
		NumGC:      ms.NumGC,
		Clients:    d.hub.Clients(),
	})
	return sse.NewEvent(string(data)).WithType("metrics")
}

// ServeHTTP streams the samples, starting with a fresh one so that a new
// client has something to show before the next tick.
func (d *dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, err := sse.Upgrade(w, r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	if err := conn.Send(d.event()); err != nil {
		return
	}
	// Samples broadcast between the first one and Register are missed;
	// for a dashboard the next tick makes up for it.
	if err := d.hub.Register(conn); err != nil {
		// The headers are already sent: http.Error is too late here.
		if !errors.Is(err, sse.ErrHubClosed) && !errors.Is(err, sse.ErrConnectionClosed) {
			log.Printf("register: %v", err)
		}
		return
	}
	// Unregister waits for a write in progress, so the handler may return.
	defer d.hub.Unregister(conn)
	<-conn.Done()
}

func main() {
	addr := flag.String("addr", "localhost:8080", "listen `address`")
	every := flag.Duration("every", time.Second, "sampling interval")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := newDashboard(*every)
	if err := serve.Run(ctx, *addr, newMux(d), d); err != nil {
		log.Fatal(err)
	}
}

func newMux(d *dashboard) http.Handler {
	mux := http.NewServeMux()
	page.Register(mux)
	mux.Handle("GET /{$}", page.HTML(indexHTML))
	mux.Handle("GET /events", d)
	return mux
}
