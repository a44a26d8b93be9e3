// Command replay publishes a numbered event every -every and lets a
// client that reconnects resume where it left off. It is an sse.Server:
// events go out with IDs, the browser (or sse.Client) sends the last one
// back in the Last-Event-ID header, and the server replays what the
// client missed from its history before going live, with no gap and no
// duplicate in between.
//
//	go run ./examples/replay
//	curl -N http://localhost:8080/events                          # live events
//	curl -N -H 'Last-Event-ID: 5' http://localhost:8080/events    # resumes at 6
//	curl -N -H 'Last-Event-ID: x' http://localhost:8080/events    # a gap, then all kept
//	open http://localhost:8080/ and stop and restart the server
//
// The history keeps the last -size events. A client whose Last-Event-ID
// the history does not hold (malformed, from before a restart, or pruned)
// first gets an "sse-gap" event whose data is the oldest ID still kept,
// then every kept event: it knows that it may have missed some.
//
// Ctrl-C (or SIGTERM) ends every stream with a "retry:" hint, then the
// program.
package main

import (
	"context"
	_ "embed"
	"flag"
	"fmt"
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
	every := flag.Duration("every", time.Second, "interval between events")
	size := flag.Int("size", 100, "number of events kept for replay")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The memory broker keeps the history, bounded by count (here),
	// bytes and age.
	broker := sse.NewMemoryBroker(sse.HistoryLimits{MaxEvents: *size})
	defer broker.Close()
	events := &sse.Server{
		Broker: broker,
		// Ask clients to reconnect one second after a drop.
		Options: sse.Options{Retry: time.Second},
	}
	go publish(ctx, events, *every)
	if err := serve.Run(ctx, *addr, newMux(events), events); err != nil {
		log.Fatal(err)
	}
}

// publish sends "event N" every interval until ctx ends or the server
// shuts down. The server gives each event its ID: 1, 2, 3...
func publish(ctx context.Context, events *sse.Server, every time.Duration) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for n := 1; ; n++ {
		// One topic, "", which is what every request follows when
		// Server.Topics is nil.
		if _, err := events.Publish(ctx, "", sse.NewEvent(fmt.Sprintf("event %d", n))); err != nil {
			return
		}
		select {
		case <-ticker.C:
		case <-ctx.Done():
			return
		}
	}
}

func newMux(events *sse.Server) http.Handler {
	mux := http.NewServeMux()
	page.Register(mux)
	mux.Handle("GET /{$}", page.HTML(indexHTML))
	mux.Handle("GET /events", events)
	return mux
}
