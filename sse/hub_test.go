package sse_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coregx/stream/sse"
)

// hubServer serves hub in the guide's style and reports each registration.
func hubServer[T any](t *testing.T, hub *sse.Hub[T]) (*httptest.Server, <-chan *sse.Conn) {
	t.Helper()
	registered := make(chan *sse.Conn, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := sse.Upgrade(w, r)
		if err != nil {
			return
		}
		defer conn.Close()
		if err := hub.Register(conn); err != nil {
			return
		}
		defer hub.Unregister(conn)
		registered <- conn
		<-conn.Done()
	}))
	t.Cleanup(srv.Close)
	return srv, registered
}

// connect opens n streams and waits until the hub registered each; it
// returns the client streams and the server's conns, in the same order.
func connect(t *testing.T, srv *httptest.Server, registered <-chan *sse.Conn, n int) ([]*stream, []*sse.Conn) {
	t.Helper()
	streams := make([]*stream, n)
	conns := make([]*sse.Conn, n)
	for i := range streams {
		streams[i] = get(t, srv.Client(), srv.URL)
		streams[i].expect(": connected\n\n")
		conns[i] = <-registered
	}
	return streams, conns
}

func TestHubBroadcastReachesEveryClient(t *testing.T) {
	hub := sse.NewHub[string]()
	go hub.Run()
	defer hub.Close()
	srv, reg := hubServer(t, hub)
	streams, _ := connect(t, srv, reg, 5)
	if got := hub.Clients(); got != 5 {
		t.Fatalf("Clients() = %d, want 5", got)
	}
	for i := range 20 {
		if err := hub.Broadcast(fmt.Sprintf("msg %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range streams {
		for i := range 20 {
			if got, want := s.block(), fmt.Sprintf("data: msg %d\n\n", i); got != want {
				t.Fatalf("event %d = %q, want %q", i, got, want)
			}
		}
	}
}

type stringerMsg struct{ text string }

func (m stringerMsg) String() string { return "S:" + m.text }

type jsonMsg struct {
	User string `json:"user"`
	Text string `json:"text"`
}

// broadcastOne registers a fake stream on hub, broadcasts v and returns
// what the stream received after its opening comment.
func broadcastOne[T any](t *testing.T, v T) (string, error) {
	t.Helper()
	var body string
	var berr error
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHub[T]()
		defer hub.Close()
		w := newFakeWriter()
		conn, err := sse.Upgrade(w, httptest.NewRequest(http.MethodGet, "/", nil))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := hub.Register(conn); err != nil {
			t.Fatal(err)
		}
		berr = hub.Broadcast(v)
		synctest.Wait()
		body = strings.TrimPrefix(w.Body(), ": connected\n\n")
	})
	return body, berr
}

func TestHubEncoding(t *testing.T) {
	check := func(t *testing.T, got string, err error, want string) {
		t.Helper()
		if err != nil {
			t.Fatalf("Broadcast: %v", err)
		}
		if got != want {
			t.Errorf("sent %q, want %q", got, want)
		}
	}
	t.Run("string", func(t *testing.T) {
		got, err := broadcastOne(t, "Hello, everyone!")
		check(t, got, err, "data: Hello, everyone!\n\n")
	})
	t.Run("multi-line string", func(t *testing.T) {
		got, err := broadcastOne(t, "a\nb\r\nc")
		check(t, got, err, "data: a\ndata: b\ndata: c\n\n")
	})
	t.Run("event pointer", func(t *testing.T) {
		got, err := broadcastOne(t, sse.NewEvent("d").WithType("order").WithID("7").WithRetry(500))
		check(t, got, err, "event: order\nid: 7\nretry: 500\ndata: d\n\n")
	})
	t.Run("event value", func(t *testing.T) {
		got, err := broadcastOne(t, sse.Event{Type: "t", ID: "1", Data: "v"})
		check(t, got, err, "event: t\nid: 1\ndata: v\n\n")
	})
	t.Run("stringer", func(t *testing.T) {
		got, err := broadcastOne(t, stringerMsg{"hi"})
		check(t, got, err, "data: S:hi\n\n")
	})
	t.Run("json", func(t *testing.T) {
		got, err := broadcastOne(t, jsonMsg{User: "Alice", Text: "Hi"})
		check(t, got, err, "data: {\"user\":\"Alice\",\"text\":\"Hi\"}\n\n")
	})
	t.Run("any holding event", func(t *testing.T) {
		got, err := broadcastOne[any](t, sse.NewEvent("x").WithID("9"))
		check(t, got, err, "id: 9\ndata: x\n\n")
	})
	t.Run("map keys sorted", func(t *testing.T) {
		got, err := broadcastOne(t, map[string]int{"b": 2, "a": 1})
		check(t, got, err, "data: {\"a\":1,\"b\":2}\n\n")
	})
}

