package main

import (
	"context"
	"net/http"

	"github.com/coregx/stream/sse"
)

func init() {
	newBroadcaster[implStream] = newStreamHub
	newBroadcaster[implStreamHTTP] = newStreamHubHTTP
	newBroadcaster[implStreamServer] = newStreamServer
	newBroadcaster[implStreamFilter] = newStreamServerFilter
	newBroadcaster[implStreamDrop] = newStreamHubDrop
}

// streamHub is this module's sse.Hub, with its defaults, used through the
// user guide's API only: NewHub, Run, Upgrade, Register, Broadcast.
type streamHub struct{ hub *sse.Hub[string] }

func newStreamHub() broadcaster {
	h := sse.NewHub[string]()
	go h.Run()
	return streamHub{h}
}

// newStreamHubDrop is the same Hub with the SlowDropOldest policy.
func newStreamHubDrop() broadcaster {
	h := sse.NewHubWithOptions[string](&sse.Options{SlowClients: sse.SlowDropOldest})
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

func (s streamHub) counts() engineCounts { return countsFrom(s.hub.Stats()) }

// streamServer is this module's sse.Server with its defaults: every
// request follows the one topic "" (Topics is nil), events are published
// to it with Server.Publish.
type streamServer struct{ srv *sse.Server }

func newStreamServer() broadcaster { return streamServer{&sse.Server{}} }

// newStreamServerFilter is the same Server with a Filter that passes
// every event, as an application that picks events per request (the
// Mercure hub) has: the engine then consults it for every event and
// client.
func newStreamServerFilter() broadcaster {
	return streamServer{&sse.Server{Filter: func(*http.Request) func(*sse.Message) bool {
		return func(*sse.Message) bool { return true }
	}}}
}

func (s streamServer) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.srv.ServeHTTP(w, r) }

func (s streamServer) Publish(data string) error {
	_, err := s.srv.Publish(context.Background(), "", sse.NewEvent(data))
	return err
}

func (s streamServer) Close() { _ = s.srv.Close() }

func (s streamServer) counts() engineCounts { return countsFrom(s.srv.Stats()) }

// countsFrom is the one place that reads the engine's statistics.
func countsFrom(st sse.Stats) engineCounts {
	return engineCounts{Clients: st.Clients, SlowDisconnects: st.SlowDisconnects,
		BudgetDisconnects: st.BudgetDisconnects, ClientDisconnects: st.ClientDisconnects}
}
