// Command keepalive keeps quiet streams open through proxies and load
// balancers that drop idle connections, by sending comments, which
// clients ignore. Both endpoints send an event only every -every (a
// minute by default) and a ": keep-alive" comment when idle:
//
//   - /events turns on the Conn's heartbeat (UpgradeOptions.Heartbeat,
//     -heartbeat, 15 seconds by default), sent only after that long
//     without a write;
//   - /manual leaves it off (the default for a Conn from Upgrade) and
//     sends conn.SendComment("keep-alive") on a ticker of its own, for
//     when the timing is yours to control.
//
// A Hub or Server sends heartbeats to the streams registered with it by
// itself (Options.Heartbeat, 15 seconds by default).
//
// Try it with a short interval:
//
//	go run ./examples/keepalive -heartbeat 2s
//	curl -N http://localhost:8080/events
//	curl -N http://localhost:8080/manual
//
// The guide writes the comment itself with io.WriteString(w, ...) and
// flusher.Flush(). That is safe only while nothing else writes to w: a
// Conn from Upgrade writes nothing on its own, but one with its heartbeat
// on, or registered with a Hub, writes from other goroutines, and an
// http.ResponseWriter is not safe for concurrent use. A raw write also
// skips the Conn's write deadline, so a client that stops reading can
// block it indefinitely. Conn.SendComment takes the Conn's write lock and
// deadline like every other send, and is safe everywhere.
//
// Ctrl-C (or SIGTERM) ends every stream with a "retry:" hint, then the
// program.
package main

import (
	"context"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coregx/stream/examples/internal/serve"
	"github.com/coregx/stream/sse"
)

func main() {
	addr := flag.String("addr", "localhost:8080", "listen `address`")
	heartbeat := flag.Duration("heartbeat", 15*time.Second, "keep-alive interval")
	every := flag.Duration("every", time.Minute, "interval between events")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The hub broadcasts nothing: it keeps track of the streams, so that
	// its Shutdown ends them all, each with a retry hint. Its own
	// heartbeats are off, to leave them to the endpoints.
	streams := sse.NewHubWithOptions[string](&sse.Options{Heartbeat: -1})
	if err := serve.Run(ctx, *addr, newMux(streams, *heartbeat, *every), streams); err != nil {
		log.Fatal(err)
	}
}

func newMux(streams *sse.Hub[string], heartbeat, every time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		conn, err := sse.UpgradeWithOptions(r.Context(), w, r, &sse.UpgradeOptions{Heartbeat: heartbeat})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer conn.Close()
		// Nothing to do for keep-alives: the Conn sends them when idle.
		stream(streams, conn, every, nil)
	})
	mux.HandleFunc("GET /manual", func(w http.ResponseWriter, r *http.Request) {
		// A Conn from Upgrade sends no heartbeats of its own.
		conn, err := sse.Upgrade(w, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer conn.Close()
		keepAlive := time.NewTicker(heartbeat)
		defer keepAlive.Stop()
		stream(streams, conn, every, keepAlive.C)
	})
	return mux
}

// stream sends the time every interval, and a keep-alive comment on each
// tick of keepAlive, until the stream ends. It registers conn with
// streams for as long.
func stream(streams *sse.Hub[string], conn *sse.Conn, every time.Duration, keepAlive <-chan time.Time) {
	if streams.Register(conn) != nil {
		return // shutting down, or the client is gone
	}
	defer streams.Unregister(conn)
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		var err error
		select {
		case t := <-ticker.C:
			err = conn.SendData(t.Format(time.RFC3339))
		case <-keepAlive: // never ready when keepAlive is nil
			err = conn.SendComment("keep-alive")
		case <-conn.Done():
			return
		}
		if err != nil {
			return // the client went away or stopped reading
		}
	}
}
