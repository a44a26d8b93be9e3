// Command tail prints the events of a server-sent event stream as they
// arrive, reconnecting when the connection drops.
//
//	go run ./examples/tail http://localhost:8080/events
//	go run ./examples/tail -H 'Authorization: Bearer xyz' -idle 1m -json URL
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/coregx/stream/sse"
)

// headers collects repeated -H flags.
type headers http.Header

func (h headers) String() string { return fmt.Sprint(http.Header(h)) }

func (h headers) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	if !ok {
		return errors.New(`want "Name: value"`)
	}
	http.Header(h).Add(strings.TrimSpace(name), strings.TrimSpace(value))
	return nil
}

func main() {
	hdr := headers{}
	flag.Var(hdr, "H", "request header `Name: value` (repeatable)")
	lastID := flag.String("last-event-id", "", "resume after this event ID")
	idle := flag.Duration("idle", 0, "reconnect when nothing arrives for this long (0: never)")
	asJSON := flag.Bool("json", false, "print each event as a JSON object")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: tail [flags] URL\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if *lastID != "" {
		http.Header(hdr).Set("Last-Event-ID", *lastID)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	c := &sse.Client{
		Header:      http.Header(hdr),
		IdleTimeout: *idle,
		OnReconnect: func(err error, delay time.Duration) {
			fmt.Fprintf(os.Stderr, "tail: %v; reconnecting in %v\n", err, delay.Round(time.Millisecond))
		},
	}
	enc := json.NewEncoder(os.Stdout)
	for ev, err := range c.Events(ctx, flag.Arg(0)) {
		if errors.Is(err, context.Canceled) {
			return // interrupted
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "tail:", err)
			os.Exit(1)
		}
		if *asJSON {
			enc.Encode(map[string]any{"type": ev.Type, "id": ev.ID, "data": ev.Data, "retry": ev.Retry})
			continue
		}
		fmt.Printf("[%s", ev.Type)
		if ev.ID != "" {
			fmt.Printf(" #%s", ev.ID)
		}
		fmt.Printf("] %s\n", ev.Data)
	}
}
