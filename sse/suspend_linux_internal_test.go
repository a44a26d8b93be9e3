//go:build linux

package sse

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestSuspendedWrites has clients with 4 KiB receive buffers stop
// reading while a Hub writes to them: their writes are suspended, not
// handed to goroutines of their own, so once each has a write suspended
// no writer is left running and the process has no goroutine per
// client. When they read again (the connection watch tells each write
// its socket has room), each gets the whole stream, exact, in order,
// once: what its suspended writes kept, and what came meanwhile.
func TestSuspendedWrites(t *testing.T) {
	const clients, events = 20, 300
	hub := NewHubWithOptions[string](&Options{QueueSize: 4 * events})
	t.Cleanup(func() { hub.Close() })
	srv := httptest.NewServer(hub)
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	type stream struct {
		read func(n int) (string, error)
	}
	streams := make([]stream, clients)
	for i := range streams {
		nc, br := dialWithBuffer(t, addr, 4<<10, true)
		streams[i].read = func(n int) (string, error) {
			_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
			return readChunks(br, n)
		}
	}
	if !WaitFor(5*time.Second, func() bool { return hub.Clients() == clients }) {
		t.Fatalf("clients: %d, want %d", hub.Clients(), clients)
	}
	base := runtime.NumGoroutine()
	data := strings.Repeat("x", 1000)
	var want strings.Builder
	want.WriteString(": connected\n\n")
	for i := range events {
		msg := fmt.Sprintf("%04d %s", i, data)
		fmt.Fprintf(&want, "data: %s\n\n", msg)
		if err := hub.Broadcast(msg); err != nil {
			t.Fatal(err)
		}
	}
	// Every client stopped reading with events left to write: each has
	// its write suspended, and no writer runs.
	if !WaitFor(10*time.Second, func() bool {
		return hub.Stats().StalledWrites >= clients && hub.core.Inspect().Writers == 0
	}) {
		t.Fatalf("stalled writes %d, writers %d; want at least %d, and none", hub.Stats().StalledWrites, hub.core.Inspect().Writers, clients)
	}
	if g := runtime.NumGoroutine(); g > base+clients/2 {
		t.Errorf("goroutines with %d writes suspended: %d, against %d before; want no goroutine per client", clients, g, base)
	}
	var wg sync.WaitGroup
	got := make([]string, clients)
	errs := make([]error, clients)
	for i, s := range streams {
		wg.Go(func() { got[i], errs[i] = s.read(want.Len()) })
	}
	wg.Wait()
	for i := range streams {
		if errs[i] != nil || got[i] != want.String() {
			t.Fatalf("client %d: read %d bytes (%v), want the %d of every event, in order, once", i, len(got[i]), errs[i], want.Len())
		}
	}
	if st := hub.Stats(); st.Clients != clients || st.SlowDisconnects+st.ClientDisconnects+st.BudgetDisconnects != 0 {
		t.Errorf("Stats: %d clients, %d slow, %d client, %d budget disconnects; want %d, none", st.Clients, st.SlowDisconnects, st.ClientDisconnects, st.BudgetDisconnects, clients)
	}
}

// TestSuspendedWriteEnds: a stream whose write is suspended ends as one
// whose write blocks: at the write's deadline (the stream's error says
// so, and the connection is reset), when the client leaves, and on
// Close, each counted, its handler returning.
func TestSuspendedWriteEnds(t *testing.T) {
	for _, tt := range []struct {
		name    string
		end     func(t *testing.T, hub *Hub[string], client io.Closer)
		wantErr string
	}{
		{"write deadline", func(*testing.T, *Hub[string], io.Closer) {}, "write: writev tcp "},
		{"client leaves", func(_ *testing.T, _ *Hub[string], client io.Closer) { client.Close() }, "client went away"},
		{"Close", func(t *testing.T, hub *Hub[string], _ io.Closer) {
			start := time.Now()
			hub.Close()
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Close took %v", d)
			}
		}, ErrHubClosed.Error()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			timeout := time.Hour
			if tt.name == "write deadline" {
				timeout = 300 * time.Millisecond
			}
			ended := make(chan error, 1)
			hub := NewHubWithOptions[string](&Options{QueueSize: 1000, WriteTimeout: timeout,
				OnStreamEnd: func(_ *http.Request, err error) { ended <- err }})
			t.Cleanup(func() { hub.Close() })
			srv := httptest.NewServer(hub)
			t.Cleanup(srv.Close)
			nc, _ := dialWithBuffer(t, srv.Listener.Addr().String(), 4<<10, true)
			if !WaitFor(5*time.Second, func() bool { return hub.Clients() == 1 }) {
				t.Fatal("the stream was not registered")
			}
			fillSuspended(t, hub)
			tt.end(t, hub, nc)
			select {
			case err := <-ended:
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("the stream ended with %v, want an error saying %q", err, tt.wantErr)
				}
				if tt.name == "write deadline" && !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("the stream ended with %v, want one matching os.ErrDeadlineExceeded", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the stream did not end")
			}
			if tt.name == "write deadline" {
				// Reset, not closed after the unread data.
				_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err := io.Copy(io.Discard, nc)
				if !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("reading the rest: %v, want a connection reset", err)
				}
			}
			if !WaitFor(5*time.Second, func() bool { return hub.core.Inspect().Writers == 0 }) {
				t.Errorf("writers left: %d", hub.core.Inspect().Writers)
			}
		})
	}
}

