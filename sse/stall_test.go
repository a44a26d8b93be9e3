//go:build unix

package sse_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// stallTarget is a Hub or a Server under a stalled-readers test.
type stallTarget struct {
	handler http.Handler
	publish func(data string) error
	stats   func() sse.Stats
	close   func() error
}

func stallTargets(writeTimeout time.Duration) []struct {
	name string
	make func() stallTarget
} {
	return []struct {
		name string
		make func() stallTarget
	}{
		{"Hub", func() stallTarget {
			hub := sse.NewHubWithOptions[string](&sse.Options{WriteTimeout: writeTimeout})
			return stallTarget{hub, hub.Broadcast, hub.Stats, hub.Close}
		}},
		{"Register", func() stallTarget {
			// The guide's way: Upgrade, Register, wait for Done (with the
			// default write timeout, which writeTimeout is).
			hub := sse.NewHubWithOptions[string](&sse.Options{WriteTimeout: writeTimeout})
			return stallTarget{registerHandler(hub, nil), hub.Broadcast, hub.Stats, hub.Close}
		}},
		{"Server", func() stallTarget {
			s := &sse.Server{Options: sse.Options{WriteTimeout: writeTimeout}}
			publish := func(data string) error {
				_, err := s.Publish(context.Background(), "", sse.NewEvent(data))
				return err
			}
			return stallTarget{s, publish, s.Stats, s.Close}
		}},
	}
}

// smallBufferListener gives every connection it accepts a 16 KiB send
// buffer: Linux otherwise grows a socket's send buffer to 4 MiB even when
// its peer's window stays closed, and a stalled client absorbs megabytes
// before the server's writes block.
type smallBufferListener struct{ net.Listener }

func (l smallBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		if err := tc.SetWriteBuffer(16 << 10); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, err
}

// newSmallBufferServer starts an HTTP/1.1 test server whose connections
// have small send buffers.
func newSmallBufferServer(h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = smallBufferListener{srv.Listener}
	srv.Start()
	return srv
}

// dialStalled opens a stream over a socket with a 4 KiB receive buffer
// and never reads it, so the server's writes to it block almost at once.
func dialStalled(t *testing.T, addr string) net.Conn {
	t.Helper()
	c := dialSmallBuffer(t, addr)
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", addr); err != nil {
		t.Fatal(err)
	}
	return c
}

// dialSmallBuffer connects to addr over a socket with a 4 KiB receive
// buffer.
func dialSmallBuffer(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readAll reads the data of up to n events from a stream into got, and
// closes done at the end.
func readEvents(body *bufio.Reader, n int, got *[]string, done chan<- struct{}) {
	defer close(done)
	r := sse.NewReader(body)
	for len(*got) < n {
		ev, err := r.Next()
		if err != nil {
			return
		}
		*got = append(*got, ev.Data)
	}
}

// TestStalledReaders has 300 clients that never read, over sockets with
// small receive buffers, beside 20 healthy clients, on a Hub and on a
// Server, and publishes 400 events of 1 KiB: each healthy client must get
// every event in order, once, and stay connected, and the stalled ones
// must be dropped within the write timeout, not before the healthy ones
// got everything. With the writers of old (at most 256, each held by a
// stalled socket until its write timed out), the healthy clients waited
// for the stalled ones to be dropped.
func TestStalledReaders(t *testing.T) {
	const (
		stalled, healthy, events = 300, 20, 400
		writeTimeout             = 10 * time.Second
	)
	pad := strings.Repeat("x", 1000)
	for _, tt := range stallTargets(writeTimeout) {
		t.Run(tt.name, func(t *testing.T) {
			target := tt.make()
			// Default socket buffers: the engine bounds the send
			// buffers of the connections it takes over (see
			// Options.SendBuffer).
			srv := httptest.NewServer(target.handler)
			t.Cleanup(srv.Close)
			t.Cleanup(func() { target.close() })
			addr := srv.Listener.Addr().String()
			for range stalled {
				dialStalled(t, addr)
			}
			if !sse.WaitFor(10*time.Second, func() bool { return target.stats().Clients == stalled }) {
				t.Fatalf("Clients: got %d, want %d stalled", target.stats().Clients, stalled)
			}
			tr := &http.Transport{MaxIdleConnsPerHost: -1}
			t.Cleanup(tr.CloseIdleConnections)
			client := &http.Client{Transport: tr}
			got := make([][]string, healthy)
			dones := make([]chan struct{}, healthy)
			for i := range healthy {
				resp, err := client.Get(srv.URL)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { resp.Body.Close() })
				dones[i] = make(chan struct{})
				go readEvents(bufio.NewReader(resp.Body), events, &got[i], dones[i])
			}
			if !sse.WaitFor(10*time.Second, func() bool { return target.stats().Clients == stalled+healthy }) {
				t.Fatalf("Clients: got %d, want %d", target.stats().Clients, stalled+healthy)
			}
			want := make([]string, events)
			for i := range events {
				want[i] = fmt.Sprintf("%06d %s", i, pad)
				if err := target.publish(want[i]); err != nil {
					t.Fatal(err)
				}
				if i%10 == 9 {
					time.Sleep(5 * time.Millisecond)
				}
			}
			var wg sync.WaitGroup
			for i := range healthy {
				wg.Go(func() {
					select {
					case <-dones[i]:
					case <-time.After(30 * time.Second):
					}
				})
			}
			wg.Wait()
			// The healthy clients had everything before the first
			// stalled one was dropped, at its write timeout: they did not
			// wait for the stalled ones.
			if st := target.stats(); st.ClientDisconnects+st.SlowDisconnects+st.BudgetDisconnects != 0 {
				t.Errorf("when the healthy clients had every event: got %d client, %d slow, %d budget disconnects; want none yet", st.ClientDisconnects, st.SlowDisconnects, st.BudgetDisconnects)
			}
			for i := range healthy {
				if len(got[i]) != events {
					t.Fatalf("healthy client %d: got %d events, want %d", i, len(got[i]), events)
				}
				for j := range events {
					if got[i][j] != want[j] {
						t.Fatalf("healthy client %d, event %d: got %.10q, want %.10q", i, j, got[i][j], want[j])
					}
				}
			}
			// Every stalled client is dropped within the write timeout of
			// its first blocked write, and counted; the healthy ones stay.
			// (A client leaves the count of clients a moment before it is
			// counted as disconnected: wait for both.)
			ended := func(st sse.Stats) uint64 { return st.ClientDisconnects + st.SlowDisconnects + st.BudgetDisconnects }
			if !sse.WaitFor(writeTimeout+2*time.Second, func() bool {
				st := target.stats()
				return st.Clients == healthy && ended(st) == stalled
			}) {
				st := target.stats()
				t.Errorf("Clients: got %d, want the %d healthy ones; %d disconnects counted, want %d", st.Clients, healthy, ended(st), stalled)
			}
			st := target.stats()
			if st.StalledWrites == 0 {
				t.Errorf("StalledWrites: got 0, want some")
			}
			if st.ClientDisconnects+st.SlowDisconnects+st.BudgetDisconnects != stalled {
				t.Errorf("disconnects: got %d client, %d slow, %d budget; want %d in all", st.ClientDisconnects, st.SlowDisconnects, st.BudgetDisconnects, stalled)
			}
			t.Logf("%+v", st)
		})
	}
}
