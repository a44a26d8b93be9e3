// Command quickstart is the guide's Quick Start: every client of /events
// gets a "ping" event each second until it goes away, and / serves a page
// that shows them with the browser's EventSource.
//
//	go run ./examples/quickstart
//	curl -N http://localhost:8080/events    # or open http://localhost:8080/
//
// curl prints the opening comment, then one event per second:
//
//	: connected
//
//	data: ping
//
// Ctrl-C (or SIGTERM) ends every stream with a "retry:" hint, then the
// program.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coregx/stream/examples/internal/page"
	"github.com/coregx/stream/examples/internal/serve"
	"github.com/coregx/stream/sse"
)

//go:embed index.html
var indexHTML []byte

func main() {
	addr := flag.String("addr", "localhost:8080", "listen `address`")
	every := flag.Duration("every", time.Second, "interval between pings")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The streams below each have a loop of their own, and the hub
	// broadcasts nothing: it only keeps track of them, so that its
	// Shutdown can end them all, each with a retry hint.
	streams := sse.NewHub[string]()
	if err := serve.Run(ctx, *addr, newMux(streams, *every), streams); err != nil {
		log.Fatal(err)
	}
}

// newMux returns the handler of the server: the page at / and the stream
// at /events.
func newMux(streams *sse.Hub[string], every time.Duration) http.Handler {
	mux := http.NewServeMux()
	page.Register(mux)
	mux.Handle("GET /{$}", page.HTML(indexHTML))
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		ping(w, r, streams, every)
	})
	return mux
}

// ping streams "ping" every interval until the client goes away or the
// server shuts down.
func ping(w http.ResponseWriter, r *http.Request, streams *sse.Hub[string], every time.Duration) {
	// Upgrade writes the SSE headers and the opening ": connected"
	// comment. It fails, having written nothing, only when w cannot flush.
	conn, err := sse.Upgrade(w, r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// Close waits for a write in progress, so nothing touches w after the
	// handler returns.
	defer conn.Close()
	if err := streams.Register(conn); err != nil {
		return // shutting down, or the client is gone
	}
	defer streams.Unregister(conn)

	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			if err := conn.SendData("ping"); err != nil {
				// The client went away or stopped reading (the write
				// timed out): the stream is over.
				if !errors.Is(err, sse.ErrConnectionClosed) {
					log.Printf("send: %v", err)
				}
				return
			}
		case <-conn.Done():
			return
		}
	}
}