func TestHubEncodingErrors(t *testing.T) {
	t.Run("json", func(t *testing.T) {
		got, err := broadcastOne(t, map[string]any{"c": make(chan int)})
		var jerr *json.UnsupportedTypeError
		if !errors.As(err, &jerr) || !strings.HasPrefix(err.Error(), "sse: ") {
			t.Errorf("Broadcast = %v, want a wrapped json error", err)
		}
		if got != "" {
			t.Errorf("sent %q, want nothing", got)
		}
	})
	t.Run("injected id", func(t *testing.T) {
		got, err := broadcastOne(t, sse.NewEvent("x").WithID("1\nevent: evil"))
		if !errors.Is(err, sse.ErrInvalidEvent) {
			t.Errorf("Broadcast = %v, want ErrInvalidEvent", err)
		}
		if got != "" {
			t.Errorf("sent %q, want nothing", got)
		}
	})
	t.Run("nil event", func(t *testing.T) {
		_, err := broadcastOne[*sse.Event](t, nil)
		if !errors.Is(err, sse.ErrInvalidEvent) {
			t.Errorf("Broadcast(nil) = %v, want ErrInvalidEvent", err)
		}
	})
}

func TestHubBroadcastJSON(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHub[string]()
		defer hub.Close()
		w := newFakeWriter()
		conn, _ := sse.Upgrade(w, httptest.NewRequest(http.MethodGet, "/", nil))
		defer conn.Close()
		hub.Register(conn)
		if err := hub.BroadcastJSON(jsonMsg{User: "Bob", Text: "yo"}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got, want := w.Body(), ": connected\n\ndata: {\"user\":\"Bob\",\"text\":\"yo\"}\n\n"; got != want {
			t.Errorf("body = %q, want %q", got, want)
		}
	})
}

func TestHubClientsExact(t *testing.T) {
	hub := sse.NewHub[string]()
	go hub.Run()
	defer hub.Close()
	srv, reg := hubServer(t, hub)
	streams, conns := connect(t, srv, reg, 3)
	if got := hub.Clients(); got != 3 {
		t.Fatalf("after 3 registrations Clients() = %d, want 3", got)
	}

	// A client that goes away is removed by the time Done is closed.
	w := newFakeWriter()
	conn, _ := sse.Upgrade(w, httptest.NewRequest(http.MethodGet, "/", nil))
	hub.Register(conn)
	if got := hub.Clients(); got != 4 {
		t.Fatalf("after Register Clients() = %d, want 4", got)
	}
	hub.Unregister(conn)
	if got := hub.Clients(); got != 3 {
		t.Fatalf("after Unregister Clients() = %d, want 3", got)
	}
	conn.Close()
	streams[0].resp.Body.Close()
	<-conns[0].Done()
	if got := hub.Clients(); got != 2 {
		t.Fatalf("after disconnect Clients() = %d, want 2", got)
	}
}

