//go:build linux

package sse

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOwnedNarrow checks what makes a taken connection narrow (see
// connSink.Narrow): a small receive window before the first write, falling
// behind; and what makes it roomy again: being proven.
func TestOwnedNarrow(t *testing.T) {
	t.Run("small window", func(t *testing.T) {
		server := smallWindowServer(t)
		o := ownedFor(t, server)
		o.sizeUp()
		if !o.narrow.Load() {
			t.Error("narrow after sizeUp: got false, want true")
		}
	})
	t.Run("behind, then caught up", func(t *testing.T) {
		server, client := loopbackPair(t) // the system's buffers
		o := ownedFor(t, server)
		limitUnsent(o.raw)
		o.sizeUp()
		if o.narrow.Load() {
			t.Fatal("narrow after sizeUp with the system's buffers: got true, want false")
		}
		p := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB: more than the client's window
		want := fmt.Sprintf("%x\r\n%s\r\n", len(p), p)
		stalled := make(chan struct{})
		got := make(chan string, 1)
		go func() {
			<-stalled
			b := make([]byte, len(want))
			_, err := io.ReadFull(client, b)
			if err != nil {
				got <- err.Error()
				return
			}
			got <- string(b)
		}()
		_ = server.SetWriteDeadline(time.Now().Add(10 * time.Second))
		narrowAtStall := false
		err := o.write(p, func() {
			narrowAtStall = o.narrow.Load()
			close(stalled)
		})
		if err != nil {
			t.Fatal(err)
		}
		if !narrowAtStall {
			t.Error("narrow when its write stalled: got false, want true")
		}
		// It took the rest: it reads, and waits with the others again.
		if o.narrow.Load() {
			t.Error("narrow once the rest of the stalled write went through: got true, want false")
		}
		if b := <-got; b != want {
			t.Fatalf("the client read %d bytes, not the chunk of %d written", len(b), len(want))
		}
		// Its window is open again: the probes find nothing unsent, and
		// it is proven again.
		q := bytes.Repeat([]byte("x"), provenBytes)
		if err := o.write(q, func() { t.Error("stall called for a client with an open window") }); err != nil {
			t.Fatal(err)
		}
		if o.narrow.Load() || o.try.proven != provenBytes {
			t.Errorf("after a proof: narrow %v, proven %d; want false, %d", o.narrow.Load(), o.try.proven, provenBytes)
		}
		wantQ := fmt.Sprintf("%x\r\n%s\r\n", len(q), q)
		b := make([]byte, len(wantQ))
		if _, err := io.ReadFull(client, b); err != nil || string(b) != wantQ {
			t.Errorf("the client read %d bytes (%v), not the chunk of %d written", len(b), err, len(wantQ))
		}
	})
}

// smallWindowServer returns the server end of a loopback TCP connection
// whose client asked for a 4 KiB receive buffer before connecting.
func smallWindowServer(t *testing.T) *net.TCPConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, _ := dialWithBuffer(t, ln.Addr().String(), 4<<10, false)
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return s.(*net.TCPConn)
}

// dialWithBuffer connects to addr from a client whose receive buffer is
// rcvbuf bytes (0: the system's). With stream, it opens a stream and
// returns the connection with its reader past the response head.
func dialWithBuffer(t *testing.T, addr string, rcvbuf int, stream bool) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf) }); err != nil {
				return err
			}
			return serr
		}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if !stream {
		return nc, nil
	}
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", addr); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the head: %v", err)
		}
		if line == "\r\n" {
			return nc, br
		}
	}
}

