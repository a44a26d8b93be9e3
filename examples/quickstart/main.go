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
package main

import (
	_ "embed"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/coregx/stream/sse"
)

//go:embed index.html
var indexHTML []byte

func main() {
	addr := flag.String("addr", "localhost:8080", "listen `address`")
	every := flag.Duration("every", time.Second, "interval between pings")
	flag.Parse()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("listening on http://%s", ln.Addr())
	// No WriteTimeout: it would bound the whole stream. sse.Conn sets a
	// deadline on each of its writes instead.
	srv := &http.Server{Handler: newMux(*every), ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.Serve(ln))
}

// newMux returns the handler of the server: the page at / and the stream
// at /events.
func newMux(every time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(indexHTML)
	})
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		ping(w, r, every)
	})
	return mux
}

// ping streams "ping" every interval until the client goes away.
func ping(w http.ResponseWriter, r *http.Request, every time.Duration) {
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