func TestHubRemovesDisconnectedClient(t *testing.T) {
	hub := sse.NewHub[string]()
	defer hub.Close()
	srv, reg := hubServer(t, hub)
	s := get(t, srv.Client(), srv.URL)
	s.expect(": connected\n\n")
	conn := <-reg
	if got := hub.Clients(); got != 1 {
		t.Fatalf("Clients() = %d, want 1", got)
	}
	s.resp.Body.Close()
	<-conn.Done()
	if got := hub.Clients(); got != 0 {
		t.Fatalf("after disconnect Clients() = %d, want 0", got)
	}
}

func TestHubLifecycle(t *testing.T) {
	hub := sse.NewHub[string]()
	runs := make(chan struct{}, 2)
	for range 2 {
		go func() { hub.Run(); runs <- struct{}{} }()
	}
	srv, reg := hubServer(t, hub)
	streams, _ := connect(t, srv, reg, 2)
	if err := hub.Close(); err != nil {
		t.Fatalf("Close = %v, want nil", err)
	}
	// Close waited for both Runs to return.
	for range 2 {
		select {
		case <-runs:
		default:
			t.Fatal("Run still running after Close returned")
		}
	}
	for _, s := range streams {
		s.expectEOF()
	}
	if err := hub.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	hub.Run() // returns at once on a closed hub

	w := newFakeWriter()
	conn, _ := sse.Upgrade(w, httptest.NewRequest(http.MethodGet, "/", nil))
	defer conn.Close()
	if err := hub.Register(conn); !errors.Is(err, sse.ErrHubClosed) {
		t.Errorf("Register after Close = %v, want ErrHubClosed", err)
	}
	if err := hub.Broadcast("x"); !errors.Is(err, sse.ErrHubClosed) {
		t.Errorf("Broadcast after Close = %v, want ErrHubClosed", err)
	}
	if got, want := sse.ErrHubClosed.Error(), "sse: hub closed"; got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
	if got := hub.Clients(); got != 0 {
		t.Errorf("Clients() after Close = %d, want 0", got)
	}
}

func TestHubRegisterClosedConn(t *testing.T) {
	hub := sse.NewHub[string]()
	defer hub.Close()
	conn, _ := sse.Upgrade(newFakeWriter(), httptest.NewRequest(http.MethodGet, "/", nil))
	conn.Close()
	if err := hub.Register(conn); !errors.Is(err, sse.ErrConnectionClosed) {
		t.Errorf("Register(closed conn) = %v, want ErrConnectionClosed", err)
	}
	if got := hub.Clients(); got != 0 {
		t.Errorf("Clients() = %d, want 0", got)
	}
}

// fakeClient is a registered conn over a fakeWriter.
type fakeClient struct {
	w    *fakeWriter
	conn *sse.Conn
}

func fakeClients[T any](t *testing.T, hub *sse.Hub[T], n int, opts *sse.UpgradeOptions) []fakeClient {
	t.Helper()
	cs := make([]fakeClient, n)
	for i := range cs {
		w := newFakeWriter()
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		conn, err := sse.UpgradeWithOptions(r.Context(), w, r, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if err := hub.Register(conn); err != nil {
			t.Fatal(err)
		}
		cs[i] = fakeClient{w, conn}
	}
	return cs
}

func TestHubSlowClientIsDisconnected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHubWithOptions[string](&sse.Options{QueueSize: 4})
		defer hub.Close()
		opts := &sse.UpgradeOptions{Heartbeat: -1, WriteTimeout: time.Hour}
		cs := fakeClients(t, hub, 3, opts)
		release := cs[0].w.setBlock() // client 0 stops reading
		defer release()

		var want strings.Builder
		want.WriteString(": connected\n\n")
		for i := range 10 {
			start := time.Now()
			if err := hub.Broadcast(fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d != 0 {
				t.Errorf("broadcast %d took %v with a stuck client, want no wait", i, d)
			}
			fmt.Fprintf(&want, "data: %d\n\n", i)
			synctest.Wait()
			// A full queue disconnects a client once its write has
			// run for 500 ms.
			time.Sleep(60 * time.Millisecond)
		}
		for i, c := range cs[1:] {
			if got := c.w.Body(); got != want.String() {
				t.Errorf("client %d body = %q, want %q", i+1, got, want.String())
			}
		}
		select {
		case <-cs[0].conn.Done():
		default:
			t.Fatal("stuck client still connected")
		}
		st := hub.Stats()
		if st.SlowDisconnects != 1 || st.Clients != 2 || st.Broadcasts != 10 {
			t.Errorf("Stats() = %+v, want 1 slow disconnect, 2 clients, 10 broadcasts", st)
		}
	})
}

func TestHubCoalescesQueuedEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHub[string]()
		defer hub.Close()
		cs := fakeClients(t, hub, 1, &sse.UpgradeOptions{Heartbeat: -1})
		w := cs[0].w
		release := w.setBlock()
		hub.Broadcast("1")
		synctest.Wait() // the writer is blocked writing event 1
		hub.Broadcast("2")
		hub.Broadcast("3")
		hub.Broadcast("4")
		release()
		synctest.Wait()
		want := []string{": connected\n\n", "data: 1\n\n", "data: 2\n\ndata: 3\n\ndata: 4\n\n"}
		if got := w.Writes(); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
			t.Errorf("writes = %q, want %q", got, want)
		}
		if got := hub.Stats().Delivered; got != 4 {
			t.Errorf("Delivered = %d, want 4", got)
		}
	})
}

func TestHubSameOrderForAll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHub[string]()
		defer hub.Close()
		cs := fakeClients(t, hub, 10, &sse.UpgradeOptions{Heartbeat: -1})
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := range 50 {
					hub.Broadcast(fmt.Sprintf("%d-%d", g, i))
				}
			})
		}
		wg.Wait()
		synctest.Wait()
		first := cs[0].w.Body()
		if n := strings.Count(first, "data: "); n != 200 {
			t.Fatalf("client 0 got %d events, want 200", n)
		}
		for i, c := range cs[1:] {
			if got := c.w.Body(); got != first {
				t.Errorf("client %d saw another order than client 0", i+1)
			}
		}
	})
}

func TestHubUnregisterStopsDelivery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHub[string]()
		defer hub.Close()
		cs := fakeClients(t, hub, 2, &sse.UpgradeOptions{Heartbeat: -1})
		hub.Broadcast("a")
		synctest.Wait()
		hub.Unregister(cs[0].conn)
		hub.Broadcast("b")
		synctest.Wait()
		if got, want := cs[0].w.Body(), ": connected\n\ndata: a\n\n"; got != want {
			t.Errorf("unregistered client got %q, want %q", got, want)
		}
		if got, want := cs[1].w.Body(), ": connected\n\ndata: a\n\ndata: b\n\n"; got != want {
			t.Errorf("registered client got %q, want %q", got, want)
		}
		select {
		case <-cs[0].conn.Done():
			t.Error("Unregister closed the conn")
		default:
		}
	})
}

func TestHubServeHTTP(t *testing.T) {
	hub := sse.NewHub[*sse.Event]()
	defer hub.Close()
	srv := httptest.NewServer(hub)
	t.Cleanup(srv.Close)
	s := get(t, srv.Client(), srv.URL)
	s.expect(": connected\n\n")
	// ServeHTTP registers before it sends the opening comment.
	if got := hub.Clients(); got != 1 {
		t.Fatalf("Clients() = %d, want 1", got)
	}
	hub.Broadcast(sse.NewEvent("x").WithType("t").WithID("1"))
	s.expect("event: t\nid: 1\ndata: x\n\n")
	hub.Close()
	s.expectEOF()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status after Close = %d, want 503", resp.StatusCode)
	}
}