// TestSuspendedWriteClosedResets: a stream closed (not dropped) while a
// write to it is suspended in the middle of a chunk is reset: ending the
// body there would have the client read the body's last chunk as part
// of an event.
func TestSuspendedWriteClosedResets(t *testing.T) {
	hub := NewHubWithOptions[string](&Options{QueueSize: 1000})
	t.Cleanup(func() { hub.Close() })
	conns := make(chan *Conn, 1)
	srv := hubServer(t, hub, func(conn *Conn) {
		defer hub.Unregister(conn)
		conns <- conn
		<-conn.Done()
	})
	nc, br := dialWithBuffer(t, srv.Listener.Addr().String(), 4<<10, true)
	conn := <-conns
	fillSuspended(t, hub)
	conn.Close()
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := readChunks(br, 1<<30)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("reading after the close: %d bytes, then %v; want whole chunks, then a connection reset", len(got), err)
	}
}

// fillEvents are the events fillSuspended broadcasts: fillEvent(i) for i
// from 0.
const fillEvents = 200

// fillEvent is the i-th event fillSuspended broadcasts: 1 000 bytes, its
// number first.
func fillEvent(i int) string { return fmt.Sprintf("%03d %s", i, strings.Repeat("x", 996)) }

// fillSuspended broadcasts more than the hub's one client, which does
// not read, can take, and waits until its write is suspended: no writer
// runs.
func fillSuspended(t *testing.T, hub *Hub[string]) {
	t.Helper()
	for i := range fillEvents {
		if err := hub.Broadcast(fillEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if !WaitFor(5*time.Second, func() bool { return hub.Stats().StalledWrites >= 1 && hub.core.Inspect().Writers == 0 }) {
		t.Fatalf("stalled writes %d, writers %d; want a write suspended", hub.Stats().StalledWrites, hub.core.Inspect().Writers)
	}
}

// TestSharedStreamNotSuspended: a stream registered in two hubs that
// stops reading is not suspended (another hub's writer would wait on a
// write no goroutine carries): both hubs go on writing to it once it
// reads again, each hub's events in order, once, and no writer is left.
func TestSharedStreamNotSuspended(t *testing.T) {
	const events = 150
	a := NewHubWithOptions[string](&Options{QueueSize: 4 * events})
	b := NewHubWithOptions[string](&Options{QueueSize: 4 * events})
	t.Cleanup(func() { a.Close(); b.Close() })
	conns := make(chan *Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := Upgrade(w, r)
		if err != nil {
			return
		}
		conns <- conn
		for _, h := range []*Hub[string]{a, b} {
			if err := h.Register(conn); err != nil {
				return
			}
			defer h.Unregister(conn)
		}
		<-conn.Done()
	}))
	t.Cleanup(srv.Close)
	nc, br := dialWithBuffer(t, srv.Listener.Addr().String(), 4<<10, true)
	if !WaitFor(5*time.Second, func() bool { return a.Clients() == 1 && b.Clients() == 1 }) {
		t.Fatal("the stream was not registered in both hubs")
	}
	data := strings.Repeat("x", 1000)
	for i := range events {
		if err := a.Broadcast(fmt.Sprintf("a%03d %s", i, data)); err != nil {
			t.Fatal(err)
		}
		if err := b.Broadcast(fmt.Sprintf("b%03d %s", i, data)); err != nil {
			t.Fatal(err)
		}
	}
	// A write blocked: handed off, not suspended.
	conn := <-conns
	if !WaitFor(5*time.Second, func() bool { return a.Stats().StalledWrites+b.Stats().StalledWrites >= 1 }) {
		t.Fatal("no write stalled")
	}
	conn.mu.Lock()
	o := conn.own.Load()
	suspended := o != nil && o.resumer != nil
	conn.mu.Unlock()
	if o == nil || suspended {
		t.Fatalf("taken over %v, a write suspended %v; want taken, none suspended", o != nil, suspended)
	}
	want := len(": connected\n\n") + 2*events*len(fmt.Sprintf("data: a000 %s\n\n", data))
	_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := readChunks(br, want)
	if err != nil || len(got) != want {
		t.Fatalf("read %d bytes (%v), want %d", len(got), err, want)
	}
	next := map[byte]int{'a': 0, 'b': 0}
	for _, ev := range strings.Split(strings.TrimSuffix(strings.TrimPrefix(got, ": connected\n\n"), "\n\n"), "\n\n") {
		var hub byte
		var i int
		if _, err := fmt.Sscanf(ev, "data: %c%03d", &hub, &i); err != nil || i != next[hub] {
			t.Fatalf("event %.12q: want %c%03d next", ev, hub, next[hub])
		}
		next[hub]++
	}
	if next['a'] != events || next['b'] != events {
		t.Errorf("got %d of a's and %d of b's events, want %d each", next['a'], next['b'], events)
	}
	if !WaitFor(5*time.Second, func() bool { return a.core.Inspect().Writers == 0 && b.core.Inspect().Writers == 0 }) {
		t.Errorf("writers left: %d and %d", a.core.Inspect().Writers, b.core.Inspect().Writers)
	}
}

