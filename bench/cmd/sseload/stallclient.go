package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Stalled clients connect, send their request and never read. They live
// in child processes of the driver (this binary started with
// -stall-clients=K), at most stallPerProcess each, so that no process
// needs more than about 5 000 descriptors for them.
//
// A child watches each of its sockets without reading it: it waits for
// the socket to become readable (the netpoller reports new data, a FIN
// or a reset) and then looks at the connection's TCP state; the first
// state other than ESTABLISHED is the moment the client saw the server
// end the connection. Nothing is ever read, so the receive window stays
// as full as the server made it.

const (
	stallPerProcess = 5000
	stallReadyLine  = "sseload: stalled clients ready "
	stallReportLine = "sseload: stalled clients report "
	// stallHeaderEnv passes a child the header lines of its requests
	// (a subscriber token for ssehub), kept off its command line.
	stallHeaderEnv = "SSELOAD_STALL_HEADER"
)

// stallClientRecord is what a child reports of one stalled connection.
type stallClientRecord struct {
	ID       int    `json:"id"`
	ClosedNS int64  `json:"closed_ns,omitempty"` // unix ns when it left ESTABLISHED; 0: never
	FullNS   int64  `json:"full_ns,omitempty"`   // unix ns the last bytes arrived: from then on the socket was full
	Queued   int    `json:"queued"`              // bytes in its receive queue when reported
	State    string `json:"state"`               // TCP state when reported
}

// stalledPath is the stream request of stalled client id; the server
// process notes when each such stream starts and ends.
func stalledPath(id int) string { return eventsPath + "&role=stalled&id=" + strconv.Itoa(id) }

// stallConn is one stalled client connection in a child process.
type stallConn struct {
	id   int
	conn *net.TCPConn
	seen watched // set by the watcher
}

// runStallClients is the child process: it connects cfg.stallClients
// stalled clients to cfg.target, prints the ready line, and when the
// driver writes a line to stdin (or stdin closes, or cfg.timeout
// passes) prints one report line and exits, resetting every connection.
func runStallClients(ctx context.Context, cfg *config, stdin io.Reader, stdout io.Writer) error {
	conns := make([]*stallConn, cfg.stallClients)
	for i := range conns {
		conns[i] = &stallConn{id: cfg.stallIDBase + i}
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	err := dialStalled(cctx, cfg.target, cfg.stallPath, os.Getenv(stallHeaderEnv), cfg.rcvbuf, conns)
	cancel()
	defer func() {
		for _, c := range conns {
			if c.conn != nil {
				_ = c.conn.SetLinger(0)
				c.conn.Close()
			}
		}
	}()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.seen = watchClose(c.conn) // read after wg.Wait
		}()
	}
	fmt.Fprintf(stdout, "%s%d\n", stallReadyLine, len(conns))

	asked := make(chan struct{})
	go func() {
		_, _ = bufio.NewReader(stdin).ReadString('\n')
		close(asked)
	}()
	select {
	case <-asked:
	case <-ctx.Done():
	case <-time.After(cfg.timeout):
	}
	// Stop the watchers: a deadline in the past wakes each one.
	for _, c := range conns {
		_ = c.conn.SetReadDeadline(time.Unix(1, 0))
	}
	wg.Wait()
	recs := make([]stallClientRecord, len(conns))
	for i, c := range conns {
		recs[i] = stallClientRecord{ID: c.id, ClosedNS: c.seen.closedNS, FullNS: c.seen.lastDataNS}
		recs[i].State, recs[i].Queued = connState(c.conn)
	}
	b, err := json.Marshal(recs)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s%s\n", stallReportLine, b)
	return err
}

// dialStalled connects every conn to addr with a receive buffer of
// rcvbuf bytes (0: the system's default), set before connecting so that
// the window offered in the handshake is already small, and sends the
// stream request: GET path (stalledPath of the client's id when path is
// ""), with header lines hdr (each ending in CRLF).
func dialStalled(ctx context.Context, addr, path, hdr string, rcvbuf int, conns []*stallConn) error {
	d := net.Dialer{Timeout: 10 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	return dialAll(ctx, len(conns), func(i int) error {
		c := conns[i]
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("dial %s: %w", addr, err)
		}
		c.conn = conn.(*net.TCPConn)
		target := path
		if target == "" {
			target = stalledPath(c.id)
		}
		req := "GET " + target + " HTTP/1.1\r\nHost: " + addr + "\r\nAccept: text/event-stream\r\n" + hdr + "\r\n"
		if _, err := io.WriteString(conn, req); err != nil {
			return fmt.Errorf("write request: %w", err)
		}
		return nil
	})
}

// watched is what watchClose saw of a connection.
type watched struct {
	closedNS   int64 // unix ns it left ESTABLISHED; 0: never
	lastDataNS int64 // unix ns its receive queue last grew; 0: never
}

// watchClose waits, without reading, until conn's TCP state leaves
// ESTABLISHED or conn's read deadline passes. Each time the netpoller
// reports the socket readable it looks at the state and at the bytes
// queued: the last time they grew is when the socket filled up, since
// nothing is read.
func watchClose(conn *net.TCPConn) watched {
	var w watched
	rc, err := conn.SyscallConn()
	if err != nil {
		return w
	}
	queued := 0
	err = rc.Read(func(fd uintptr) bool {
		now := time.Now().UnixNano()
		if q, ok := recvQueued(fd); ok && q > queued {
			queued, w.lastDataNS = q, now
		}
		if st, ok := tcpState(fd); ok && st != tcpEstablished {
			w.closedNS = now
			return true
		}
		return false // wait for the next readiness: more data, a FIN or a reset
	})
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && w.closedNS == 0 {
		w.closedNS = time.Now().UnixNano() // the descriptor failed: the connection is gone
	}
	return w
}

// connState names conn's TCP state now and counts the bytes queued in
// its receive buffer.
func connState(conn *net.TCPConn) (string, int) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return "unknown", 0
	}
	name, queued := "unknown", 0
	_ = rc.Control(func(fd uintptr) {
		if st, ok := tcpState(fd); ok {
			name = tcpStateName(st)
		}
		queued, _ = recvQueued(fd)
	})
	return name, queued
}
