// Command filtered streams log entries to clients that each pick the
// lowest level they want: GET /events?level=warn gets warnings and
// errors only. Entries come from POST /log?level=L&msg=M and, every
// -every, from a generator of sample entries.
//
//	go run ./examples/filtered
//	curl -N 'http://localhost:8080/events?level=warn'
//	curl -X POST 'http://localhost:8080/log?level=error&msg=disk+full'
//
// # Why one hub per filter
//
// The guide's FilteredHub calls conn.SendJSON for each client in turn
// while it holds its lock: one client that stops reading stalls every
// broadcast (for up to the write timeout, each time), its filter map
// never forgets a closed connection, and its connections, registered in
// the hub too, also get every unfiltered hub broadcast. Here the clients
// are grouped by filter, one sse.Hub per level: publishing only queues
// the entry in each hub that wants it (encoded once per hub), the hubs
// write in the background, and a client too slow for its queue is
// disconnected instead of slowing down the others.
//
// With arbitrary per-client predicates, grouping is not possible; give
// each client a bounded channel drained by its own handler goroutine,
// which applies the predicate and sends, and have the publisher drop
// (disconnect) a client whose channel is full rather than wait for it.
// That is what a hub does for each of its clients.
package main

import (
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/coregx/stream/sse"
)

// Entry is one log entry, sent as JSON.
type Entry struct {
	Level string `json:"level"`
	Msg   string `json:"msg"`
}

// levels in increasing order of severity.
var levels = []string{"debug", "info", "warn", "error"}

// logStream has one hub per level: hubs[i] streams the entries of level
// levels[i] and above.
type logStream struct {
	hubs []*sse.Hub[Entry]
}

func newLogStream() *logStream {
	s := &logStream{}
	for range levels {
		s.hubs = append(s.hubs, sse.NewHub[Entry]())
	}
	return s
}

// publish sends e to the clients that want its level. It never blocks.
func (s *logStream) publish(e Entry) error {
	lvl := slices.Index(levels, e.Level)
	if lvl < 0 {
		return fmt.Errorf("unknown level %q", e.Level)
	}
	for _, hub := range s.hubs[:lvl+1] {
		if err := hub.Broadcast(e); err != nil {
			return err
		}
	}
	return nil
}

// Close disconnects every client.
func (s *logStream) Close() {
	for _, hub := range s.hubs {
		hub.Close()
	}
}

func (s *logStream) handleEvents(w http.ResponseWriter, r *http.Request) {
	level := r.FormValue("level")
	if level == "" {
		level = "info"
	}
	lvl := slices.Index(levels, level)
	if lvl < 0 {
		http.Error(w, "level must be one of debug, info, warn, error", http.StatusBadRequest)
		return
	}
	// The hub registers the client before it sends ": connected", and
	// holds the stream open until the client goes away.
	s.hubs[lvl].ServeHTTP(w, r)
}

func (s *logStream) handleLog(w http.ResponseWriter, r *http.Request) {
	e := Entry{Level: r.FormValue("level"), Msg: r.FormValue("msg")}
	if err := s.publish(e); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func newMux(s *logStream) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events", s.handleEvents)
	mux.HandleFunc("POST /log", s.handleLog)
	return mux
}

func main() {
	addr := flag.String("addr", "localhost:8080", "listen `address`")
	every := flag.Duration("every", time.Second, "interval between sample entries (0: none)")
	flag.Parse()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("listening on http://%s", ln.Addr())
	s := newLogStream()
	if *every > 0 {
		go func() { // generates for as long as the program runs
			for i := 1; ; i++ {
				time.Sleep(*every)
				e := Entry{Level: levels[rand.IntN(len(levels))], Msg: fmt.Sprintf("sample %d", i)}
				if s.publish(e) != nil {
					return
				}
			}
		}()
	}
	srv := &http.Server{Handler: newMux(s), ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.Serve(ln))
}