// A stuck client whose writer cannot take deadlines holds its write until
// it returns: disconnecting it must still not block Broadcast, and Done
// closes once that write returns.
func TestHubSlowClientWithoutDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHubWithOptions[string](&sse.Options{QueueSize: 2})
		defer hub.Close()
		w := newFakeWriter()
		w.noDL = true
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		stuck, err := sse.UpgradeWithOptions(r.Context(), w, r, &sse.UpgradeOptions{Heartbeat: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer stuck.Close()
		hub.Register(stuck)
		others := fakeClients(t, hub, 2, &sse.UpgradeOptions{Heartbeat: -1})
		release := w.setBlock()

		for i := range 6 {
			start := time.Now()
			if err := hub.Broadcast(fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d != 0 {
				t.Errorf("broadcast %d took %v with a stuck client, want no wait", i, d)
			}
			synctest.Wait()
			time.Sleep(100 * time.Millisecond) // blocked once its write has run for 500 ms
		}
		want := ": connected\n\ndata: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\ndata: 5\n\n"
		for i, c := range others {
			if got := c.w.Body(); got != want {
				t.Errorf("client %d body = %q, want %q", i, got, want)
			}
		}
		if got := hub.Stats().SlowDisconnects; got != 1 {
			t.Errorf("SlowDisconnects = %d, want 1", got)
		}
		select {
		case <-stuck.Done():
			t.Fatal("Done closed while the stuck write still runs")
		default:
		}
		release()
		synctest.Wait()
		select {
		case <-stuck.Done():
		default:
			t.Fatal("Done not closed after the stuck write returned")
		}
	})
}

// Hub.ServeHTTP watches the request's context from the handler itself: a
// client that goes away ends its stream at once and is counted.
func TestHubServeHTTPClientGoesAway(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHub[string]()
		defer hub.Close()
		ctx, cancel := context.WithCancel(context.Background())
		w := newFakeWriter()
		done := serveIn(ctx, hub, w)
		synctest.Wait()
		if got := hub.Clients(); got != 1 {
			t.Fatalf("Clients() = %d, want 1", got)
		}
		cancel()
		expectClientGone(t, done, hub.Stats)
		if got := w.Body(); got != ": connected\n\n" {
			t.Errorf("body %q, want only the opening", got)
		}
	})
}

