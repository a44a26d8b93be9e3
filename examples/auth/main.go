// Command auth guards an event stream: a bearer token, CORS for pages on
// another origin, and a cap on concurrent streams. Authorized clients
// get a "notification" event every -every.
//
//	go run ./examples/auth -token s3cret
//	curl -N -H 'Authorization: Bearer s3cret' http://localhost:8080/events
//	curl -N 'http://localhost:8080/events?token=s3cret'
//	curl -i -X OPTIONS -H 'Origin: https://app.example' \
//	     -H 'Access-Control-Request-Method: GET' http://localhost:8080/events
//
// A browser's EventSource cannot set headers, hence the token query
// parameter. URLs end up in logs and browser history: give such tokens a
// short life. EventSource gives up, without reconnecting, on a 401 or
// 503; only a 200 event stream makes it retry.
//
// Ctrl-C (or SIGTERM) ends every stream with a "retry:" hint, then the
// program.
package main

import (
	"context"
	"crypto/subtle"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coregx/stream/examples/internal/serve"
	"github.com/coregx/stream/sse"
)

type server struct {
	hub    *sse.Hub[*sse.Event]
	token  string
	origin string // allowed CORS origin, or "*"
	max    int64  // most concurrent streams
	active atomic.Int64
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", s.origin)
	if r.Method == http.MethodOptions {
		// The CORS preflight. Browsers send it without the Authorization
		// header, so it must be answered before the token check. An
		// EventSource sends Last-Event-ID when it reconnects, which needs
		// allowing like any non-simple header; Authorization serves
		// fetch-based clients.
		h.Set("Access-Control-Allow-Methods", "GET")
		h.Set("Access-Control-Allow-Headers", "Authorization, Last-Event-ID, Cache-Control")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if !s.authorized(r) {
		h.Set("WWW-Authenticate", `Bearer realm="events"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	// Take a slot, then check. Checking first (Load, then Add; or
	// hub.Clients() >= max, then Register) lets every handler that checks
	// at the same moment through; Add reserves the slot atomically, so
	// the cap holds exactly.
	if s.active.Add(1) > s.max {
		s.active.Add(-1)
		h.Set("Retry-After", "10")
		http.Error(w, "too many connections", http.StatusServiceUnavailable)
		return
	}
	defer s.active.Add(-1)

	// hub.Clients() is fine for reporting.
	slog.Info("client connected", "remote", r.RemoteAddr, "clients", s.hub.Clients()+1)
	s.hub.ServeHTTP(w, r) // returns when the client goes away
	slog.Info("client gone", "remote", r.RemoteAddr, "clients", s.hub.Clients())
}

// authorized reports whether r carries the token, in an Authorization
// header or else a token query parameter.
func (s *server) authorized(r *http.Request) bool {
	token := r.URL.Query().Get("token")
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, value, _ := strings.Cut(auth, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return false
		}
		token = value
	}
	// A constant-time comparison does not tell how much of a guess was
	// right.
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.token)) == 1
}

func (s *server) notify(every time.Duration) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for n := 1; ; n++ {
		<-ticker.C
		ev := sse.NewEvent(fmt.Sprintf("notification %d", n)).WithType("notification")
		if s.hub.Broadcast(ev) != nil {
			return // the hub is shutting down
		}
	}
}

func newMux(s *server) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /events", s)
	mux.Handle("OPTIONS /events", s)
	return mux
}

func main() {
	addr := flag.String("addr", "localhost:8080", "listen `address`")
	token := flag.String("token", "secret", "the bearer `token` clients must present")
	origin := flag.String("origin", "*", "allowed CORS `origin`")
	maxConns := flag.Int64("max", 1000, "most concurrent streams")
	every := flag.Duration("every", time.Second, "interval between notifications")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s := &server{hub: sse.NewHub[*sse.Event](), token: *token, origin: *origin, max: *maxConns}
	go s.notify(*every)
	if err := serve.Run(ctx, *addr, newMux(s), s.hub); err != nil {
		log.Fatal(err)
	}
}
