package sse_test

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// exitWriter is a ResponseWriter whose WriteHeader panics with a value or
// exits its goroutine, as a test double calling t.FailNow does.
type exitWriter struct {
	*fakeWriter
	goexit bool
}

type writerPanic struct{ n int }

func (w *exitWriter) WriteHeader(int) {
	if w.goexit {
		runtime.Goexit()
	}
	panic(writerPanic{7})
}

// TestUpgradeUserCodeExits checks that a panic or runtime.Goexit in the
// ResponseWriter's WriteHeader happens on the caller's goroutine as it
// would without the package: the panic keeps its value and the stack of
// the panicking method, Goexit runs the caller's deferred calls and
// Upgrade never returns. A Hub the stream was registered with forgets it
// and still closes at once.
func TestUpgradeUserCodeExits(t *testing.T) {
	for _, tt := range []struct {
		name   string
		goexit bool
		viaHub bool
	}{
		{"panic", false, false},
		{"goexit", true, false},
		{"panic through a hub", false, true},
		{"goexit through a hub", true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hub := sse.NewHub[string]()
			w := &exitWriter{fakeWriter: newFakeWriter(), goexit: tt.goexit}
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			var (
				recovered any
				stack     string
				returned  bool
			)
			done := make(chan struct{})
			go func() {
				defer close(done)
				defer func() {
					recovered = recover()
					stack = string(debug.Stack())
				}()
				if tt.viaHub {
					hub.ServeHTTP(w, r)
				} else {
					_, _ = sse.Upgrade(w, r)
				}
				returned = true
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the goroutine calling Upgrade did not end")
			}
			if returned {
				t.Error("the call returned; want it to panic or exit its goroutine")
			}
			if tt.goexit {
				if recovered != nil {
					t.Errorf("recovered %v, want nil (Goexit is not a panic)", recovered)
				}
			} else {
				if recovered != (writerPanic{7}) {
					t.Errorf("recovered %v, want %v", recovered, writerPanic{7})
				}
				if !strings.Contains(stack, "(*exitWriter).WriteHeader") {
					t.Errorf("stack of the panic: got\n%s\nwant it to hold (*exitWriter).WriteHeader", stack)
				}
			}
			if got := hub.Clients(); got != 0 {
				t.Errorf("Clients() = %d, want 0", got)
			}
			closed := make(chan error, 1)
			go func() { closed <- hub.Close() }()
			select {
			case err := <-closed:
				if err != nil {
					t.Errorf("Close: got %v, want nil", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not return")
			}
		})
	}
}

// TestUpgradeHeaderValuesNotShared edits the header values of one
// stream's response in place and checks that later streams still get the
// package's and the options' values.
func TestUpgradeHeaderValuesNotShared(t *testing.T) {
	opts := &sse.UpgradeOptions{Header: http.Header{"X-Team": {"blue"}}}
	for _, key := range []string{"Cache-Control", "Content-Type", "X-Accel-Buffering", "Connection", "X-Team"} {
		t.Run(key, func(t *testing.T) {
			first := httptest.NewRecorder()
			conn, err := sse.UpgradeWithOptions(t.Context(), first, httptest.NewRequest(http.MethodGet, "/", nil), opts)
			if err != nil {
				t.Fatal(err)
			}
			conn.Close()
			want := first.Header()[key][0]
			first.Header()[key][0] = "edited"

			second := httptest.NewRecorder()
			conn, err = sse.UpgradeWithOptions(t.Context(), second, httptest.NewRequest(http.MethodGet, "/", nil), opts)
			if err != nil {
				t.Fatal(err)
			}
			conn.Close()
			if got := second.Header()[key]; len(got) != 1 || got[0] != want {
				t.Errorf("%s of the next stream: got %q, want [%q]", key, got, want)
			}
			if got := opts.Header["X-Team"]; got[0] != "blue" {
				t.Errorf("options' X-Team: got %q, want [blue]", got)
			}
		})
	}
}
