// Command shutdown shows a graceful shutdown of a server with open event
// streams: on Ctrl-C (SIGINT) or SIGTERM it stops accepting connections,
// ends every stream cleanly, waits for the handlers, and exits.
//
//	go run ./examples/shutdown
//	curl -N http://localhost:8080/events    # a hub stream: the time every second
//	curl -N http://localhost:8080/clock     # a stream of its own, the same
//	then press Ctrl-C in the server's terminal: both curls end at once.
//
// # Why the hub must be closed
//
// http.Server.Shutdown closes the listeners and then waits for every
// connection to go idle, but a connection is busy for as long as its
// handler runs, and a stream handler runs until its client goes away:
// Shutdown does not cancel request contexts. Left alone, open streams
// would hold Shutdown until its deadline. So the server, as it starts
// shutting down, closes the hub (which ends its streams, so that
// hub.ServeHTTP returns) and cancels the context of the other streams.
// Their clients see the response end and, being EventSource clients,
// reconnect: to another instance, or to this one once restarted.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/coregx/stream/sse"
)

func main() {
	addr := flag.String("addr", "localhost:8080", "listen `address`")
	every := flag.Duration("every", time.Second, "interval between events")
	grace := flag.Duration("grace", 10*time.Second, "how long shutting down may take")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("listening on http://%s", ln.Addr())

	hub := sse.NewHub[string]()
	// streams is the context of the streams not in the hub.
	streams, endStreams := context.WithCancel(context.Background())
	srv := &http.Server{
		Handler: newMux(hub, streams, *every),
		// Bound the time to read request headers; no WriteTimeout, which
		// would bound the whole stream: sse.Conn gives each of its writes
		// a deadline of its own instead.
		ReadHeaderTimeout: 10 * time.Second,
	}
	// These run as soon as Shutdown starts.
	srv.RegisterOnShutdown(func() { hub.Close() })
	srv.RegisterOnShutdown(endStreams)

	var wg sync.WaitGroup
	wg.Go(func() { tick(ctx, hub, *every) })
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		log.Fatal(err)
	case <-ctx.Done():
	}
	stop() // a second Ctrl-C kills the program at once
	log.Print("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Printf("shutdown: %v", err)
		srv.Close() // cut the connections still open
	}
	<-serveErr // http.ErrServerClosed
	wg.Wait()
	log.Print("shut down cleanly")
}

// tick broadcasts the time until ctx ends or the hub closes.
func tick(ctx context.Context, hub *sse.Hub[string], every time.Duration) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case t := <-ticker.C:
			if hub.Broadcast(t.Format(time.TimeOnly)) != nil {
				return // sse.ErrHubClosed
			}
		case <-ctx.Done():
			return
		}
	}
}

func newMux(hub *sse.Hub[string], streams context.Context, every time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /events", hub) // answers 503 once the hub is closed
	mux.HandleFunc("GET /clock", func(w http.ResponseWriter, r *http.Request) {
		// The stream ends when the client goes away or streams ends.
		conn, err := sse.UpgradeWithContext(streams, w, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer conn.Close()
		ticker := time.NewTicker(every)
		defer ticker.Stop()
		for {
			select {
			case t := <-ticker.C:
				if conn.SendData(t.Format(time.TimeOnly)) != nil {
					return
				}
			case <-conn.Done():
				return
			}
		}
	})
	return mux
}
