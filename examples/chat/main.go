// Command chat is a chat server with rooms: each room is a
// *sse.Hub[Message], GET /events?room=NAME streams a room, and
// POST /send?room=NAME&user=WHO&text=WHAT broadcasts to it. The page at /
// puts it together.
//
//	go run ./examples/chat
//	open http://localhost:8080/ in two windows, or:
//	curl -N 'http://localhost:8080/events?room=go'
//	curl -X POST 'http://localhost:8080/send?room=go&user=alice&text=hi'
//
// Each message arrives as a JSON event: data: {"user":"alice","text":"hi"}
// Ctrl-C (or SIGTERM) ends every stream with a "retry:" hint, then the
// program.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/coregx/stream/examples/internal/page"
	"github.com/coregx/stream/examples/internal/serve"
	"github.com/coregx/stream/sse"
)

//go:embed index.html
var indexHTML []byte

// Message is one chat message. It has no String method, so the hub sends
// it encoded as JSON.
type Message struct {
	User string `json:"user"`
	Text string `json:"text"`
}

// Limits on what clients may create or send.
const maxRooms, maxNameLen, maxTextLen = 100, 64, 1000

// chat holds the rooms. Rooms live as long as the server.
type chat struct {
	mu    sync.Mutex
	rooms map[string]*sse.Hub[Message]
}

func newChat() *chat { return &chat{rooms: make(map[string]*sse.Hub[Message])} }

// room returns the hub of the named room, creating it when create is set.
// It returns nil when the room does not exist and cannot be created.
func (c *chat) room(name string, create bool) *sse.Hub[Message] {
	c.mu.Lock()
	defer c.mu.Unlock()
	hub := c.rooms[name]
	if hub == nil && create && c.rooms != nil && len(c.rooms) < maxRooms {
		// No hub.Run goroutine is needed: the hub works without it.
		hub = sse.NewHub[Message]()
		c.rooms[name] = hub
	}
	return hub
}

// Shutdown ends the streams of every room, each with a retry hint, and
// refuses new ones; rooms are not created any more.
func (c *chat) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	rooms := c.rooms
	c.rooms = nil
	c.mu.Unlock()
	var errs []error
	for _, hub := range rooms {
		errs = append(errs, hub.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

func main() {
	addr := flag.String("addr", "localhost:8080", "listen `address`")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := newChat()
	if err := serve.Run(ctx, *addr, c.newMux(), c); err != nil {
		log.Fatal(err)
	}
}

func (c *chat) newMux() http.Handler {
	mux := http.NewServeMux()
	page.Register(mux)
	mux.Handle("GET /{$}", page.HTML(indexHTML))
	mux.HandleFunc("GET /events", c.handleEvents)
	mux.HandleFunc("POST /send", c.handleSend)
	return mux
}

// roomName returns the room of r, "lobby" by default.
func roomName(r *http.Request) (string, bool) {
	name := r.FormValue("room")
	if name == "" {
		name = "lobby"
	}
	return name, len(name) <= maxNameLen
}

func (c *chat) handleEvents(w http.ResponseWriter, r *http.Request) {
	name, ok := roomName(r)
	if !ok {
		http.Error(w, "room name too long", http.StatusBadRequest)
		return
	}
	hub := c.room(name, true)
	if hub == nil {
		http.Error(w, "too many rooms, or shutting down", http.StatusServiceUnavailable)
		return
	}
	// The hub is an http.Handler. Unlike Upgrade followed by Register, it
	// registers the stream before sending ": connected", so a client that
	// has seen the opening comment gets every message sent after it. It
	// returns when the client goes away, and answers 503 once the hub is
	// closed.
	hub.ServeHTTP(w, r)
}

func (c *chat) handleSend(w http.ResponseWriter, r *http.Request) {
	name, ok := roomName(r)
	msg := Message{User: r.FormValue("user"), Text: r.FormValue("text")}
	if !ok || msg.User == "" || len(msg.User) > maxNameLen || msg.Text == "" || len(msg.Text) > maxTextLen {
		http.Error(w, "want room, user and text, not too long", http.StatusBadRequest)
		return
	}
	// Nobody listens to a room that does not exist: do not create it.
	hub := c.room(name, false)
	if hub == nil {
		fmt.Fprintln(w, "sent to 0 clients")
		return
	}
	// Broadcast queues the message for every client and returns at once;
	// it never waits for a slow client. JSON special characters and line
	// breaks in the text are escaped, so they cannot break the stream.
	if err := hub.Broadcast(msg); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, "sent to %d clients\n", hub.Clients())
}