// Close writes what was broadcast before it, then ends every stream: the
// guide's "Close hub first (disconnects clients gracefully)".
func TestHubCloseWritesWhatWasBroadcast(t *testing.T) {
	hub := sse.NewHub[string]()
	srv, reg := hubServer(t, hub)
	streams, _ := connect(t, srv, reg, 5)
	for i := range 50 {
		if err := hub.Broadcast(fmt.Sprint("event ", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := hub.Broadcast("server shutting down"); err != nil {
		t.Fatal(err)
	}
	if err := hub.Close(); err != nil {
		t.Fatalf("Close = %v, want nil", err)
	}
	for _, s := range streams {
		for i := range 50 {
			s.expect(fmt.Sprintf("data: event %d\n\n", i))
		}
		s.expect("data: server shutting down\n\n")
		s.expectEOF()
	}
	if st := hub.Stats(); st.Delivered != 5*51 || st.ShutdownDisconnects != 5 || st.Clients != 0 {
		t.Errorf("Stats: delivered %d, shutdown disconnects %d, clients %d; want %d, 5, 0",
			st.Delivered, st.ShutdownDisconnects, st.Clients, 5*51)
	}
}

// Close does not wait for a client that stopped reading: once no write
// has finished for 100 ms, it ends the streams left.
func TestHubCloseDoesNotWaitForStuckClients(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHub[string]()
		cs := fakeClients(t, hub, 3, &sse.UpgradeOptions{Heartbeat: -1, WriteTimeout: time.Hour})
		release := cs[0].w.setBlock()
		defer release()
		if err := hub.Broadcast("a"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // client 0's write of "a" is blocked
		if err := hub.Broadcast("b"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := hub.Close(); err != nil {
			t.Fatalf("Close = %v, want nil", err)
		}
		if took := time.Since(start); took != 100*time.Millisecond {
			t.Errorf("Close took %v, want 100ms (no write finished meanwhile)", took)
		}
		for i, c := range cs {
			want := ": connected\n\ndata: a\n\ndata: b\n\n"
			if i == 0 {
				want = ": connected\n\n"
			}
			if got := c.w.Body(); got != want {
				t.Errorf("client %d: body %q, want %q", i, got, want)
			}
			if c.conn.Err() == nil {
				t.Errorf("client %d: stream still open after Close", i)
			}
		}
	})
}

// A hub sends its clients' heartbeats: a comment once a client has had no
// write for Options.Heartbeat, counted nowhere as an event.
func TestHubHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHub[string]()
		defer hub.Close()
		c := fakeClients(t, hub, 1, nil)[0] // the Conn sends none itself
		time.Sleep(10 * time.Second)
		if err := hub.Broadcast("x"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(14 * time.Second) // 24s: 14s after the last write
		synctest.Wait()
		if got, want := c.w.Body(), ": connected\n\ndata: x\n\n"; got != want {
			t.Fatalf("at 24s: body %q, want %q", got, want)
		}
		time.Sleep(time.Second) // 25s: 15s of silence
		synctest.Wait()
		if got, want := c.w.Body(), ": connected\n\ndata: x\n\n: keep-alive\n\n"; got != want {
			t.Fatalf("at 25s: body %q, want %q", got, want)
		}
		time.Sleep(15 * time.Second)
		synctest.Wait()
		if got, want := strings.Count(c.w.Body(), ": keep-alive\n\n"), 2; got != want {
			t.Fatalf("at 40s: %d heartbeats, want %d", got, want)
		}
		if st := hub.Stats(); st.Delivered != 1 || st.QueuedBytes != 0 {
			t.Errorf("Stats: delivered %d, queued %d bytes; want 1 (x), 0", st.Delivered, st.QueuedBytes)
		}

		// Unregistered, the stream gets no more heartbeats from the hub.
		hub.Unregister(c.conn)
		time.Sleep(time.Hour)
		synctest.Wait()
		if got, want := strings.Count(c.w.Body(), ": keep-alive\n\n"), 2; got != want {
			t.Errorf("an hour after Unregister: %d heartbeats, want still %d", got, want)
		}
	})
}

func TestHubHeartbeatOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		hub  *sse.Options
		conn *sse.UpgradeOptions
		wait time.Duration
		want int // heartbeats
	}{
		{"hub 5s", &sse.Options{Heartbeat: 5 * time.Second}, nil, 12 * time.Second, 2},
		{"hub off", &sse.Options{Heartbeat: -1}, nil, time.Hour, 0},
		// The Conn's own heartbeat, not one from each.
		{"conn's own", nil, &sse.UpgradeOptions{Heartbeat: 20 * time.Second}, 50 * time.Second, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				hub := sse.NewHubWithOptions[string](tc.hub)
				defer hub.Close()
				c := fakeClients(t, hub, 1, tc.conn)[0]
				time.Sleep(tc.wait)
				synctest.Wait()
				want := ": connected\n\n" + strings.Repeat(": keep-alive\n\n", tc.want)
				if got := c.w.Body(); got != want {
					t.Errorf("after %v: body %q, want %q", tc.wait, got, want)
				}
			})
		})
	}
}

// Hub.ServeHTTP streams get the hub's heartbeats too.
func TestHubServeHTTPHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHubWithOptions[string](&sse.Options{Heartbeat: 3 * time.Second})
		defer hub.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		w := newFakeWriter()
		serveIn(ctx, hub, w)
		time.Sleep(7 * time.Second)
		synctest.Wait()
		if got, want := w.Body(), ": connected\n\n: keep-alive\n\n: keep-alive\n\n"; got != want {
			t.Errorf("after 7s: body %q, want %q", got, want)
		}
	})
}

