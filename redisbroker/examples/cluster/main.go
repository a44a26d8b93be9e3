// Command cluster is one node of a cluster of sse.Server nodes that share
// their topics through Redis. Start three, each on its own port:
//
//	go run -C redisbroker ./examples/cluster -node A -addr localhost:8081
//	go run -C redisbroker ./examples/cluster -node B -addr localhost:8082
//	go run -C redisbroker ./examples/cluster -node C -addr localhost:8083
//
// Each node publishes a tick every two seconds, and POST /publish
// publishes a message through the node that receives it. Open
// http://localhost:8081/ (or 8082, 8083): the page says which node
// served it, and lists the events of every node as they arrive. Stop
// the node the page is on: the browser reconnects (to the same address,
// so start it again, or put the three behind a load balancer) and
// resumes from its Last-Event-ID, missing nothing.
//
// Redis is taken from -redis (default redis://127.0.0.1:6379).
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/coregx/stream/redisbroker"
	"github.com/coregx/stream/sse"
	"github.com/redis/go-redis/v9"
)

//go:embed index.html
var indexHTML string

var page = template.Must(template.New("index").Parse(indexHTML))

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		log.Fatal(err)
	}
}

// run serves one node until ctx ends.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	node := fs.String("node", "A", "`name` of this node, shown on the page")
	addr := fs.String("addr", "localhost:8081", "listen `address`")
	redisURL := fs.String("redis", "redis://127.0.0.1:6379", "Redis `URL`")
	every := fs.Duration("every", 2*time.Second, "interval between the node's ticks")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts, err := redis.ParseURL(*redisURL)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	broker := redisbroker.New(rdb, &redisbroker.Options{Prefix: "sse-cluster-example:"})
	defer broker.Close()
	events := &sse.Server{Broker: broker}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "node %s on http://%s\n", *node, ln.Addr())
	srv := &http.Server{Handler: newMux(*node, events), ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(func() { events.Shutdown(context.Background()) })
	go tick(ctx, *node, events, *every)
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return events.Close()
}

// newMux returns the node's handler: the page at /, the stream at
// /events and POST /publish.
func newMux(node string, events *sse.Server) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		page.Execute(w, node)
	})
	mux.Handle("GET /events", events)
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) {
		text := strings.TrimSpace(r.FormValue("text"))
		if text == "" {
			http.Error(w, "empty text", http.StatusBadRequest)
			return
		}
		id, err := events.Publish(r.Context(), "", sse.NewEvent(fmt.Sprintf("node %s: %s", node, text)))
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, id)
	})
	return mux
}

// tick publishes "node X: tick N" every interval until ctx ends.
func tick(ctx context.Context, node string, events *sse.Server, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := events.Publish(ctx, "", sse.NewEvent(fmt.Sprintf("node %s: tick %d", node, n))); err != nil {
			log.Printf("publish: %v", err) // Redis unreachable: the next tick tries again
		}
	}
}
