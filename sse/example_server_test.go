package sse_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/coregx/stream/sse"
)

func ExampleServer() {
	events := &sse.Server{
		// Each request picks its topics; return a *sse.StatusError to refuse.
		Topics: func(r *http.Request) ([]string, error) {
			return []string{r.URL.Query().Get("topic")}, nil
		},
	}
	defer events.Close()
	srv := httptest.NewServer(events)
	defer srv.Close()

	ctx := context.Background()
	for _, text := range []string{"first", "second", "third"} {
		id, _ := events.Publish(ctx, "news", sse.NewEvent(text))
		fmt.Println("published", id)
	}

	// A client that saw event 1 reconnects: it gets 2 and 3, then live events.
	show(srv.URL+"/?topic=news", "1", 2)
	// An ID the history does not hold: a gap event, then all that is kept.
	show(srv.URL+"/?topic=news", "no-such-id", 4)
	// Output:
	// published 1
	// published 2
	// published 3
	// message id=2 second
	// message id=3 third
	// sse-gap id= 1
	// message id=1 first
	// message id=2 second
	// message id=3 third
}

// show connects with Last-Event-ID lastID and prints n events.
func show(url, lastID string, n int) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Last-Event-ID", lastID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	for ev, err := range sse.Read(resp.Body) {
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s id=%s %s\n", ev.Type, ev.ID, ev.Data)
		if n--; n == 0 {
			return
		}
	}
}