// TestHubSeesNarrowClients registers two streams with a hub, over
// loopback: one from a client with a 4 KiB receive buffer, which the
// engine must see as narrow, one with the system's, which it must not.
// While writes to both are in progress, a few events park the narrow
// one only (internal/fanout/park.go); both then get every event, in
// order, once.
func TestHubSeesNarrowClients(t *testing.T) {
	hub := NewHub[string]()
	t.Cleanup(func() { hub.Close() })
	conns := make(chan *Conn, 2)
	srv := hubServer(t, hub, func(conn *Conn) {
		conns <- conn
		<-conn.Done()
	})
	addr := srv.Listener.Addr().String()
	_, narrowBR := dialWithBuffer(t, addr, 4<<10, true)
	narrowConn := <-conns
	_, roomyBR := dialWithBuffer(t, addr, 0, true)
	roomyConn := <-conns
	if n, r := sinkOf(narrowConn).Narrow(), sinkOf(roomyConn).Narrow(); !n || r {
		t.Fatalf("narrow: got %v and %v, want true and false", n, r)
	}
	// Writes in progress hold the write locks: both wait for a writer.
	sinkOf(narrowConn).LockWrite()
	sinkOf(roomyConn).LockWrite()
	want := ": connected\n\n"
	for i := range 5 {
		d := fmt.Sprintf("e%d", i)
		if err := hub.Broadcast(d); err != nil {
			t.Fatal(err)
		}
		want += "data: " + d + "\n\n"
	}
	if in := hub.engine().Inspect(); in.Clients != 2 || in.Parked != 1 {
		t.Errorf("after 5 events: %d clients, %d parked; want 2, 1 (the narrow one)", in.Clients, in.Parked)
	}
	sinkOf(narrowConn).UnlockWrite()
	sinkOf(roomyConn).UnlockWrite()
	for _, br := range []*bufio.Reader{narrowBR, roomyBR} {
		// The events come in one chunk or several, as the writers
		// gathered them: compare what the chunks carry.
		got, err := readChunks(br, len(want))
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

// hubServer serves hub with handlers that upgrade each request and
// register its Conn, then call then with it; a handler returns when then
// does.
func hubServer(t *testing.T, hub *Hub[string], then func(conn *Conn)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := Upgrade(w, r)
		if err != nil {
			return
		}
		if err := hub.Register(conn); err != nil {
			return
		}
		then(conn)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// readChunks reads chunks of a chunked body from br until they carried n
// bytes, and returns those bytes.
func readChunks(br *bufio.Reader, n int) (string, error) {
	var b strings.Builder
	for b.Len() < n {
		line, err := br.ReadString('\n')
		if err != nil {
			return b.String(), err
		}
		var size int
		if _, err := fmt.Sscanf(line, "%x\r\n", &size); err != nil {
			return b.String(), fmt.Errorf("chunk header %q: %v", line, err)
		}
		p := make([]byte, size+2)
		if _, err := io.ReadFull(br, p); err != nil {
			return b.String(), err
		}
		if string(p[size:]) != "\r\n" {
			return b.String(), fmt.Errorf("chunk of %d bytes ends with %q, want CRLF", size, p[size:])
		}
		b.Write(p[:size])
	}
	return b.String(), nil
}

// TestNarrowStaysWithoutReading checks that a client with a small window
// that reads nothing stays narrow when a stalled write to it goes
// through: the rest may only have fit under TCP_NOTSENT_LOWAT.
func TestNarrowStaysWithoutReading(t *testing.T) {
	through := 0 // stalled writes that went through: the case at stake
	for _, size := range []int{300, 1000, 1500, 2000, 3000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			server := smallWindowServer(t)
			_ = server.SetWriteBuffer(defaultSendBuffer)
			o := ownedFor(t, server)
			limitUnsent(o.raw)
			o.sizeUp()
			if !o.narrow.Load() {
				t.Fatal("narrow after sizeUp: got false, want true")
			}
			ev := bytes.Repeat([]byte("x"), size)
			for i := range 200 {
				stalled := false
				_ = server.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
				if err := o.write(ev, func() { stalled = true }); err != nil {
					return // the deadline: the socket is full
				}
				if stalled {
					through++
					if !o.narrow.Load() {
						t.Fatalf("event %d: its write stalled and went through, and it is no longer narrow; the client read nothing", i)
					}
				}
			}
			t.Fatal("200 events went into a socket whose client reads nothing")
		})
	}
	if through == 0 {
		t.Error("no stalled write went through for any event size: nothing was checked")
	}
}

// TestServerFilteredStalledParks checks, over loopback, that a Server
// client with a Filter that stops reading is parked like one without
// (its subscribers would otherwise cost every publish a visit and a
// queue entry each), while a client beside it gets every event, in
// order, once.
func TestServerFilteredStalledParks(t *testing.T) {
	s := &Server{Filter: func(*http.Request) func(*Message) bool {
		return func(m *Message) bool { return m.Event.Type != "skip" }
	}}
	t.Cleanup(func() { s.Close() })
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	dialWithBuffer(t, addr, 4<<10, true) // never read
	_, br := dialWithBuffer(t, addr, 0, true)
	if !WaitFor(5*time.Second, func() bool { return s.Clients() == 2 }) {
		t.Fatalf("clients: %d, want 2", s.Clients())
	}
	data := strings.Repeat("x", 1000)
	var want strings.Builder
	want.WriteString(": connected\n\n")
	for i := range 200 {
		if i%10 != 9 {
			fmt.Fprintf(&want, "id: %d\ndata: %s\n\n", i+1, data) // MemoryBroker's IDs
		}
	}
	type result struct {
		got string
		err error
	}
	read := make(chan result, 1)
	go func() {
		got, err := readChunks(br, want.Len())
		read <- result{got, err}
	}()
	for i := range 200 {
		ev := NewEvent(data)
		if i%10 == 9 {
			ev.WithType("skip")
		}
		if _, err := s.Publish(t.Context(), "", ev); err != nil {
			t.Fatal(err)
		}
	}
	r := <-read
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.got != want.String() {
		t.Errorf("reading client: got %d bytes, want %d (every event that passes, once, in order)", len(r.got), want.Len())
	}
	// The reader has everything: only the client that stopped is parked.
	if !WaitFor(5*time.Second, func() bool { return s.core.Inspect().Parked == 1 }) {
		t.Errorf("parked clients: %d, want 1 (the one that stopped reading)", s.core.Inspect().Parked)
	}
}
