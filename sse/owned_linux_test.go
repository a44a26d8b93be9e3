package sse_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// TestTakeoverSendBuffer checks the send buffer of a taken connection:
// SendBuffer, 16 KiB by default, which Linux doubles.
func TestTakeoverSendBuffer(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts sse.Options
		want int // SO_SNDBUF; 0: the connection is not taken
	}{
		{"default", sse.Options{}, 2 * 16 << 10},
		{"64 KiB", sse.Options{SendBuffer: 64 << 10}, 2 * 64 << 10},
		{"KeepResponseWriter", sse.Options{KeepResponseWriter: true}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := sse.NewHubWithOptions[string](&tc.opts)
			t.Cleanup(func() { hub.Close() })
			var mu sync.Mutex
			var taken *net.TCPConn
			srv := httptest.NewUnstartedServer(registerHandler(hub, nil))
			srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
				if s == http.StateHijacked {
					mu.Lock()
					taken = c.(*net.TCPConn)
					mu.Unlock()
				}
			}
			srv.Start()
			t.Cleanup(srv.Close)
			_, br, _ := rawStream(t, srv.Listener.Addr().String())
			readExactly(t, br, "d\r\n: connected\n\n\r\n")
			waitFor(5*time.Second, func() bool { return hub.Clients() == 1 })
			// Register took the connection over before it returned, so
			// before this event was written.
			if err := hub.Broadcast("x"); err != nil {
				t.Fatal(err)
			}
			readExactly(t, br, "9\r\ndata: x\n\n\r\n")
			mu.Lock()
			defer mu.Unlock()
			if tc.want == 0 {
				if taken != nil {
					t.Fatal("the connection was taken over; want it left to net/http")
				}
				return
			}
			if taken == nil {
				t.Fatal("the connection was not taken over")
			}
			rc, err := taken.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var got int
			var gerr error
			if err := rc.Control(func(fd uintptr) {
				got, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
			}); err != nil || gerr != nil {
				t.Fatal(err, gerr)
			}
			if got != tc.want {
				t.Errorf("SO_SNDBUF: got %d, want %d", got, tc.want)
			}
		})
	}
}
