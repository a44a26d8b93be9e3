// Command shutdown shows a graceful shutdown of a server with open event
// streams: on Ctrl-C (SIGINT) or SIGTERM it stops accepting connections,
// sends every stream a "retry:" hint and ends it once what was queued for
// it is written, waits for the handlers, and exits with status 0.
//
//	go run ./examples/shutdown
//	curl -N http://localhost:8080/events    # a hub stream: the time every second
//	curl -N http://localhost:8080/clock     # a stream with a loop of its own
//	then press Ctrl-C in the server's terminal: both curls end at once.
//
// The other examples do the same through examples/internal/serve; this
// one spells the steps out.
//
// # Why the hub must be shut down
//
// http.Server.Shutdown closes the listeners and then waits for every
// connection to go idle, but a connection is busy for as long as its
// handler runs, and a stream handler runs until its client goes away:
// Shutdown does not cancel request contexts. Left alone, open streams
// would hold Shutdown until its deadline. So the server, as it starts
// shutting down, shuts the hubs down, which ends their streams (and makes
// hub.ServeHTTP return). Each client gets a reconnection time, spread at
// random between one and six seconds, so that a fleet of clients does not
// come back at the same instant: to another instance, or to this one once
// restarted.
package main

import (
	"context"
	"errors"
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

	// clock broadcasts the time to the clients of /events.
	clock := sse.NewHub[string]()
	// own broadcasts nothing: it keeps track of the streams of /clock,
	// which have loops of their own, so that its Shutdown ends them too.
	own := sse.NewHub[string]()
	srv := &http.Server{
		Handler: newMux(clock, own, *every),
		// Bound the time to read request headers. No ReadTimeout or
		// WriteTimeout: they would bound the whole stream; sse gives each
		// write to a client a deadline of its own instead.
		ReadHeaderTimeout: 10 * time.Second,
		// A stream the server ends leaves its connection in keep-alive,
		// waiting for another request; with no ReadTimeout, nothing else
		// would ever close it.
		IdleTimeout: time.Minute,
	}
	// These run, each on a goroutine of its own, as Shutdown starts.
	var ending sync.WaitGroup
	for _, hub := range []*sse.Hub[string]{clock, own} {
		ending.Add(1)
		srv.RegisterOnShutdown(func() {
			defer ending.Done()
			ctx, cancel := context.WithTimeout(context.Background(), *grace)
			defer cancel()
			if err := hub.Shutdown(ctx); err != nil {
				log.Printf("ending streams: %v", err)
			}
		})
	}

	var wg sync.WaitGroup
	wg.Go(func() { tick(ctx, clock, *every) })
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
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		log.Print(err)
	}
	ending.Wait()
	wg.Wait()
	log.Print("shut down cleanly")
}

// tick broadcasts the time until ctx ends or the hub shuts down.
func tick(ctx context.Context, hub *sse.Hub[string], every time.Duration) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case t := <-ticker.C:
			if hub.Broadcast(t.Format(time.TimeOnly)) != nil {
				return // sse.ErrHubClosed: shutting down
			}
		case <-ctx.Done():
			return
		}
	}
}

func newMux(clock, own *sse.Hub[string], every time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /events", clock) // answers 503 once the hub shuts down
	mux.HandleFunc("GET /clock", func(w http.ResponseWriter, r *http.Request) {
		conn, err := sse.Upgrade(w, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer conn.Close()
		// Once registered, the stream ends when the client goes away or
		// own shuts down.
		if own.Register(conn) != nil {
			return
		}
		defer own.Unregister(conn)
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
