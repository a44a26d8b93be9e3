//go:build linux

package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// tcpPair returns the two ends of a loopback TCP connection; the server
// end gets a small send buffer, the client end a small receive buffer.
func tcpPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	server, client = loopbackPair(t)
	if err := server.SetWriteBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	if err := client.SetReadBuffer(4 << 10); err != nil {
		t.Fatal(err)
	}
	return server, client
}

// loopbackPair returns the two ends of a loopback TCP connection, with
// the system's buffers.
func loopbackPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return s.(*net.TCPConn), c.(*net.TCPConn)
}

func ownedFor(t *testing.T, nc *net.TCPConn) *ownedConn {
	t.Helper()
	raw, err := nc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return &ownedConn{nc: nc, tcp: nc, raw: raw}
}

// TestOwnedWriteStall checks that a write to a socket that does not drain
// calls stall, once, before it blocks, and that the chunk arrives whole
// and exact once the peer reads: what the non-blocking attempt wrote and
// what the blocking rest wrote join up.
func TestOwnedWriteStall(t *testing.T) {
	server, client := tcpPair(t)
	o := ownedFor(t, server)
	p := bytes.Repeat([]byte("0123456789abcdef"), 6<<10) // 96 KiB: more than both buffers hold
	stalls := 0
	stalled := make(chan struct{})
	got := make(chan []byte, 1)
	go func() {
		// Read only once the writer has stalled.
		<-stalled
		b, _ := io.ReadAll(client)
		got <- b
	}()
	_ = server.SetWriteDeadline(time.Now().Add(10 * time.Second)) // a write that never stalls fails, not hangs
	if err := o.write(p, func() {
		if stalls++; stalls == 1 {
			close(stalled)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if stalls != 1 {
		t.Errorf("stall calls: got %d, want 1", stalls)
	}
	server.Close()
	want := "18000\r\n" + string(p) + "\r\n"
	if b := <-got; string(b) != want {
		t.Errorf("the peer read %d bytes, not the chunk of %d written", len(b), len(want))
	}
}

// TestOwnedWriteNoStall checks a write that fits: no stall, exact bytes.
func TestOwnedWriteNoStall(t *testing.T) {
	server, client := tcpPair(t)
	o := ownedFor(t, server)
	if err := o.write([]byte("data: x\n\n"), func() { t.Error("stall called for a write that fits") }); err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	want := "9\r\ndata: x\n\n\r\n"
	b := make([]byte, len(want))
	if _, err := io.ReadFull(client, b); err != nil || string(b) != want {
		t.Fatalf("got %q, %v; want %q", b, err, want)
	}
}

// TestOwnedWriteStallDeadline checks that a stalled write still ends at
// its deadline, after stall was called.
func TestOwnedWriteStallDeadline(t *testing.T) {
	server, _ := tcpPair(t)
	o := ownedFor(t, server)
	stalls := 0
	_ = server.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	err := o.write([]byte(strings.Repeat("x", 1<<20)), func() { stalls++ })
	if !errors.Is(err, os.ErrDeadlineExceeded) || stalls != 1 {
		t.Fatalf("got %v after %d stall calls; want a deadline error after 1", err, stalls)
	}
}

// TestOwnedProbeStalledClient checks that a client that does not read is
// found behind, and its write handed off (stall), after a few probes
// rather than after its socket took all it holds, that the probes were
// exact pieces of the chunk, and that it must be proven again.
func TestOwnedProbeStalledClient(t *testing.T) {
	server, client := tcpPair(t)
	o := ownedFor(t, server)
	limitUnsent(o.raw)
	p := bytes.Repeat([]byte("0123456789abcdef"), 6<<10) // 96 KiB
	want := "18000\r\n" + string(p) + "\r\n"
	taken := -1 // bytes the socket took before stall
	stalled := make(chan struct{})
	got := make(chan []byte, 1)
	go func() {
		<-stalled
		b, _ := io.ReadAll(client)
		got <- b
	}()
	_ = server.SetWriteDeadline(time.Now().Add(10 * time.Second))
	err := o.write(p, func() {
		if taken < 0 {
			left := 0
			for _, b := range o.vec {
				left += len(b)
			}
			taken = len(want) - left
			close(stalled)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// The client's window (its 4 KiB buffer, doubled) takes what it
	// can, and probes stop once probeBytes wait unsent. Without them the
	// socket took its whole send buffer (32 KiB) on top.
	if taken < 0 || taken > 4*probeBytes {
		t.Errorf("the socket took %d bytes before stall; want at most %d", taken, 4*probeBytes)
	}
	if o.try.proven != 0 {
		t.Errorf("proven after a stalled write: got %d, want 0", o.try.proven)
	}
	server.Close()
	if b := <-got; string(b) != want {
		t.Errorf("the peer read %d bytes, not the chunk of %d written", len(b), len(want))
	}
}

// TestOwnedProbeReadingClient checks that a client that reads is proven
// by each probeBytes it takes, with no stall and exact bytes.
func TestOwnedProbeReadingClient(t *testing.T) {
	nc, client := loopbackPair(t)
	o := ownedFor(t, nc)
	var want strings.Builder
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	for i, size := range []int{100, 3000, 9000, 20000, 30000} {
		p := bytes.Repeat([]byte{byte('a' + i)}, size)
		if err := o.write(p, func() { t.Errorf("write %d of %d bytes: stall called for a client that reads", i, size) }); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&want, "%x\r\n%s\r\n", size, p)
		if wantProven := int32(min(provenBytes, want.Len()/probeBytes*probeBytes)); o.try.proven != wantProven {
			t.Errorf("after %d bytes: proven %d, want %d", want.Len(), o.try.proven, wantProven)
		}
	}
	nc.Close()
	if b := <-got; string(b) != want.String() {
		t.Errorf("the peer read %d bytes, want %d", len(b), want.Len())
	}
}

// TestLimitUnsent checks the socket option limitUnsent sets.
func TestLimitUnsent(t *testing.T) {
	server, _ := tcpPair(t)
	raw := ownedFor(t, server).raw
	limitUnsent(raw)
	var v int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpNotsentLowat)
	}); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if v != unsentLowat {
		t.Errorf("TCP_NOTSENT_LOWAT: got %d, want %d", v, unsentLowat)
	}
}

// TestOwnedFinishStalledClient ends gracefully the stream of a client
// that stopped reading just as its last write went through: the end of
// the body fits in the socket, but the FIN would wait behind data the
// client does not take, and leave the server's side open with it. That
// side must be reset instead, once the client's window stayed closed for
// endStall (the client learns of it once it reads).
func TestOwnedFinishStalledClient(t *testing.T) {
	server, client := tcpPair(t)
	o := ownedFor(t, server)
	p := bytes.Repeat([]byte("x"), 500)
	for i := 0; ; i++ {
		if i == 1000 {
			t.Fatal("the client's window never closed")
		}
		if err := o.write(p, func() { t.Fatal("a write stalled before the window closed") }); err != nil {
			t.Fatal(err)
		}
		if unsent, _, ok := o.askSocket(); ok && unsent > 0 {
			break // the client's window is full, and the socket holds more
		}
	}
	if _, ok := endStateOf(o.raw); !ok {
		t.Fatal("this kernel's TCP_INFO has no tcpi_snd_wnd (before Linux 5.4, or linux/386): a graceful end closes plainly here, and a client that stopped reading keeps the server's side open")
	}
	o.finish(false, time.Minute)
	var state byte
	var err error
	// Reset after endStall without progress: 0.5 to 0.75 s, with room
	// for a loaded machine's timers.
	WaitFor(1500*time.Millisecond, func() bool {
		state, err = PeerState(client)
		return err != nil || state == 0
	})
	if err != nil || state != 0 {
		t.Fatalf("TCP state of the server's side 1.5 s after the end: %d (%v), want it gone (reset)", state, err)
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, client); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reading after the end: %v, want a connection reset", err)
	}
}

// TestOwnedFinishReadingClient ends gracefully the stream of a client
// that reads, through a small window: it gets every byte, then the end of
// the chunked body, then EOF, and the server's side is closed normally
// (FIN_WAIT2 until the client closes its own), not reset.
func TestOwnedFinishReadingClient(t *testing.T) {
	for _, size := range []int{10, 100 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			server, client := tcpPair(t)
			o := ownedFor(t, server)
			p := bytes.Repeat([]byte("y"), size)
			got := make(chan []byte, 1)
			errc := make(chan error, 1)
			go func() {
				_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
				b, err := io.ReadAll(client)
				got <- b
				errc <- err
			}()
			_ = server.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := o.write(p, nil); err != nil {
				t.Fatal(err)
			}
			o.finish(false, time.Minute)
			want := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", size, p)
			if b, err := <-got, <-errc; err != nil || string(b) != want {
				t.Fatalf("client read %d bytes, then %v; want the %d of the body and its end, then EOF", len(b), err, len(want))
			}
			var state byte
			var err error
			WaitFor(2*time.Second, func() bool {
				state, err = PeerState(client)
				return err != nil || state != tcpFinWait1
			})
			if err != nil || state != tcpFinWait2 {
				t.Fatalf("TCP state of the server's side after the end: %d (%v), want %d (closed, its FIN acknowledged)", state, err, tcpFinWait2)
			}
			// And the server's socket is closed: once everything went out,
			// or the FIN was acknowledged, no later than the next look.
			if !WaitFor(2*endCheck, func() bool { return errors.Is(server.SetDeadline(time.Time{}), net.ErrClosed) }) {
				t.Fatal("the server's socket is still open")
			}
		})
	}
}

// tcpFinWait1 is the state of the server's side of a connection whose
// FIN the client has not acknowledged.
const tcpFinWait1 = 4

// TestTCPInfoLayout checks the offsets of the fields read from Linux's
// struct tcp_info (include/uapi/linux/tcp.h).
func TestTCPInfoLayout(t *testing.T) {
	var ti tcpInfo
	for _, f := range []struct {
		name      string
		got, want uintptr
	}{
		{"tcpi_state", unsafe.Offsetof(ti.state), 0},
		{"tcpi_rtt", unsafe.Offsetof(ti.rtt), 68},
		{"tcpi_bytes_acked", unsafe.Offsetof(ti.bytesAcked), 120},
		{"tcpi_notsent_bytes", unsafe.Offsetof(ti.notsent), 144},
		{"tcpi_snd_wnd", unsafe.Offsetof(ti.sndWnd), 228},
		{"size", unsafe.Sizeof(ti), 232},
	} {
		if f.got != f.want {
			t.Errorf("%s at %d, want %d", f.name, f.got, f.want)
		}
	}
}
