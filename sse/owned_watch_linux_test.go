package sse_test

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// goroutinesIn counts the goroutines whose stack has fn in it.
func goroutinesIn(fn string) int {
	count := 0
	for _, g := range allStacks() {
		if strings.Contains(g, fn) {
			count++
		}
	}
	return count
}

const (
	readerFunc  = "sse.(*Conn).readOwned"
	watcherFunc = "sse.(*connWatch).run"
)

// TestOwnedWatchNoReaders checks that the taken connections of streams,
// served by the guide's handler or by a hub's own, and detached ones, are
// read by one watch rather than by a goroutine each (a detached stream
// has none at all), and that the watch ends with the last of them.
func TestOwnedWatchNoReaders(t *testing.T) {
	const n = 20
	for _, tc := range []struct {
		name string
		opts sse.Options
		own  bool // the hub's own handler
	}{
		{"Register", sse.Options{}, false},
		{"ServeHTTP", sse.Options{}, true},
		{"Detach", sse.Options{Detach: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := sse.NewHubWithOptions[string](&tc.opts)
			var h http.Handler = hub
			if !tc.own {
				h = registerHandler(hub, nil)
			}
			srv := httptest.NewServer(h)
			conns := make([]net.Conn, n)
			for i := range conns {
				nc, br, _ := rawStream(t, srv.Listener.Addr().String())
				readExactly(t, br, "d\r\n: connected\n\n\r\n")
				conns[i] = nc
			}
			if !sse.WaitFor(5*time.Second, func() bool { return hub.Clients() == n }) {
				t.Fatalf("Clients: got %d, want %d", hub.Clients(), n)
			}
			if got := goroutinesIn(readerFunc); got != 0 {
				t.Errorf("goroutines reading a connection: got %d, want 0", got)
			}
			if got := goroutinesIn(watcherFunc); got != 1 {
				t.Errorf("watch goroutines: got %d, want 1", got)
			}
			if got := goroutinesIn("sse.(*Conn).detach"); got != 0 {
				t.Errorf("goroutines of detached streams: got %d, want 0", got)
			}
			hub.Close()
			srv.Close()
			if !sse.WaitFor(5*time.Second, func() bool { return goroutinesIn(watcherFunc) == 0 }) {
				t.Errorf("watch goroutines after every stream ended: got %d, want 0", goroutinesIn(watcherFunc))
			}
		})
	}
}

// TestOwnedWatchClientsLeave checks that the streams whose clients left
// end, with the cause the reader gave, and only those: the others get
// the next event.
func TestOwnedWatchClientsLeave(t *testing.T) {
	const n = 10
	hub := sse.NewHub[string]()
	t.Cleanup(func() { hub.Close() })
	seen := make(chan string, n)
	srv := httptest.NewServer(registerHandler(hub, seen))
	t.Cleanup(srv.Close)
	conns := make([]net.Conn, n)
	readers := make([]*bufio.Reader, n)
	for i := range conns {
		conns[i], readers[i], _ = rawStream(t, srv.Listener.Addr().String())
		readExactly(t, readers[i], "d\r\n: connected\n\n\r\n")
	}
	if !sse.WaitFor(5*time.Second, func() bool { return hub.Clients() == n }) {
		t.Fatalf("Clients: got %d, want %d", hub.Clients(), n)
	}
	for i := 0; i < n; i += 2 {
		conns[i].Close()
	}
	for range n / 2 {
		expectLeft(t, seen)
	}
	if got := hub.Clients(); got != n/2 {
		t.Errorf("Clients after half left: got %d, want %d", got, n/2)
	}
	if err := hub.Broadcast("x"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n; i += 2 {
		readExactly(t, readers[i], "9\r\ndata: x\n\n\r\n")
	}
	select {
	case got := <-seen:
		t.Errorf("a stream whose client stayed ended: %s", got)
	default:
	}
}

// TestOwnedWatchDiscardsInput checks that what a client sends on its
// stream, whether net/http read it ahead with the request or it came
// later, and more than one read takes, is discarded without ending the
// stream; leaving still ends it.
func TestOwnedWatchDiscardsInput(t *testing.T) {
	hub := sse.NewHub[string]()
	t.Cleanup(func() { hub.Close() })
	seen := make(chan string, 1)
	ready := make(chan struct{}, 1)
	srv := httptest.NewServer(registerHandlerReady(hub, seen, ready))
	t.Cleanup(srv.Close)
	// Bytes right behind the request, in one write: net/http reads them
	// ahead.
	nc, br, _ := rawStreamThen(t, srv.Listener.Addr().String(), "ahead of time")
	readExactly(t, br, "d\r\n: connected\n\n\r\n")
	<-ready
	if _, err := nc.Write([]byte(strings.Repeat("z", 100<<10))); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"one", "two"} {
		if err := hub.Broadcast(d); err != nil {
			t.Fatal(err)
		}
		readExactly(t, br, "b\r\ndata: "+d+"\n\n\r\n")
	}
	if got := hub.Clients(); got != 1 {
		t.Fatalf("Clients after the client sent data: got %d, want 1", got)
	}
	nc.Close()
	expectLeft(t, seen)
}

