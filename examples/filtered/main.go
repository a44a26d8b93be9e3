// Command filtered streams log entries to clients that each pick the
// lowest level they want: GET /events?level=warn gets warnings and
// errors only. Entries come from POST /log?level=L&msg=M and, every
// -every, from a generator of sample entries.
//
//	go run ./examples/filtered
//	curl -N 'http://localhost:8080/events?level=warn'
//	curl -X POST 'http://localhost:8080/log?level=error&msg=disk+full'
//	open http://localhost:8080/
//
// The server is an sse.Server whose Filter gives each request a
// predicate of its own, applied to every event before it is queued for
// that client (and to replayed events alike). Publishing only queues:
// it never waits for a client, and a client too slow for its queue is
// disconnected, then resumes with Last-Event-ID from the history,
// filtered the same way.
//
// The guide's FilteredHub instead calls conn.SendJSON for each client in
// turn while holding its lock: one client that stops reading stalls
// every broadcast, and its map of filters never forgets a closed
// connection.
//
// Ctrl-C (or SIGTERM) ends every stream with a "retry:" hint, then the
// program.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/coregx/stream/examples/internal/page"
	"github.com/coregx/stream/examples/internal/serve"
	"github.com/coregx/stream/sse"
)

//go:embed index.html
var indexHTML []byte

// Entry is one log entry, sent as JSON.
type Entry struct {
	Level string `json:"level"`
	Msg   string `json:"msg"`
}

// levels in increasing order of severity.
var levels = []string{"debug", "info", "warn", "error"}

// severity returns the index of level in levels, or -1.
func severity(level string) int { return slices.Index(levels, level) }

// newServer returns the event server. Every request follows the one
// topic "" (Topics is nil); the filter picks the entries.
func newServer() *sse.Server {
	return &sse.Server{
		Filter: func(r *http.Request) func(m *sse.Message) bool {
			least := severity(levelParam(r))
			// The predicate runs for every event and client, so it must
			// be cheap: the entry's level is read from the start of its
			// JSON, which publish writes.
			return func(m *sse.Message) bool {
				return severity(levelOf(m.Event.Data)) >= least
			}
		},
	}
}

// levelParam returns the level asked for by r, "info" by default.
func levelParam(r *http.Request) string {
	if level := r.FormValue("level"); level != "" {
		return level
	}
	return "info"
}

// jsonPrefix starts the JSON of every Entry, whose first field is Level.
const jsonPrefix = `{"level":"`

// levelOf returns the level of an entry encoded as JSON, or "".
func levelOf(data string) string {
	rest, ok := strings.CutPrefix(data, jsonPrefix)
	if !ok {
		return ""
	}
	level, _, _ := strings.Cut(rest, `"`)
	return level
}

// publish sends e to the clients that want its level. It never blocks.
func publish(ctx context.Context, events *sse.Server, e Entry) error {
	if severity(e.Level) < 0 {
		return fmt.Errorf("unknown level %q: want one of %s", e.Level, strings.Join(levels, ", "))
	}
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = events.Publish(ctx, "", sse.NewEvent(string(data)))
	return err
}

func newMux(events *sse.Server) http.Handler {
	mux := http.NewServeMux()
	page.Register(mux)
	mux.Handle("GET /{$}", page.HTML(indexHTML))
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		if severity(levelParam(r)) < 0 {
			http.Error(w, "level must be one of "+strings.Join(levels, ", "), http.StatusBadRequest)
			return
		}
		events.ServeHTTP(w, r)
	})
	mux.HandleFunc("POST /log", func(w http.ResponseWriter, r *http.Request) {
		e := Entry{Level: r.FormValue("level"), Msg: r.FormValue("msg")}
		if err := publish(r.Context(), events, e); err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, sse.ErrHubClosed) {
				code = http.StatusServiceUnavailable
			}
			http.Error(w, err.Error(), code)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// generate publishes a sample entry of a random level every interval
// until ctx ends or the server shuts down.
func generate(ctx context.Context, events *sse.Server, every time.Duration) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for i := 1; ; i++ {
		select {
		case <-ticker.C:
		case <-ctx.Done():
			return
		}
		e := Entry{Level: levels[rand.IntN(len(levels))], Msg: fmt.Sprintf("sample %d", i)}
		if publish(ctx, events, e) != nil {
			return
		}
	}
}

func main() {
	addr := flag.String("addr", "localhost:8080", "listen `address`")
	every := flag.Duration("every", time.Second, "interval between sample entries (0: none)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	events := newServer()
	if *every > 0 {
		go generate(ctx, events, *every)
	}
	if err := serve.Run(ctx, *addr, newMux(events), events); err != nil {
		log.Fatal(err)
	}
}