// A Conn may be registered with several hubs at once: each delivers its
// broadcasts, Unregister affects only its own hub, and a Conn that ends
// leaves every hub it is in.
func TestConnInSeveralHubs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hubs := []*sse.Hub[string]{sse.NewHub[string](), sse.NewHub[string](), sse.NewHub[string]()}
		w := newFakeWriter()
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		conn, err := sse.UpgradeWithOptions(r.Context(), w, r, &sse.UpgradeOptions{Heartbeat: -1})
		if err != nil {
			t.Fatal(err)
		}
		for i, h := range hubs {
			defer h.Close()
			if err := h.Register(conn); err != nil {
				t.Fatalf("hub %d: Register = %v", i, err)
			}
		}
		broadcastAll := func(tag string) {
			for i, h := range hubs {
				if err := h.Broadcast(fmt.Sprintf("%s%d", tag, i)); err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
			}
		}
		broadcastAll("a")
		hubs[0].Unregister(conn)
		broadcastAll("b")
		hubs[1].Unregister(conn)
		broadcastAll("c")
		if got, want := w.Body(), ": connected\n\ndata: a0\n\ndata: a1\n\ndata: a2\n\ndata: b1\n\ndata: b2\n\ndata: c2\n\n"; got != want {
			t.Errorf("body: got %q, want %q", got, want)
		}
		if err := hubs[1].Register(conn); err != nil { // back in hub 1
			t.Fatal(err)
		}
		conn.Close()
		for i, h := range hubs {
			if got := h.Clients(); got != 0 {
				t.Errorf("hub %d: Clients() = %d after the Conn closed, want 0", i, got)
			}
		}
	})
}

// A stream registered with a hub and left by its client (its request's
// context ends) is noticed by the hub's poll within 100 ms: the
// handler waiting on Done is woken, the stream leaves the hub, counted.
// Unregistered again, the stream is watched as a lone Conn is: it ends
// within 100 ms too.
func TestHubNoticesClientGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHub[string]()
		defer hub.Close()
		upgrade := func() (*sse.Conn, context.CancelFunc, <-chan struct{}) {
			ctx, cancel := context.WithCancel(context.Background())
			r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
			conn, err := sse.Upgrade(newFakeWriter(), r)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			if err := hub.Register(conn); err != nil {
				t.Fatal(err)
			}
			returned := make(chan struct{})
			go func() { <-conn.Done(); close(returned) }() // the guide's handler
			return conn, cancel, returned
		}

		_, cancel, returned := upgrade()
		time.Sleep(10 * time.Millisecond)
		cancel()
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		select {
		case <-returned:
		default:
			t.Fatal("handler still waiting 100ms after its client went away")
		}
		if st := hub.Stats(); st.Clients != 0 || st.ClientDisconnects != 1 {
			t.Errorf("Stats: %d clients, %d client disconnects; want 0, 1", st.Clients, st.ClientDisconnects)
		}

		conn, cancel, returned := upgrade()
		synctest.Wait() // the handler waits on Done
		hub.Unregister(conn)
		cancel()
		synctest.Wait()
		select {
		case <-returned:
			t.Fatal("unregistered: handler woken before its client was checked for")
		default:
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		select {
		case <-returned:
		default:
			t.Fatal("unregistered: handler still waiting 100ms after its client went away")
		}
	})
}

// TestHubZeroValue uses a Hub that was declared, not made: it works with
// the default options.
func TestHubZeroValue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var hub sse.Hub[string]
		w := fakeClients(t, &hub, 1, nil)[0].w // registers
		if err := hub.Broadcast("hi"); err != nil {
			t.Fatalf("Broadcast: got %v, want nil", err)
		}
		synctest.Wait()
		if got, want := w.Body(), ": connected\n\ndata: hi\n\n"; got != want {
			t.Errorf("body: got %q, want %q", got, want)
		}
		if got := hub.Stats(); got.Clients != 1 || got.Delivered != 1 {
			t.Errorf("Stats: got %d clients, %d delivered; want 1, 1", got.Clients, got.Delivered)
		}
		if err := hub.Close(); err != nil {
			t.Fatalf("Close: got %v, want nil", err)
		}
		if err := hub.Broadcast("late"); !errors.Is(err, sse.ErrHubClosed) {
			t.Errorf("Broadcast after Close: got %v, want ErrHubClosed", err)
		}
	})
}