// expectLeft waits for registerHandler's report of a stream that ended
// because its client left.
func expectLeft(t *testing.T, seen <-chan string) {
	t.Helper()
	select {
	case got := <-seen:
		if want := "request context: <nil>; conn: sse: connection closed: client went away"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a stream did not end after its client left")
	}
}

// TestOwnedWatchFails checks that when the watch cannot wait any more,
// the streams it watched, and those taken after, get a reader each, and
// still end when their clients leave.
func TestOwnedWatchFails(t *testing.T) {
	hub := sse.NewHub[string]()
	seen := make(chan string, 3)
	srv := httptest.NewServer(registerHandler(hub, seen))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	var conns []net.Conn
	var readers []*bufio.Reader
	open := func() {
		nc, br, _ := rawStream(t, addr)
		readExactly(t, br, "d\r\n: connected\n\n\r\n")
		conns, readers = append(conns, nc), append(readers, br)
		if !sse.WaitFor(5*time.Second, func() bool { return hub.Clients() == len(conns) }) {
			t.Fatalf("Clients: got %d, want %d", hub.Clients(), len(conns))
		}
	}
	open()
	open()
	if got := goroutinesIn(readerFunc); got != 0 {
		t.Fatalf("goroutines reading a connection before the failure: got %d, want 0", got)
	}
	restore := sse.BreakOwnedWatch()
	t.Cleanup(restore)
	open()
	// Register counts a client before it takes its connection over.
	if !sse.WaitFor(5*time.Second, func() bool { return goroutinesIn(readerFunc) == 3 }) {
		t.Errorf("goroutines reading a connection after the failure: got %d, want 3", goroutinesIn(readerFunc))
	}
	if !sse.WaitFor(5*time.Second, func() bool { return goroutinesIn(watcherFunc) == 0 }) {
		t.Errorf("watch goroutines after the failure: got %d, want 0", goroutinesIn(watcherFunc))
	}
	for _, i := range []int{0, 2} {
		conns[i].Close()
		expectLeft(t, seen)
	}
	if err := hub.Broadcast("x"); err != nil {
		t.Fatal(err)
	}
	readExactly(t, readers[1], "9\r\ndata: x\n\n\r\n")
	hub.Close()
	if !sse.WaitFor(5*time.Second, func() bool { return goroutinesIn(readerFunc) == 0 }) {
		t.Errorf("goroutines reading a connection after Close: got %d, want 0", goroutinesIn(readerFunc))
	}
}

// TestOwnedWatchChurn opens streams over loopback and ends them each way
// one ends (the client leaves, the handler closes it, the hub closes):
// the watch holds exactly the open ones throughout, and nothing once
// they are all gone.
func TestOwnedWatchChurn(t *testing.T) {
	const n = 300
	if got, open := sse.OwnedWatched(); got != 0 || open {
		t.Fatalf("before: %d watched, instance open %v; want 0, false", got, open)
	}
	hub := sse.NewHub[string]()
	streams := make(chan *sse.Conn, n)
	srv := httptest.NewServer(hubHandler(hub, streams))
	t.Cleanup(srv.Close)
	clients := make([]net.Conn, n)
	conns := make([]*sse.Conn, n)
	for i := range n {
		clients[i], _, _ = rawStream(t, srv.Listener.Addr().String())
		conns[i] = <-streams
	}
	if got, _ := sse.OwnedWatched(); got != n {
		t.Fatalf("watched after %d streams opened: got %d", n, got)
	}
	// A third leave, a third are closed by their handlers; the rest stay.
	for i := 0; i < n; i += 3 {
		clients[i].Close()
		conns[i+1].Close()
	}
	for i := 0; i < n; i += 3 {
		for _, c := range conns[i : i+2] {
			select {
			case <-c.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("a stream did not end")
			}
		}
	}
	if !sse.WaitFor(5*time.Second, func() bool { got, _ := sse.OwnedWatched(); return got == n/3 }) {
		got, _ := sse.OwnedWatched()
		t.Errorf("watched once two thirds ended: got %d, want %d", got, n/3)
	}
	hub.Close()
	if !sse.WaitFor(5*time.Second, func() bool { got, open := sse.OwnedWatched(); return got == 0 && !open }) {
		got, open := sse.OwnedWatched()
		t.Errorf("after Close: %d watched, instance open %v; want 0, false", got, open)
	}
}
