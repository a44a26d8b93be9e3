// Command replay streams a log of numbered events and lets a client that
// reconnects resume where it left off: event IDs go out with every
// event, the browser (or sse.Client) sends the last one back in the
// Last-Event-ID header, and the server replays what was missed from a
// bounded in-memory log before going live, with no gap and no duplicate.
// A first connection gets the whole log, then live events.
//
//	go run ./examples/replay
//	curl -N http://localhost:8080/events
//	curl -N -H 'Last-Event-ID: 5' http://localhost:8080/events   # resumes at 6
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coregx/stream/sse"
)

// eventLog keeps the last events in a ring buffer and broadcasts new ones.
type eventLog struct {
	hub  *sse.Hub[*sse.Event]
	mu   sync.Mutex // orders appends, broadcasts and registrations
	ring []*sse.Event
	last uint64 // ID of the newest event; IDs start at 1
}

func newEventLog(size int) *eventLog {
	return &eventLog{hub: sse.NewHub[*sse.Event](), ring: make([]*sse.Event, max(size, 1))}
}

// publish appends an event with the next ID and broadcasts it. It holds
// the lock across both, so a client registering under the same lock is
// either in the hub before the broadcast or sees the event in the log.
// Broadcast does not wait for clients, so the lock is held only briefly.
func (l *eventLog) publish(data string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last++
	ev := sse.NewEvent(data).WithID(strconv.FormatUint(l.last, 10))
	l.ring[l.last%uint64(len(l.ring))] = ev
	return l.hub.Broadcast(ev)
}

// since returns the events after ID after, oldest first, and the ID of
// the newest; l.mu must be held. An ID that fell out of the log replays
// what is left, and the events in between are lost.
func (l *eventLog) since(after uint64) ([]*sse.Event, uint64) {
	oldest := uint64(1)
	if l.last >= uint64(len(l.ring)) {
		oldest = l.last - uint64(len(l.ring)) + 1
	}
	var evs []*sse.Event
	for id := max(after+1, oldest); id <= l.last; id++ {
		evs = append(evs, l.ring[id%uint64(len(l.ring))])
	}
	return evs, l.last
}

// resume returns the ID to replay after for a client's Last-Event-ID;
// l.mu must be held. No ID (a first connection) or one the log cannot
// have sent (malformed, or newer than the newest event, as after a
// server restart) replays the whole log.
func (l *eventLog) resume(lastEventID string) uint64 {
	n, err := strconv.ParseUint(lastEventID, 10, 64)
	if err != nil || n > l.last {
		return 0
	}
	return n
}

func (l *eventLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Retry tells browsers to reconnect after one second.
	conn, err := sse.UpgradeWithOptions(r.Context(), w, r, &sse.UpgradeOptions{Retry: time.Second})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()

	// Replaying while live events go to the hub would break their order,
	// and registering after the replay without the lock would miss what
	// was published in between. So: replay without the lock, where
	// writing to a slow client holds up nobody; then, under the lock,
	// send what arrived meanwhile (usually nothing) and register. No
	// event can be published between that last send and Register.
	l.mu.Lock()
	missed, cursor := l.since(l.resume(conn.LastEventID()))
	l.mu.Unlock()
	if err := send(conn, missed); err != nil {
		return
	}
	l.mu.Lock()
	missed, _ = l.since(cursor)
	err = send(conn, missed)
	if err == nil {
		err = l.hub.Register(conn)
	}
	l.mu.Unlock()
	if err != nil {
		return // the client went away, or the hub closed
	}
	defer l.hub.Unregister(conn)
	// A client too slow for the hub's queue is disconnected; it comes
	// back with Last-Event-ID and catches up from the log.
	<-conn.Done()
}

func send(conn *sse.Conn, evs []*sse.Event) error {
	for _, ev := range evs {
		if err := conn.Send(ev); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	addr := flag.String("addr", "localhost:8080", "listen `address`")
	every := flag.Duration("every", time.Second, "interval between events")
	size := flag.Int("size", 100, "number of events kept for replay")
	flag.Parse()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("listening on http://%s", ln.Addr())
	l := newEventLog(*size)
	go func() { // publishes for as long as the program runs
		for i := 1; l.publish(fmt.Sprintf("event %d", i)) == nil; i++ {
			time.Sleep(*every)
		}
	}()
	srv := &http.Server{Handler: newMux(l), ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.Serve(ln))
}

func newMux(l *eventLog) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /events", l)
	return mux
}
