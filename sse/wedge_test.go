package sse_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coregx/stream/sse"
)

// flushOnlyWriter is a middleware's writer that forwards Flush but has no
// Unwrap, so the stream's write deadlines cannot be reached.
type flushOnlyWriter struct{ f *fakeWriter }

func (w flushOnlyWriter) Header() http.Header         { return w.f.Header() }
func (w flushOnlyWriter) WriteHeader(code int)        { w.f.WriteHeader(code) }
func (w flushOnlyWriter) Write(p []byte) (int, error) { return w.f.Write(p) }
func (w flushOnlyWriter) Flush()                      { w.f.Flush() }

// syncBuffer is a bytes.Buffer safe for concurrent use, for logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestCloseWithoutDeadlines has two clients behind a writer whose
// deadlines cannot be set stop reading: Close and Shutdown give up on
// their writes after the write timeout, count them, and the hub logs the
// missing deadlines once.
func TestCloseWithoutDeadlines(t *testing.T) {
	for _, tt := range []struct {
		name  string
		close func(hub *sse.Hub[string]) error
	}{
		{"Close", func(hub *sse.Hub[string]) error { return hub.Close() }},
		{"Shutdown", func(hub *sse.Hub[string]) error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return hub.Shutdown(ctx)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var logs syncBuffer
				const writeTimeout = 2 * time.Second
				hub := sse.NewHubWithOptions[string](&sse.Options{
					Heartbeat:    -1,
					Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
					WriteTimeout: writeTimeout,
				})
				var releases []func()
				for range 2 {
					f := newFakeWriter()
					w := flushOnlyWriter{f}
					r := httptest.NewRequest(http.MethodGet, "/", nil)
					conn, err := sse.UpgradeWithOptions(t.Context(), w, r, &sse.UpgradeOptions{WriteTimeout: writeTimeout})
					if err != nil {
						t.Fatal(err)
					}
					if err := hub.Register(conn); err != nil {
						t.Fatal(err)
					}
					releases = append(releases, f.setBlock())
				}
				if err := hub.Broadcast("stuck"); err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
				start := time.Now()
				err := tt.close(hub)
				took := time.Since(start)
				for _, release := range releases {
					release()
				}
				if err != nil && tt.name == "Close" {
					t.Errorf("Close: got %v, want nil", err)
				}
				if took > 3*time.Second {
					t.Errorf("%s took %v, want at most 3s", tt.name, took)
				}
				if got := hub.Stats().AbandonedWrites; got != 2 {
					t.Errorf("AbandonedWrites: got %d, want 2", got)
				}
				if got := strings.Count(logs.String(), "does not support write deadlines"); got != 1 {
					t.Errorf("warnings about deadlines: got %d, want 1 in\n%s", got, logs.String())
				}
				synctest.Wait()
			})
		})
	}
}

// TestSlowWriteWithoutDeadlines has a write to a writer without deadlines
// block long enough to be handed off, then go on: the stream keeps every
// event and stays open.
func TestSlowWriteWithoutDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := sse.NewHubWithOptions[string](&sse.Options{Heartbeat: -1})
		defer hub.Close()
		f := newFakeWriter()
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		conn, err := sse.Upgrade(flushOnlyWriter{f}, r)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := hub.Register(conn); err != nil {
			t.Fatal(err)
		}
		release := f.setBlock()
		if err := hub.Broadcast("a"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // the write is handed off meanwhile
		release()
		for _, v := range []string{"b", "c"} {
			if err := hub.Broadcast(v); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
		}
		if got, want := f.Body(), ": connected\n\ndata: a\n\ndata: b\n\ndata: c\n\n"; got != want {
			t.Errorf("body: got %q, want %q", got, want)
		}
		if err := conn.Err(); err != nil {
			t.Errorf("Err: got %v, want nil", err)
		}
		if st := hub.Stats(); st.StalledWrites != 1 || st.Clients != 1 {
			t.Errorf("Stats: got %d stalled writes, %d clients; want 1, 1", st.StalledWrites, st.Clients)
		}
	})
}
