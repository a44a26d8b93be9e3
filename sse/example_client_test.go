package sse_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/coregx/stream/sse"
)

func ExampleClient() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Last-Event-ID") == "2" {
			w.WriteHeader(http.StatusNoContent) // no more: stop reconnecting
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "retry: 100\n\n: heartbeat\n\nid: 1\ndata: first\n\nid: 2\ndata: second\n\n")
	}))
	defer srv.Close()

	c := &sse.Client{
		HTTPClient: srv.Client(),
		// Servers send a heartbeat comment after a quiet period (a Hub
		// every 15 s by default): a connection silent for much longer
		// than that has died somewhere on the way, so drop it and
		// reconnect instead of waiting forever.
		IdleTimeout: time.Minute,
		OnComment: func(text string) {
			fmt.Println("comment:", text)
		},
		OnReconnect: func(err error, delay time.Duration) {
			fmt.Println("reconnecting after:", err)
		},
	}
	for ev, err := range c.Events(context.Background(), srv.URL) {
		if err != nil {
			log.Fatal(err) // final: *sse.ResponseError, sse.ErrEventTooLarge, ...
		}
		fmt.Println(ev.ID, ev.Data)
	}
	// Output:
	// comment: heartbeat
	// 1 first
	// 2 second
	// reconnecting after: EOF
}
