package sse

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection; the server
// end gets a small send buffer.
func tcpPair(t *testing.T) (server, client *net.TCPConn) {
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
	server, client = s.(*net.TCPConn), c.(*net.TCPConn)
	if err := server.SetWriteBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	if err := client.SetReadBuffer(4 << 10); err != nil {
		t.Fatal(err)
	}
	return server, client
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
