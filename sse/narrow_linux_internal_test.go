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
// sink.narrow): a small receive window before the first write, falling
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

// fakeSink is a sink that only says whether it is narrow.
type fakeSink struct {
	sink
	isNarrow bool
}

func (f *fakeSink) narrow() bool { return f.isNarrow }

// TestPoolServesNarrowLast checks the order in which the writers take
// waiting clients: those with room first, in the order they came, and a
// narrow one every narrowTurn turns while others wait, then the narrow
// ones in order.
func TestPoolServesNarrowLast(t *testing.T) {
	p := &writerPool{} // limit 0: no worker starts, next is called here
	var cs []*client
	var names []string
	name := map[*client]string{}
	for i := range 12 {
		c := &client{conn: &fakeSink{isNarrow: i%3 == 0}}
		n := fmt.Sprintf("r%d", i)
		if i%3 == 0 {
			n = fmt.Sprintf("n%d", i)
		}
		name[c] = n
		cs = append(cs, c)
	}
	p.push(cs[:6])
	for _, c := range cs[6:] {
		p.pushOne(c)
	}
	for c := p.next(false); c != nil; c = p.next(true) {
		names = append(names, name[c])
	}
	// r: 1 2 4 5 7 8 10 11; n: 0 3 6 9.
	want := "r1 r2 r4 r5 r7 r8 r10 n0 r11 n3 n6 n9"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("order: got %s, want %s", got, want)
	}
	if p.ready.len() != 0 || p.narrow.len() != 0 || p.busy != 0 {
		t.Errorf("after all were taken: ready %d, narrow %d, busy %d; want 0, 0, 0", p.ready.len(), p.narrow.len(), p.busy)
	}
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

// narrowAndRoomy registers two streams with hub, over loopback: one from
// a client with a 4 KiB receive buffer (narrow), one with the system's;
// it returns each with the reader of its client, past the response head.
func narrowAndRoomy(t *testing.T, hub *Hub[string]) (narrowConn *Conn, narrowBR *bufio.Reader, roomyConn *Conn, roomyBR *bufio.Reader) {
	t.Helper()
	conns := make(chan *Conn, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := Upgrade(w, r)
		if err != nil {
			return
		}
		if err := hub.Register(conn); err != nil {
			return
		}
		conns <- conn
		<-conn.Done()
	}))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	_, narrowBR = dialWithBuffer(t, addr, 4<<10, true)
	narrowConn = <-conns
	_, roomyBR = dialWithBuffer(t, addr, 0, true)
	roomyConn = <-conns
	if !narrowConn.narrow() || roomyConn.narrow() {
		t.Fatalf("narrow: got %v and %v, want true and false", narrowConn.narrow(), roomyConn.narrow())
	}
	return narrowConn, narrowBR, roomyConn, roomyBR
}

// TestNarrowClientParksEarly checks that a narrow client waiting for a
// writer is parked after parkNarrow events, where one with room keeps
// its queue, and that both then get every event, in order, once.
func TestNarrowClientParksEarly(t *testing.T) {
	hub := NewHub[string]()
	t.Cleanup(func() { hub.Close() })
	narrowConn, narrowBR, roomyConn, roomyBR := narrowAndRoomy(t, hub)
	// Writes in progress hold the write locks: both wait for a writer.
	narrowConn.lockWrite()
	roomyConn.lockWrite()
	const events = parkNarrow + 3
	var want strings.Builder
	want.WriteString(": connected\n\n")
	for i := range events {
		d := fmt.Sprintf("e%d", i)
		if err := hub.Broadcast(d); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&want, "data: %s\n\n", d)
	}
	h := hub.core
	h.mu.Lock()
	nc, rc := h.bySink[narrowConn], h.bySink[roomyConn]
	nc.mu.Lock()
	nParked, nQueued := nc.parked.Load(), len(nc.queue)
	nc.mu.Unlock()
	rc.mu.Lock()
	rParked, rQueued := rc.parked.Load(), len(rc.queue)
	rc.mu.Unlock()
	h.mu.Unlock()
	if !nParked || nQueued != parkNarrow {
		t.Errorf("narrow client: parked %v with %d queued, want true with %d", nParked, nQueued, parkNarrow)
	}
	if rParked || rQueued != events {
		t.Errorf("roomy client: parked %v with %d queued, want false with %d", rParked, rQueued, events)
	}
	narrowConn.unlockWrite()
	roomyConn.unlockWrite()
	for _, br := range []*bufio.Reader{narrowBR, roomyBR} {
		// The events come in one chunk or several, as the writers
		// gathered them: compare what the chunks carry.
		got, err := readChunks(br, len(want.String()))
		if err != nil {
			t.Fatal(err)
		}
		if got != want.String() {
			t.Errorf("got %q, want %q", got, want.String())
		}
	}
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

