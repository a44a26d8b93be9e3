// Command backpressure shows how a hub copes with clients that cannot
// keep up: it broadcasts a numbered event of -size bytes every -every,
// and a client that falls -queue events behind is disconnected, while
// the producer and the other clients carry on at full speed. /stats
// shows the hub's counters, SlowDisconnects among them.
//
//	go run ./examples/backpressure
//	curl -sN http://localhost:8080/events >/dev/null &                  # keeps up
//	curl -sN --limit-rate 20k http://localhost:8080/events >/dev/null &  # cut off
//	curl http://localhost:8080/stats
//
// (The slow client is cut off once the kernel's socket buffers, a few
// megabytes on loopback, are full and its queue then fills up.)
//
// # Why not the guide's pattern
//
// The guide gives each handler a buffered channel, a sender goroutine,
// and a producer loop ranging over a shared channel. That loop blocks in
// the handler until the shared channel closes, whether or not the client
// is still there, so handlers outlive their clients; handlers ranging
// over one shared channel each take some of its messages instead of all
// of them; the sender goroutine blocks on a client that stops reading
// and, its channel never closed, never ends; and events dropped when the
// channel is full leave gaps the client cannot see.
//
// A hub avoids all of it. Broadcast only appends the encoded event to
// each client's bounded queue (Options.QueueSize) and returns: it
// never blocks on a client. A pool of writers drains the queues. A
// client whose queue is full is disconnected, not silently skipped, and
// counted in Stats().SlowDisconnects; with event IDs and a replay log
// (see examples/replay) it reconnects and catches up.
//
// Ctrl-C (or SIGTERM) ends every stream with a "retry:" hint, then the
// program.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coregx/stream/examples/internal/serve"
	"github.com/coregx/stream/sse"
)

func main() {
	addr := flag.String("addr", "localhost:8080", "listen `address`")
	every := flag.Duration("every", time.Millisecond, "interval between events")
	size := flag.Int("size", 4096, "size of each event's data in bytes")
	queue := flag.Int("queue", 256, "events queued per client before it is disconnected")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hub := sse.NewHubWithOptions[*sse.Event](&sse.Options{QueueSize: *queue})
	go produce(hub, *every, *size)
	if err := serve.Run(ctx, *addr, newMux(hub), hub); err != nil {
		log.Fatal(err)
	}
}

// produce broadcasts events until the hub shuts down, logging the hub's
// counters each second when they change.
func produce(hub *sse.Hub[*sse.Event], every time.Duration, size int) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	report := time.NewTicker(time.Second)
	defer report.Stop()
	padding := strings.Repeat(".", max(size-20, 0))
	var last sse.Stats
	for n := 1; ; {
		select {
		case <-ticker.C:
			id := strconv.Itoa(n)
			// Broadcast returns at once, however slow the clients are.
			if err := hub.Broadcast(sse.NewEvent(id + " " + padding).WithID(id)); err != nil {
				return // the hub is shutting down
			}
			n++
		case <-report.C:
			if st := hub.Stats(); st.Clients != last.Clients || st.SlowDisconnects != last.SlowDisconnects {
				log.Printf("clients=%d broadcasts=%d delivered=%d slow_disconnects=%d",
					st.Clients, st.Broadcasts, st.Delivered, st.SlowDisconnects)
				last = st
			}
		}
	}
}

func newMux(hub *sse.Hub[*sse.Event]) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /events", hub)
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(hub.Stats()); err != nil {
			log.Printf("stats: %v", err)
		}
	})
	return mux
}
