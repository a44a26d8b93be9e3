package main

import (
	"net/http"

	"github.com/coregx/stream/sse"
)

func init() {
	newBroadcaster[implStream] = newStreamHub
	newBroadcaster[implStreamHTTP] = newStreamHubHTTP
}

// streamHub is this module's sse.Hub, with its defaults, used through the
// user guide's API only: NewHub, Run, Upgrade, Register, Broadcast.
type streamHub struct{ hub *sse.Hub[string] }

func newStreamHub() broadcaster {
	h := sse.NewHub[string]()
	go h.Run()
	return streamHub{h}
}

func (s streamHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, err := sse.Upgrade(w, r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	if err := s.hub.Register(conn); err != nil {
		return
	}
	defer s.hub.Unregister(conn)
	<-conn.Done()
}

func (s streamHub) Publish(data string) error { return s.hub.Broadcast(data) }

func (s streamHub) Close() { _ = s.hub.Close() }

// streamHubHTTP is the same Hub serving the requests itself: its handler
// watches the request's context on its own goroutine.
type streamHubHTTP struct{ streamHub }

func newStreamHubHTTP() broadcaster { return streamHubHTTP{newStreamHub().(streamHub)} }

func (s streamHubHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.hub.ServeHTTP(w, r) }