// TestSuspendedWriteUnregistered: a stream unregistered while a write to
// it is suspended gets, once its client reads again, the events that
// write had taken, whole and in order, and nothing the hub queued for it
// after; then what its handler sends itself once Unregister returned,
// which waits for that write. No writer of the hub is left.
func TestSuspendedWriteUnregistered(t *testing.T) {
	hub := NewHubWithOptions[string](&Options{QueueSize: 1000})
	t.Cleanup(func() { hub.Close() })
	conns := make(chan *Conn, 1)
	unregister := make(chan struct{})
	sent := make(chan error, 1)
	srv := hubServer(t, hub, func(conn *Conn) {
		conns <- conn
		<-unregister
		hub.Unregister(conn)
		sent <- conn.SendData("after")
	})
	nc, br := dialWithBuffer(t, srv.Listener.Addr().String(), 4<<10, true)
	<-conns
	fillSuspended(t, hub)
	close(unregister)
	if !WaitFor(5*time.Second, func() bool { return hub.Clients() == 0 }) {
		t.Fatal("the stream is still registered")
	}
	if err := hub.Broadcast("late"); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := readChunks(br, 1<<30)
	if err != io.EOF {
		t.Fatalf("reading the stream: %d bytes, then %v; want the whole response", len(got), err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("SendData after Unregister: %v", err)
	}
	rest, ok := strings.CutPrefix(got, ": connected\n\n")
	if ok {
		rest, ok = strings.CutSuffix(rest, "data: after\n\n")
	}
	if !ok {
		t.Fatalf("stream %.40q...%.40q: want the opening comment first and the handler's event last", got, got[max(0, len(got)-40):])
	}
	n := 0
	for ; strings.HasPrefix(rest, "data: "); n++ {
		ev := "data: " + fillEvent(n) + "\n\n"
		if !strings.HasPrefix(rest, ev) {
			t.Fatalf("event %d: got %.20q, want %.20q", n, rest, ev)
		}
		rest = rest[len(ev):]
	}
	if rest != "" || n == 0 {
		t.Fatalf("got %d events, then %.40q; want at least the first of those broadcast before Unregister, then nothing", n, rest)
	}
	if w := hub.core.Inspect().Writers; w != 0 {
		t.Errorf("writers left: %d", w)
	}
}
