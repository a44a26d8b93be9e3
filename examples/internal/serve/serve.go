// Package serve runs an example's HTTP server and shuts it down
// gracefully. examples/shutdown spells the same steps out in full.
package serve

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"sync"
	"time"
)

// Grace bounds how long a shutdown may take.
const Grace = 10 * time.Second

// Shutdowner is what ends event streams: an *sse.Hub or *sse.Server.
type Shutdowner interface {
	Shutdown(ctx context.Context) error
}

// Run listens on addr, logs "listening on http://ADDR" and serves h until
// ctx ends (main makes ctx with signal.NotifyContext, so SIGINT or
// SIGTERM ends it). Then it shuts down: the listener closes,
// each of streams is shut down (every open stream gets a "retry:" hint and
// ends once its queue is written), and Run returns once the handlers have
// returned, logging "shut down cleanly". It returns an error when it cannot
// listen or serve, or when the shutdown took longer than Grace.
func Run(ctx context.Context, addr string, h http.Handler, streams ...Shutdowner) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	log.Printf("listening on http://%s", ln.Addr())
	srv := &http.Server{
		Handler: h,
		// Bound the time a client may take to send its request headers.
		// No ReadTimeout or WriteTimeout: they would bound the whole
		// stream. sse bounds each write to a client instead.
		ReadHeaderTimeout: 10 * time.Second,
		// Once a stream ends (the server ended it, or a handler returned)
		// the connection goes back to keep-alive and waits for another
		// request. Without IdleTimeout, and with no ReadTimeout, a client
		// that never sends one would hold it open forever.
		IdleTimeout: time.Minute,
	}
	// http.Server.Shutdown waits for connections to go idle, and a stream
	// never does by itself: Shutdown does not cancel request contexts.
	// Its hooks run as it starts, and end the streams.
	var ending sync.WaitGroup
	for _, s := range streams {
		ending.Add(1)
		srv.RegisterOnShutdown(func() {
			defer ending.Done()
			ctx, cancel := context.WithTimeout(context.Background(), Grace)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				log.Printf("ending streams: %v", err)
			}
		})
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Print("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), Grace)
	defer cancel()
	err = srv.Shutdown(sctx)
	if err != nil {
		srv.Close() // cut the connections still open
	}
	ending.Wait()
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	if err != nil {
		return err
	}
	log.Print("shut down cleanly")
	return nil
}