// TestNarrowClientTakesLittleFromLog checks that a parked narrow client's
// writer takes at most narrowWrite bytes of events from the log at a
// time, where one with room takes maxWrite, and that both then get every
// event, in order, once.
func TestNarrowClientTakesLittleFromLog(t *testing.T) {
	hub := NewHub[string]()
	t.Cleanup(func() { hub.Close() })
	narrowConn, narrowBR, roomyConn, roomyBR := narrowAndRoomy(t, hub)
	h := hub.core
	// Writes in progress hold the write locks: both wait for a writer,
	// and are parked once they have parkNarrow and parkAfter events
	// queued.
	narrowConn.lockWrite()
	roomyConn.lockWrite()
	const events = 200
	data := strings.Repeat("x", 1000)
	var want strings.Builder
	want.WriteString(": connected\n\n")
	for range events {
		if err := hub.Broadcast(data); err != nil {
			t.Fatal(err)
		}
		want.WriteString("data: " + data + "\n\n")
	}
	size := len("data: \n\n") + len(data)
	for _, tc := range []struct {
		conn   *Conn
		queued int
		limit  int
	}{{narrowConn, parkNarrow, narrowWrite}, {roomyConn, parkAfter, maxWrite}} {
		h.mu.Lock()
		c := h.bySink[tc.conn]
		c.mu.Lock()
		if !c.parked.Load() || len(c.queue) != tc.queued {
			t.Errorf("narrow %v: parked %v with %d queued, want true with %d", tc.conn.narrow(), c.parked.Load(), len(c.queue), tc.queued)
		}
		// What its writer does first once the write lock is free.
		h.unparkLocked(c, true)
		if got, want := len(c.queue)-tc.queued, tc.limit/size; got != want {
			t.Errorf("narrow %v: took %d events of %d bytes from the log, want %d", tc.conn.narrow(), got, size, want)
		}
		c.mu.Unlock()
		h.mu.Unlock()
		tc.conn.unlockWrite()
	}
	for _, br := range []*bufio.Reader{narrowBR, roomyBR} {
		got, err := readChunks(br, want.Len())
		if err != nil {
			t.Fatal(err)
		}
		if got != want.String() {
			t.Errorf("got %d bytes, want %d (every event, once, in order)", len(got), want.Len())
		}
	}
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

// TestClientQueueStaysSmall checks that a queue that never empties, one
// in, one out, keeps its order and does not grow with every push.
func TestClientQueueStaysSmall(t *testing.T) {
	var q clientQueue
	cs := make([]*client, 10)
	for i := range cs {
		cs[i] = &client{index: int32(i)}
		q.items = append(q.items, cs[i])
	}
	for i := range 100000 {
		c := cs[i%len(cs)]
		q.items = append(q.items, c)
		if got := q.pop(); got != c {
			t.Fatalf("pop %d: got client %d, want %d", i, got.index, c.index)
		}
	}
	if q.len() != len(cs) || cap(q.items) > 256 {
		t.Errorf("after 100 000 pushes and pops: %d queued, capacity %d; want %d, at most 256", q.len(), cap(q.items), len(cs))
	}
}
