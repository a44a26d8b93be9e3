package main

import (
	"net/http"

	"github.com/coregx/stream/sse"
)

func init() { newBroadcaster[implStream] = newStreamHub }

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
