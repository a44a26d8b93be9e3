package sse_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coregx/stream/sse"
)

// The tests in this file run the snippets of the user guide ("Complete
// guide to using Server-Sent Events with github.com/coregx/stream/sse") as
// written, and check the bytes a client receives. Where the guide shows a bug (field
// injection, a slow client blocking the hub, answering 503 after Upgrade)
// they check what README's "Where we differ from the guide" says instead.

// Message is the guide's custom type with json tags and String (the
// section "Broadcasting with Hub", Option 1).
type Message struct {
	User string `json:"user"`
	Text string `json:"text"`
}

// String is the guide's "Option 1: Implement Stringer".
func (m Message) String() string {
	data, _ := json.Marshal(m)
	return string(data)
}

// guideServer serves h on loopback and closes it when the test ends.
func guideServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	srv.Client().Timeout = streamTimeout
	return srv
}

// streamTimeout bounds each stream a test reads, so that a stream shorter
// than expected fails the test instead of hanging it.
const streamTimeout = 10 * time.Second

// guideRequest starts handler h on w in the background, with a request
// whose context the returned cancel ends (the client going away); the
// returned channel is closed when h returns.
func guideRequest(h http.HandlerFunc, w http.ResponseWriter) (cancel func(), done <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	return cancel, serveIn(ctx, h, w)
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// upgradeFake upgrades a request on a fakeWriter.
func upgradeFake(t *testing.T) (*fakeWriter, *sse.Conn) {
	t.Helper()
	w := newFakeWriter()
	conn, err := sse.Upgrade(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if err != nil {
		t.Fatal(err)
	}
	return w, conn
}

// logBuffer collects what the log (and log/slog) default loggers write.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// captureLog sends the log package's output, without time stamps, to the
// returned buffer until the test ends, then restores the log and slog
// defaults (slog.SetDefault redirects the log package too).
func captureLog(t *testing.T) *logBuffer {
	out, flags, def := log.Writer(), log.Flags(), slog.Default()
	buf := &logBuffer{}
	log.SetOutput(buf)
	log.SetFlags(0)
	t.Cleanup(func() {
		slog.SetDefault(def)
		log.SetOutput(out)
		log.SetFlags(flags)
	})
	return buf
}

// guideMessages is the "messages" channel the guide's loops range over.
func guideMessages(msgs ...string) <-chan string {
	ch := make(chan string, len(msgs))
	for _, m := range msgs {
		ch <- m
	}
	close(ch)
	return ch
}

func TestGuide(t *testing.T) {
	t.Run("QuickStart", testGuideQuickStart)
	t.Run("EventStructure", testGuideEventStructure)
	t.Run("ConnectionLifecycle", testGuideConnectionLifecycle)
	t.Run("BroadcastingWithHub", testGuideHub)
	t.Run("BestPractices", testGuideBestPractices)
	t.Run("ErrorHandling", testGuideErrorHandling)
	t.Run("ProductionConsiderations", testGuideProduction)
	t.Run("AdvancedPatterns", testGuideAdvanced)
}

// Quick Start, as written.
func handleSSE(w http.ResponseWriter, r *http.Request) {
	// Upgrade to SSE
	conn, err := sse.Upgrade(w, r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	// Send events
	ticker := time.NewTicker(1 * time.Second)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			conn.SendData("ping")
		case <-conn.Done():
			return
		}
	}
}

func testGuideQuickStart(t *testing.T) {
	t.Run("Curl", func(t *testing.T) {
		mux := http.NewServeMux()
		mux.HandleFunc("/events", handleSSE)
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		srv.Client().Timeout = streamTimeout
		s := get(t, srv.Client(), srv.URL+"/events")
		if got, want := s.resp.Header.Get("Content-Type"), "text/event-stream"; got != want {
			t.Errorf("Content-Type: got %q, want %q", got, want)
		}
		s.expect(": connected\n\n") // the pings: Ticker, without waiting
	})
	t.Run("Ticker", testGuideQuickStartTicker)
}

func testGuideQuickStartTicker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newFakeWriter()
		cancel, done := guideRequest(handleSSE, w)
		time.Sleep(3*time.Second + time.Millisecond)
		synctest.Wait()
		want := ": connected\n\n" + strings.Repeat("data: ping\n\n", 3)
		if got := w.Body(); got != want {
			t.Fatalf("after 3s: got %q, want %q", got, want)
		}
		if got, want := w.Header().Get("Content-Type"), "text/event-stream"; got != want {
			t.Errorf("Content-Type: got %q, want %q", got, want)
		}
		cancel() // the client goes away
		<-done
		if got := w.Body(); got != want {
			t.Fatalf("after the client left: got %q, want %q", got, want)
		}
	})
}

func testGuideEventStructure(t *testing.T) {
	// The struct as the guide shows it.
	lit := sse.Event{Type: "t", ID: "1", Data: "d", Retry: 3000}
	for _, tt := range []struct {
		name string
		ev   *sse.Event
		want string
	}{
		{"Format", sse.NewEvent("line 1\nline 2").WithType("eventType").WithID("uniqueId").WithRetry(3000),
			"event: eventType\nid: uniqueId\nretry: 3000\ndata: line 1\ndata: line 2\n\n"},
		{"Struct", &lit, "event: t\nid: 1\nretry: 3000\ndata: d\n\n"},
		{"Builder", sse.NewEvent("Hello, World!").
			WithType("greeting").
			WithID("msg-1").
			WithRetry(3000),
			"event: greeting\nid: msg-1\nretry: 3000\ndata: Hello, World!\n\n"},
		{"MultiLine", sse.NewEvent("line1\nline2\nline3"), "data: line1\ndata: line2\ndata: line3\n\n"},
		{"Type", sse.NewEvent("New order!").WithType("order"), "event: order\ndata: New order!\n\n"},
		{"ID", sse.NewEvent("data").WithID("evt-123"), "id: evt-123\ndata: data\n\n"},
		{"Retry", sse.NewEvent("data").WithRetry(5000), "retry: 5000\ndata: data\n\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ev.String(); got != tt.want {
				t.Errorf("String: got %q, want %q", got, tt.want)
			}
			srv := guideServer(t, func(w http.ResponseWriter, r *http.Request) {
				conn, err := sse.Upgrade(w, r)
				if err != nil {
					return
				}
				defer conn.Close()
				if err := conn.Send(tt.ev); err != nil {
					t.Errorf("Send: got %v, want nil", err)
				}
				<-conn.Done()
			})
			s := get(t, srv.Client(), srv.URL)
			s.expect(": connected\n\n" + tt.want)
		})
	}
	t.Run("Comment", func(t *testing.T) {
		comment := sse.Comment("keep-alive")
		if want := ": keep-alive\n\n"; comment != want {
			t.Fatalf("Comment: got %q, want %q", comment, want)
		}
		srv := guideServer(t, func(w http.ResponseWriter, r *http.Request) {
			conn, err := sse.Upgrade(w, r)
			if err != nil {
				return
			}
			defer conn.Close()
			conn.SendComment("keep-alive")
			<-conn.Done()
		})
		get(t, srv.Client(), srv.URL).expect(": connected\n\n: keep-alive\n\n")
	})
}

func testGuideConnectionLifecycle(t *testing.T) {
	t.Run("Upgrade", func(t *testing.T) {
		srv := guideServer(t, func(w http.ResponseWriter, r *http.Request) {
			conn, err := sse.Upgrade(w, r)
			if err != nil {
				// ResponseWriter doesn't support flushing
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			defer conn.Close()
			<-conn.Done()
		})
		s := get(t, srv.Client(), srv.URL)
		for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache"} {
			if got := s.resp.Header.Get(k); got != want {
				t.Errorf("%s: got %q, want %q", k, got, want)
			}
		}
		s.expect(": connected\n\n")
	})

	t.Run("SendingEvents", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			send func(conn *sse.Conn) error
			want string
		}{
			{"Send", func(conn *sse.Conn) error {
				event := sse.NewEvent("Order #123 shipped").
					WithType("notification").
					WithID("notif-456")
				return conn.Send(event)
			}, "event: notification\nid: notif-456\ndata: Order #123 shipped\n\n"},
			{"SendData", func(conn *sse.Conn) error {
				return conn.SendData("Hello, World!")
			}, "data: Hello, World!\n\n"},
			{"SendDataEquivalent", func(conn *sse.Conn) error {
				return conn.Send(sse.NewEvent("Hello, World!"))
			}, "data: Hello, World!\n\n"},
			{"SendJSON", func(conn *sse.Conn) error {
				user := map[string]string{"name": "Alice", "status": "online"}
				return conn.SendJSON(user)
			}, "data: {\"name\":\"Alice\",\"status\":\"online\"}\n\n"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				srv := guideServer(t, func(w http.ResponseWriter, r *http.Request) {
					conn, err := sse.Upgrade(w, r)
					if err != nil {
						return
					}
					defer conn.Close()
					if err := tt.send(conn); err != nil {
						t.Errorf("send: got %v, want nil", err)
					}
					<-conn.Done()
				})
				get(t, srv.Client(), srv.URL).expect(": connected\n\n" + tt.want)
			})
		}
	})

	t.Run("Context", func(t *testing.T) {
		t.Run("Request", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancelReq := context.WithCancel(context.Background())
				w := newFakeWriter()
				r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
				// Use request context (default)
				conn, err := sse.Upgrade(w, r)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				synctest.Wait()
				if isClosed(conn.Done()) {
					t.Fatal("Done closed before the request's context ended")
				}
				cancelReq()
				synctest.Wait()
				if !isClosed(conn.Done()) {
					t.Fatal("Done still open after the request's context was canceled")
				}
			})
		})
		t.Run("Custom", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newFakeWriter()
				r := httptest.NewRequest(http.MethodGet, "/", nil)
				// Or custom context
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				conn, err := sse.UpgradeWithContext(ctx, w, r)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				time.Sleep(5*time.Minute - time.Nanosecond)
				synctest.Wait()
				if isClosed(conn.Done()) {
					t.Fatal("Done closed before the 5 minute timeout")
				}
				time.Sleep(time.Nanosecond)
				synctest.Wait()
				if !isClosed(conn.Done()) {
					t.Fatal("Done still open after the 5 minute timeout")
				}
				if err := conn.SendData("late"); !errors.Is(err, sse.ErrConnectionClosed) {
					t.Errorf("SendData after the timeout: got %v, want ErrConnectionClosed", err)
				}
				if got, want := w.Body(), ": connected\n\n"; got != want {
					t.Errorf("body: got %q, want %q", got, want)
				}
			})
		})
	})

	t.Run("CloseIdempotent", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w, conn := upgradeFake(t)
			for i := range 3 {
				if err := conn.Close(); err != nil {
					t.Fatalf("Close #%d: got %v, want nil", i+1, err)
				}
			}
			if !isClosed(conn.Done()) {
				t.Fatal("Done still open after Close")
			}
			if got, want := w.Body(), ": connected\n\n"; got != want {
				t.Errorf("body: got %q, want %q", got, want)
			}
		})
	})

	t.Run("WaitForDisconnection", func(t *testing.T) {
		returned := make(chan struct{})
		srv := guideServer(t, func(w http.ResponseWriter, r *http.Request) {
			defer close(returned)
			streamUntilDone(w, r) // Upgrade, defer conn.Close(), <-conn.Done()
		})
		s := get(t, srv.Client(), srv.URL)
		s.expect(": connected\n\n")
		s.resp.Body.Close()
		select {
		case <-returned:
		case <-time.After(streamTimeout):
			t.Fatal("<-conn.Done() did not return after the client left")
		}
	})

	t.Run("Select", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			end  func(cancelReq func(), conn *sse.Conn)
		}{
			{"ClientLeaves", func(cancelReq func(), _ *sse.Conn) { cancelReq() }},
			{"ServerCloses", func(_ func(), conn *sse.Conn) { conn.Close() }},
		} {
			t.Run(tt.name, func(t *testing.T) {
				logs := captureLog(t)
				synctest.Test(t, func(t *testing.T) {
					w := newFakeWriter()
					conns := make(chan *sse.Conn, 1)
					cancelReq, done := guideRequest(func(w http.ResponseWriter, r *http.Request) {
						conn, err := sse.Upgrade(w, r)
						if err != nil {
							return
						}
						defer conn.Close()
						conns <- conn
						ticker := time.NewTicker(1 * time.Second)
						defer ticker.Stop()
						for {
							select {
							case <-ticker.C:
								if err := conn.SendData("ping"); err != nil {
									return
								}
							case <-conn.Done():
								log.Println("Client disconnected")
								return
							}
						}
					}, w)
					defer cancelReq()
					conn := <-conns
					time.Sleep(2*time.Second + time.Millisecond)
					tt.end(cancelReq, conn)
					<-done
					want := ": connected\n\n" + strings.Repeat("data: ping\n\n", 2)
					if got := w.Body(); got != want {
						t.Fatalf("got %q, want %q", got, want)
					}
					if got, want := logs.String(), "Client disconnected\n"; got != want {
						t.Errorf("log: got %q, want %q", got, want)
					}
				})
			})
		}
	})
}

// hubHandler is the guide's handler registering each stream with hub; it
// sends the conn on registered (when not nil) once registered, so that a
// test broadcasts only to registered clients.
func hubHandler[T any](hub *sse.Hub[T], registered chan<- *sse.Conn) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		conn, err := sse.Upgrade(w, r)
		if err != nil {
			return
		}
		defer conn.Close()
		// Register with hub
		hub.Register(conn)
		defer hub.Unregister(conn)
		if registered != nil {
			registered <- conn
		}
		// Wait for disconnection
		<-conn.Done()
	}
}

// hubClient opens a stream on srv, reads the opening comment and waits
// until the handler registered it.
func hubClient(t *testing.T, srv *httptest.Server, registered <-chan *sse.Conn) (*stream, *sse.Conn) {
	t.Helper()
	s := get(t, srv.Client(), srv.URL)
	s.expect(": connected\n\n")
	select {
	case conn := <-registered:
		return s, conn
	case <-time.After(streamTimeout):
		t.Fatal("the handler did not register the stream")
		return nil, nil
	}
}

// hubBroadcast runs hub (as the guide does), serves it with the guide's
// handler, broadcasts with bcast to one client and returns what it got.
func hubBroadcast[T any](t *testing.T, hub *sse.Hub[T], bcast func() error, want string) {
	t.Helper()
	go hub.Run()
	t.Cleanup(func() { hub.Close() })
	registered := make(chan *sse.Conn, 1)
	srv := guideServer(t, hubHandler(hub, registered))
	s, _ := hubClient(t, srv, registered)
	if err := bcast(); err != nil {
		t.Fatalf("Broadcast: got %v, want nil", err)
	}
	s.expect(want)
}

func testGuideHub(t *testing.T) {
	t.Run("String", func(t *testing.T) {
		// String hub
		hub := sse.NewHub[string]()
		hubBroadcast(t, hub, func() error { return hub.Broadcast("Hello, everyone!") }, "data: Hello, everyone!\n\n")
	})
	t.Run("CustomType", func(t *testing.T) {
		// Custom type hub
		type Message struct {
			User string
			Text string
		}
		hub := sse.NewHub[Message]()
		hubBroadcast(t, hub, func() error { return hub.Broadcast(Message{User: "Alice", Text: "Hi!"}) },
			"data: {\"User\":\"Alice\",\"Text\":\"Hi!\"}\n\n")
	})
	t.Run("Stringer", func(t *testing.T) {
		hub := sse.NewHub[Message]() // the package's Message has String
		hubBroadcast(t, hub, func() error { return hub.Broadcast(Message{User: "Alice", Text: "Hi"}) },
			"data: {\"user\":\"Alice\",\"text\":\"Hi\"}\n\n")
	})
	t.Run("JSON", func(t *testing.T) {
		type Message struct {
			User string `json:"user"`
			Text string `json:"text"`
		}
		// Option 2: Let Hub JSON-encode (automatic)
		hub := sse.NewHub[Message]()
		hubBroadcast(t, hub, func() error { return hub.Broadcast(Message{User: "Alice", Text: "Hi"}) },
			"data: {\"user\":\"Alice\",\"text\":\"Hi\"}\n\n")
	})
	t.Run("Any", func(t *testing.T) {
		hub := sse.NewHub[any]()
		hubBroadcast(t, hub, func() error {
			for _, v := range []any{"text", Message{User: "Bob", Text: "Yo"}, map[string]int{"n": 1}} {
				if err := hub.Broadcast(v); err != nil {
					return err
				}
			}
			return nil
		}, "data: text\n\ndata: {\"user\":\"Bob\",\"text\":\"Yo\"}\n\ndata: {\"n\":1}\n\n")
	})

	t.Run("Clients", func(t *testing.T) {
		hub := sse.NewHub[string]()
		go hub.Run()
		t.Cleanup(func() { hub.Close() })
		logs := captureLog(t)
		registered := make(chan *sse.Conn, 3)
		srv := guideServer(t, hubHandler(hub, registered))
		for n := 1; n <= 3; n++ {
			hubClient(t, srv, registered)
			count := hub.Clients()
			log.Printf("Active clients: %d", count)
			if count != n {
				t.Fatalf("Clients: got %d, want %d", count, n)
			}
		}
		if got, want := logs.String(), "Active clients: 1\nActive clients: 2\nActive clients: 3\n"; got != want {
			t.Errorf("log: got %q, want %q", got, want)
		}
	})

	t.Run("RemovesFailedClients", func(t *testing.T) {
		// Client disconnects → removed from hub
		t.Run("ClientDisconnects", func(t *testing.T) {
			hub := sse.NewHub[string]()
			go hub.Run()
			t.Cleanup(func() { hub.Close() })
			registered := make(chan *sse.Conn, 2)
			srv := guideServer(t, hubHandler(hub, registered))
			s1, _ := hubClient(t, srv, registered)
			s2, _ := hubClient(t, srv, registered)
			s1.resp.Body.Close()
			if !sse.WaitFor(streamTimeout, func() bool { return hub.Clients() == 1 }) {
				t.Fatalf("Clients: got %d, want 1", hub.Clients())
			}
			if err := hub.Broadcast("still here"); err != nil {
				t.Fatal(err)
			}
			s2.expect("data: still here\n\n")
		})
		// Send fails → client unregistered
		t.Run("SendFails", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				hub := sse.NewHub[string]()
				go hub.Run()
				defer hub.Close()
				cs := fakeClients(t, hub, 2, &sse.UpgradeOptions{Heartbeat: -1, WriteTimeout: time.Second})
				release := cs[0].w.setBlock() // its writes time out
				defer release()
				if err := hub.Broadcast("x"); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Second + time.Millisecond)
				synctest.Wait()
				if n := hub.Clients(); n != 1 {
					t.Fatalf("Clients after a failed write: got %d, want 1", n)
				}
				if err := cs[0].conn.Err(); !errors.Is(err, sse.ErrConnectionClosed) {
					t.Errorf("failed client's Err: got %v, want ErrConnectionClosed", err)
				}
				if got, want := cs[1].w.Body(), ": connected\n\ndata: x\n\n"; got != want {
					t.Errorf("healthy client: got %q, want %q", got, want)
				}
			})
		})
	})

	t.Run("CloseDisconnectsAll", func(t *testing.T) {
		hub := sse.NewHub[string]()
		go hub.Run()
		defer hub.Close()
		registered := make(chan *sse.Conn, 3)
		srv := guideServer(t, hubHandler(hub, registered))
		var streams []*stream
		for range 3 {
			s, _ := hubClient(t, srv, registered)
			streams = append(streams, s)
		}
		if err := hub.Broadcast("bye"); err != nil {
			t.Fatal(err)
		}
		// Hub closes → all clients disconnected
		if err := hub.Close(); err != nil {
			t.Fatalf("Close: got %v, want nil", err)
		}
		for _, s := range streams {
			s.expect("data: bye\n\n")
			s.expectEOF()
		}
		if n := hub.Clients(); n != 0 {
			t.Errorf("Clients after Close: got %d, want 0", n)
		}
		if err := hub.Close(); err != nil {
			t.Errorf("second Close: got %v, want nil", err)
		}
	})

	t.Run("SlowClientDoesNotBlock", func(t *testing.T) {
		// The guide's Hub waits for a slow client; ours drops it when its
		// queue is full, and the others get every event.
		synctest.Test(t, func(t *testing.T) {
			hub := sse.NewHubWithOptions[string](&sse.Options{QueueSize: 4})
			go hub.Run()
			defer hub.Close()
			opts := &sse.UpgradeOptions{Heartbeat: -1, WriteTimeout: time.Hour}
			cs := fakeClients(t, hub, 2, opts)
			release := cs[0].w.setBlock()
			defer release()
			var want strings.Builder
			want.WriteString(": connected\n\n")
			for i := range 20 {
				if err := hub.Broadcast(fmt.Sprint(i)); err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&want, "data: %d\n\n", i)
				synctest.Wait()
				time.Sleep(30 * time.Millisecond) // the stuck write counts as blocked after 500 ms
			}
			if got := cs[1].w.Body(); got != want.String() {
				t.Fatalf("healthy client: got %q, want %q", got, want.String())
			}
			if !isClosed(cs[0].conn.Done()) {
				t.Fatal("the slow client is still connected")
			}
			if n := hub.Clients(); n != 1 {
				t.Fatalf("Clients: got %d, want 1", n)
			}
		})
	})
}

func testGuideBestPractices(t *testing.T) {
	t.Run("TimeoutContext", func(t *testing.T) {
		for _, tt := range []struct {
			name    string
			timeout time.Duration
		}{
			{"TenMinutes", 10 * time.Minute},
			{"OneHour", 1 * time.Hour}, // Production Considerations: long connections
		} {
			t.Run(tt.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					w := newFakeWriter()
					conns := make(chan *sse.Conn, 1)
					cancelReq, done := guideRequest(func(w http.ResponseWriter, r *http.Request) {
						ctx, cancel := context.WithTimeout(r.Context(), tt.timeout)
						defer cancel()
						conn, err := sse.UpgradeWithContext(ctx, w, r)
						if err != nil {
							return
						}
						defer conn.Close()
						conns <- conn
						<-conn.Done()
					}, w)
					defer cancelReq()
					conn := <-conns
					time.Sleep(tt.timeout - time.Nanosecond)
					synctest.Wait()
					if isClosed(done) || isClosed(conn.Done()) {
						t.Fatalf("the stream ended before %v", tt.timeout)
					}
					time.Sleep(time.Nanosecond)
					<-done
					if got, want := w.Body(), ": connected\n\n"; got != want {
						t.Errorf("body: got %q, want %q", got, want)
					}
				})
			})
		}
	})

	t.Run("KeepAlive", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newFakeWriter()
			cancelReq, done := guideRequest(func(w http.ResponseWriter, r *http.Request) {
				conn, err := sse.Upgrade(w, r)
				if err != nil {
					return
				}
				defer conn.Close()
				flusher := w.(http.Flusher)
				ticker := time.NewTicker(30 * time.Second)
				defer ticker.Stop()
				for {
					select {
					case <-ticker.C:
						// Send comment
						io.WriteString(w, ": keep-alive\n\n")
						flusher.Flush()
					case <-conn.Done():
						return
					}
				}
			}, w)
			time.Sleep(90*time.Second + time.Millisecond)
			synctest.Wait()
			want := ": connected\n\n" + strings.Repeat(": keep-alive\n\n", 3)
			if got := w.Body(); got != want {
				t.Fatalf("after 90s: got %q, want %q", got, want)
			}
			cancelReq()
			<-done
		})
	})

	t.Run("EventIDs", func(t *testing.T) {
		lastIDs := make(chan string, 2)
		srv := guideServer(t, func(w http.ResponseWriter, r *http.Request) {
			conn, err := sse.Upgrade(w, r)
			if err != nil {
				return
			}
			defer conn.Close()
			// On reconnect, check Last-Event-ID header
			lastID := r.Header.Get("Last-Event-ID")
			resumeFrom := ""
			if lastID != "" {
				// Resume from lastID
				resumeFrom = lastID
			}
			lastIDs <- resumeFrom
			messages := guideMessages("a", "b\nc", "d")
			eventID := 0
			for msg := range messages {
				eventID++
				event := sse.NewEvent(msg).WithID(fmt.Sprintf("evt-%d", eventID))
				conn.Send(event)
			}
			<-conn.Done()
		})
		for _, lastID := range []string{"", "evt-2"} {
			var header []string
			if lastID != "" {
				header = []string{"Last-Event-ID", lastID}
			}
			s := get(t, srv.Client(), srv.URL, header...)
			s.expect(": connected\n\nid: evt-1\ndata: a\n\nid: evt-2\ndata: b\ndata: c\n\nid: evt-3\ndata: d\n\n")
			if got := <-lastIDs; got != lastID {
				t.Errorf("Last-Event-ID: got %q, want %q", got, lastID)
			}
		}
	})

	t.Run("LimitConnections", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			hub := sse.NewHub[string]()
			go hub.Run()
			defer hub.Close()
			const maxClients = 1000
			handler := func(w http.ResponseWriter, r *http.Request) {
				if hub.Clients() >= maxClients {
					http.Error(w, "Too many clients", http.StatusServiceUnavailable)
					return
				}
				hubHandler(hub, nil)(w, r) // Upgrade, hub.Register(conn), <-conn.Done()
			}
			var cancels []func()
			var dones []<-chan struct{}
			for range maxClients {
				cancel, done := guideRequest(handler, newFakeWriter())
				cancels = append(cancels, cancel)
				dones = append(dones, done)
				synctest.Wait()
			}
			if n := hub.Clients(); n != maxClients {
				t.Fatalf("Clients: got %d, want %d", n, maxClients)
			}
			w := httptest.NewRecorder()
			handler(w, httptest.NewRequest(http.MethodGet, "/", nil))
			if w.Code != http.StatusServiceUnavailable || w.Body.String() != "Too many clients\n" {
				t.Errorf("client %d: got %d %q, want 503 \"Too many clients\\n\"", maxClients+1, w.Code, w.Body.String())
			}
			cancels[0]()
			<-dones[0]
			w2 := newFakeWriter()
			cancel, done := guideRequest(handler, w2)
			synctest.Wait()
			if got, want := w2.Body(), ": connected\n\n"; got != want {
				t.Errorf("after one left: got %q, want %q", got, want)
			}
			cancels = append(cancels, cancel)
			dones = append(dones, done)
			for i, cancel := range cancels {
				cancel()
				<-dones[i]
			}
		})
	})

	t.Run("Logging", func(t *testing.T) {
		buf := captureLog(t)
		slog.SetDefault(slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			},
		})))
		synctest.Test(t, func(t *testing.T) {
			hub := sse.NewHub[string]()
			go hub.Run()
			defer hub.Close()
			w := newFakeWriter()
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = "192.0.2.1:1234"
			conn, err := sse.Upgrade(w, r)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			hub.Register(conn)
			slog.Info("Client connected",
				"remote", r.RemoteAddr,
				"clients", hub.Clients(),
			)
		})
		if got, want := buf.String(), "level=INFO msg=\"Client connected\" remote=192.0.2.1:1234 clients=1\n"; got != want {
			t.Errorf("log: got %q, want %q", got, want)
		}
	})

	t.Run("GracefulShutdown", func(t *testing.T) {
		for _, tt := range []struct {
			name     string
			tail     string
			shutdown func(ctx context.Context, hub *sse.Hub[string], server *http.Server) error
		}{
			{"AsInGuide", "", func(ctx context.Context, hub *sse.Hub[string], server *http.Server) error {
				// Close hub first (disconnects clients gracefully)
				hub.Close()
				// Then shutdown HTTP server
				return server.Shutdown(ctx)
			}},
			{"RegisterOnShutdown", "retry:", func(ctx context.Context, hub *sse.Hub[string], server *http.Server) error {
				server.RegisterOnShutdown(func() { hub.Shutdown(ctx) })
				return server.Shutdown(ctx)
			}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				hub := sse.NewHub[string]()
				go hub.Run()
				defer hub.Close()
				registered := make(chan *sse.Conn, 2)
				srv := httptest.NewUnstartedServer(hubHandler(hub, registered))
				server := srv.Config
				srv.Start()
				t.Cleanup(srv.Close)
				srv.Client().Timeout = streamTimeout
				var streams []*stream
				for range 2 {
					s, _ := hubClient(t, srv, registered)
					streams = append(streams, s)
				}
				hub.Broadcast("last")
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := tt.shutdown(ctx, hub, server); err != nil {
					t.Fatalf("Shutdown: got %v, want nil", err)
				}
				for _, s := range streams {
					s.expect("data: last\n\n")
					rest, err := io.ReadAll(s.br)
					if err != nil || !strings.HasPrefix(string(rest), tt.tail) || (tt.tail == "") != (len(rest) == 0) {
						t.Errorf("end of stream: got %q, err %v; want %q... then EOF", rest, err, tt.tail)
					}
				}
			})
		}
	})
}

func testGuideErrorHandling(t *testing.T) {
	t.Run("ErrNoFlusher", func(t *testing.T) {
		logs := captureLog(t)
		w := &noFlushWriter{header: http.Header{}}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		var upgradeErr error
		func() {
			conn, err := sse.Upgrade(w, r)
			if err != nil {
				upgradeErr = err
				if errors.Is(err, sse.ErrNoFlusher) {
					// ResponseWriter doesn't support flushing
					log.Println("Incompatible server or proxy")
				}
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			conn.Close()
		}()
		if !errors.Is(upgradeErr, sse.ErrNoFlusher) {
			t.Fatalf("Upgrade: got %v, want ErrNoFlusher", upgradeErr)
		}
		if want := sse.ErrNoFlusher.Error() + "\n"; w.status != 500 || w.body.String() != want {
			t.Errorf("response: got %d %q, want 500 %q", w.status, w.body.String(), want)
		}
		if got, want := logs.String(), "Incompatible server or proxy\n"; got != want {
			t.Errorf("log: got %q, want %q", got, want)
		}
	})

	t.Run("ErrConnectionClosed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w, conn := upgradeFake(t)
			conn.Close()
			event := sse.NewEvent("late")
			closed := false
			func() {
				if err := conn.Send(event); err != nil {
					if errors.Is(err, sse.ErrConnectionClosed) {
						// Connection already closed
						closed = true
						return
					}
					log.Printf("Send error: %v", err)
					return
				}
			}()
			if !closed {
				t.Fatal("Send after Close: want an error matching ErrConnectionClosed")
			}
			if got, want := w.Body(), ": connected\n\n"; got != want {
				t.Errorf("body: got %q, want %q", got, want)
			}
		})
	})

	t.Run("ErrHubClosed", func(t *testing.T) {
		logs := captureLog(t) // net/http's complaint about the status
		hub := sse.NewHub[string]()
		go hub.Run()
		hub.Close()
		registerErrs := make(chan error, 1)
		srv := guideServer(t, func(w http.ResponseWriter, r *http.Request) {
			conn, err := sse.Upgrade(w, r)
			if err != nil {
				return
			}
			defer conn.Close()
			err = hub.Register(conn)
			registerErrs <- err
			if err != nil {
				if errors.Is(err, sse.ErrHubClosed) {
					// Hub is shutting down
					http.Error(w, "Service unavailable", http.StatusServiceUnavailable)
					return
				}
			}
		})
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if registerErr := <-registerErrs; !errors.Is(registerErr, sse.ErrHubClosed) {
			t.Fatalf("Register: got %v, want ErrHubClosed", registerErr)
		}
		// As README says, the status was sent by Upgrade and cannot change.
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), ": connected\n\n") {
			t.Errorf("response: got %d %q, want 200 starting with \": connected\\n\\n\"", resp.StatusCode, body)
		}
		if got, want := logs.String(), "http: superfluous response.WriteHeader call"; !strings.Contains(got, want) {
			t.Errorf("log: got %q, want net/http's %q", got, want)
		}
		// The way README gives to refuse with 503: serve the hub itself.
		w := httptest.NewRecorder()
		hub.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
		if want := sse.ErrHubClosed.Error() + "\n"; w.Code != http.StatusServiceUnavailable || w.Body.String() != want {
			t.Errorf("hub.ServeHTTP: got %d %q, want 503 %q", w.Code, w.Body.String(), want)
		}
	})

	t.Run("ClientDisconnection", func(t *testing.T) {
		logs := captureLog(t)
		messages := make(chan string)
		returned := make(chan error, 1)
		srv := guideServer(t, func(w http.ResponseWriter, r *http.Request) {
			conn, err := sse.Upgrade(w, r)
			if err != nil {
				return
			}
			defer conn.Close()
			for {
				select {
				case msg := <-messages:
					if err := conn.SendData(msg); err != nil {
						// Client disconnected or send failed
						log.Printf("Client error: %v", err)
						returned <- err
						return
					}
				case <-conn.Done():
					// Clean disconnect
					log.Println("Client disconnected")
					returned <- nil
					return
				}
			}
		})
		s := get(t, srv.Client(), srv.URL)
		messages <- "one"
		messages <- "two"
		s.expect(": connected\n\ndata: one\n\ndata: two\n\n")
		s.resp.Body.Close()
		select {
		case err := <-returned:
			if err != nil {
				t.Errorf("loop ended with %v, want a clean disconnect", err)
			}
			if got, want := logs.String(), "Client disconnected\n"; got != want {
				t.Errorf("log: got %q, want %q", got, want)
			}
		case <-time.After(streamTimeout):
			t.Fatal("the loop did not end after the client left")
		}
	})

	t.Run("FieldInjection", func(t *testing.T) {
		// The guide writes any Type and ID; we refuse a line break in them.
		for _, tt := range []struct {
			name string
			ev   *sse.Event
		}{
			{"Type", sse.NewEvent("x").WithType("a\nevent: admin")},
			{"ID", sse.NewEvent("x").WithID("1\ndata: forged")},
			{"TypeCR", sse.NewEvent("x").WithType("a\rb")},
		} {
			t.Run(tt.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					w, conn := upgradeFake(t)
					defer conn.Close()
					if err := conn.Send(tt.ev); !errors.Is(err, sse.ErrInvalidEvent) {
						t.Errorf("Send: got %v, want ErrInvalidEvent", err)
					}
					hub := sse.NewHub[*sse.Event]()
					go hub.Run()
					defer hub.Close()
					hub.Register(conn)
					if err := hub.Broadcast(tt.ev); !errors.Is(err, sse.ErrInvalidEvent) {
						t.Errorf("Broadcast: got %v, want ErrInvalidEvent", err)
					}
					if err := conn.SendData("ok"); err != nil {
						t.Errorf("SendData after the refusal: got %v, want nil", err)
					}
					if got, want := w.Body(), ": connected\n\ndata: ok\n\n"; got != want {
						t.Errorf("body: got %q, want %q", got, want)
					}
				})
			})
		}
	})
}

// streamUntilDone stands for the "// ..." after Upgrade in the guide's
// handlers: it streams until the client goes away.
func streamUntilDone(w http.ResponseWriter, r *http.Request) {
	conn, err := sse.Upgrade(w, r)
	if err != nil {
		return
	}
	defer conn.Close()
	<-conn.Done()
}

// metric stands in for the guide's Prometheus gauge and counter.
type metric struct{ atomic.Int64 }

func (m *metric) Inc() { m.Add(1) }
func (m *metric) Dec() { m.Add(-1) }

func validateToken(token string) bool { return token == "Bearer s3cret" }

func testGuideProduction(t *testing.T) {
	t.Run("CORS", func(t *testing.T) {
		srv := guideServer(t, func(w http.ResponseWriter, r *http.Request) {
			// CORS headers
			w.Header().Set("Access-Control-Allow-Origin", "*")
			w.Header().Set("Access-Control-Allow-Methods", "GET, OPTIONS")
			w.Header().Set("Access-Control-Allow-Headers", "Last-Event-ID")
			if r.Method == "OPTIONS" {
				return
			}
			streamUntilDone(w, r) // conn, err := sse.Upgrade(w, r) // ...
		})
		req, _ := http.NewRequest(http.MethodOptions, srv.URL, nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Headers") != "Last-Event-ID" {
			t.Errorf("OPTIONS: got %d %v, want 200 with Access-Control-Allow-Headers: Last-Event-ID", resp.StatusCode, resp.Header)
		}
		s := get(t, srv.Client(), srv.URL)
		if got := s.resp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Errorf("GET: Access-Control-Allow-Origin %q, want \"*\"", got)
		}
		s.expect(": connected\n\n")
	})

	t.Run("Authentication", func(t *testing.T) {
		srv := guideServer(t, func(w http.ResponseWriter, r *http.Request) {
			// Validate JWT token
			token := r.Header.Get("Authorization")
			if !validateToken(token) {
				http.Error(w, "Unauthorized", http.StatusUnauthorized)
				return
			}
			streamUntilDone(w, r) // conn, err := sse.Upgrade(w, r) // ...
		})
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || string(body) != "Unauthorized\n" {
			t.Errorf("no token: got %d %q, want 401 \"Unauthorized\\n\"", resp.StatusCode, body)
		}
		get(t, srv.Client(), srv.URL, "Authorization", "Bearer s3cret").expect(": connected\n\n")
	})

	t.Run("Monitoring", func(t *testing.T) {
		// The guide's metrics are Prometheus ones; these stand-ins have
		// the methods the snippet calls.
		var sseConnections, sseEvents metric
		events := make(chan *sse.Event, 2)
		events <- sse.NewEvent("a").WithID("1")
		events <- sse.NewEvent("b").WithType("t")
		close(events)
		streamed, returned := make(chan struct{}), make(chan struct{})
		srv := guideServer(t, func(w http.ResponseWriter, r *http.Request) {
			defer close(returned)
			conn, err := sse.Upgrade(w, r)
			if err != nil {
				return
			}
			defer conn.Close()
			sseConnections.Inc()
			defer sseConnections.Dec()
			for event := range events {
				conn.Send(event)
				sseEvents.Inc()
			}
			// Not in the guide, whose handler ends the stream here:
			close(streamed)
			<-conn.Done()
		})
		s := get(t, srv.Client(), srv.URL)
		s.expect(": connected\n\nid: 1\ndata: a\n\nevent: t\ndata: b\n\n")
		<-streamed
		if c, e := sseConnections.Load(), sseEvents.Load(); c != 1 || e != 2 {
			t.Errorf("while streaming: connections %d, events %d; want 1, 2", c, e)
		}
		s.resp.Body.Close()
		<-returned
		if c := sseConnections.Load(); c != 0 {
			t.Errorf("after the client left: connections %d, want 0", c)
		}
	})

	t.Run("ConnectionLimits", func(t *testing.T) {
		const maxConnections = 10000
		var activeConnections atomic.Int64
		entered := make(chan struct{}, 1)
		srv := guideServer(t, func(w http.ResponseWriter, r *http.Request) {
			if activeConnections.Load() >= maxConnections {
				http.Error(w, "Too many connections", http.StatusServiceUnavailable)
				return
			}
			activeConnections.Add(1)
			defer activeConnections.Add(-1)
			conn, err := sse.Upgrade(w, r)
			if err != nil {
				return
			}
			defer conn.Close()
			entered <- struct{}{}
			<-conn.Done()
		})
		get(t, srv.Client(), srv.URL).expect(": connected\n\n")
		<-entered
		if n := activeConnections.Load(); n != 1 {
			t.Fatalf("activeConnections: got %d, want 1", n)
		}
		activeConnections.Add(maxConnections - 1) // as if 9 999 more were open
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		activeConnections.Add(-(maxConnections - 1))
		if resp.StatusCode != http.StatusServiceUnavailable || string(body) != "Too many connections\n" {
			t.Errorf("over the limit: got %d %q, want 503 \"Too many connections\\n\"", resp.StatusCode, body)
		}
	})
}

// ChatServer is the guide's chat rooms, one hub per room.
type ChatServer struct {
	rooms map[string]*sse.Hub[Message]
	mu    sync.RWMutex
}

func (cs *ChatServer) GetRoom(name string) *sse.Hub[Message] {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	hub, ok := cs.rooms[name]
	if !ok {
		hub = sse.NewHub[Message]()
		go hub.Run()
		cs.rooms[name] = hub
	}
	return hub
}

func (cs *ChatServer) handleEvents(w http.ResponseWriter, r *http.Request) {
	room := r.URL.Query().Get("room")
	if room == "" {
		room = "default"
	}
	hub := cs.GetRoom(room)
	conn, _ := sse.Upgrade(w, r)
	hub.Register(conn)
	defer hub.Unregister(conn)
	<-conn.Done()
}

// EventLog is the guide's replay log.
type EventLog struct {
	events []sse.Event
	mu     sync.RWMutex
}

func (el *EventLog) Add(event *sse.Event) {
	el.mu.Lock()
	el.events = append(el.events, *event)
	el.mu.Unlock()
}

func (el *EventLog) ReplayFrom(conn *sse.Conn, lastID string) {
	el.mu.RLock()
	defer el.mu.RUnlock()
	found := false
	for _, event := range el.events {
		if event.ID == lastID {
			found = true
			continue
		}
		if found || lastID == "" {
			conn.Send(&event)
		}
	}
}

// FilteredHub is the guide's hub with a filter per client.
type FilteredHub struct {
	hub     *sse.Hub[Message]
	filters map[*sse.Conn]func(Message) bool
	mu      sync.RWMutex
}

func (fh *FilteredHub) RegisterWithFilter(conn *sse.Conn, filter func(Message) bool) {
	fh.hub.Register(conn)
	fh.mu.Lock()
	fh.filters[conn] = filter
	fh.mu.Unlock()
}

func (fh *FilteredHub) Broadcast(msg Message) {
	fh.mu.RLock()
	defer fh.mu.RUnlock()
	for conn, filter := range fh.filters {
		if filter(msg) {
			conn.SendJSON(msg)
		}
	}
}

func testGuideAdvanced(t *testing.T) {
	t.Run("ChatRooms", func(t *testing.T) {
		cs := &ChatServer{rooms: map[string]*sse.Hub[Message]{}}
		t.Cleanup(func() {
			for _, hub := range cs.rooms {
				hub.Close()
			}
		})
		srv := guideServer(t, cs.handleEvents)
		open := func(query string, clients int) *stream {
			s := get(t, srv.Client(), srv.URL+query)
			s.expect(": connected\n\n")
			room := strings.TrimPrefix(query, "?room=")
			if room == "" {
				room = "default"
			}
			if !sse.WaitFor(streamTimeout, func() bool { return cs.GetRoom(room).Clients() == clients }) {
				t.Fatalf("room %q: got %d clients, want %d", room, cs.GetRoom(room).Clients(), clients)
			}
			return s
		}
		go1, go2 := open("?room=go", 1), open("?room=go", 2)
		def := open("", 1)
		cs.GetRoom("go").Broadcast(Message{User: "Alice", Text: "Hi"})
		cs.GetRoom("default").Broadcast(Message{User: "Bob", Text: "Hey"})
		go1.expect("data: {\"user\":\"Alice\",\"text\":\"Hi\"}\n\n")
		go2.expect("data: {\"user\":\"Alice\",\"text\":\"Hi\"}\n\n")
		def.expect("data: {\"user\":\"Bob\",\"text\":\"Hey\"}\n\n")
		cs.mu.RLock()
		defer cs.mu.RUnlock()
		if n := len(cs.rooms); n != 2 {
			t.Errorf("rooms: got %d, want 2", n)
		}
	})

	t.Run("EventReplay", func(t *testing.T) {
		eventLog := &EventLog{}
		for i := 1; i <= 3; i++ {
			eventLog.Add(sse.NewEvent(fmt.Sprintf("m%d", i)).WithID(fmt.Sprintf("evt-%d", i)))
		}
		srv := guideServer(t, func(w http.ResponseWriter, r *http.Request) {
			conn, _ := sse.Upgrade(w, r)
			defer conn.Close()
			// Replay missed events
			lastID := r.Header.Get("Last-Event-ID")
			eventLog.ReplayFrom(conn, lastID)
			// Continue with live events
			conn.SendComment("live")
			<-conn.Done()
		})
		all := []string{"id: evt-1\ndata: m1\n\n", "id: evt-2\ndata: m2\n\n", "id: evt-3\ndata: m3\n\n"}
		for _, tt := range []struct {
			name, lastID, want string
		}{
			{"FirstConnection", "", strings.Join(all, "")},
			{"Resume", "evt-1", all[1] + all[2]},
			{"UpToDate", "evt-3", ""},
			{"UnknownID", "evt-9", ""}, // the guide's loop then replays nothing
		} {
			t.Run(tt.name, func(t *testing.T) {
				var header []string
				if tt.lastID != "" {
					header = []string{"Last-Event-ID", tt.lastID}
				}
				s := get(t, srv.Client(), srv.URL, header...)
				s.expect(": connected\n\n" + tt.want + ": live\n\n")
			})
		}
	})

	t.Run("FilteredHub", func(t *testing.T) {
		fh := &FilteredHub{hub: sse.NewHub[Message](), filters: map[*sse.Conn]func(Message) bool{}}
		go fh.hub.Run()
		t.Cleanup(func() { fh.hub.Close() })
		registered := make(chan struct{}, 2)
		srv := guideServer(t, func(w http.ResponseWriter, r *http.Request) {
			conn, err := sse.Upgrade(w, r)
			if err != nil {
				return
			}
			defer conn.Close()
			user := r.URL.Query().Get("user")
			fh.RegisterWithFilter(conn, func(m Message) bool { return m.User == user })
			defer func() {
				fh.mu.Lock()
				delete(fh.filters, conn)
				fh.mu.Unlock()
				fh.hub.Unregister(conn)
			}()
			registered <- struct{}{}
			<-conn.Done()
		})
		alice := get(t, srv.Client(), srv.URL+"?user=alice")
		alice.expect(": connected\n\n")
		<-registered
		bob := get(t, srv.Client(), srv.URL+"?user=bob")
		bob.expect(": connected\n\n")
		<-registered
		fh.Broadcast(Message{User: "alice", Text: "1"})
		fh.Broadcast(Message{User: "bob", Text: "2"})
		fh.Broadcast(Message{User: "alice", Text: "3"})
		alice.expect("data: {\"user\":\"alice\",\"text\":\"1\"}\n\ndata: {\"user\":\"alice\",\"text\":\"3\"}\n\n")
		bob.expect("data: {\"user\":\"bob\",\"text\":\"2\"}\n\n")
	})

	t.Run("Backpressure", func(t *testing.T) {
		logs := captureLog(t)
		messages := guideMessages("a", "b", "c")
		srv := guideServer(t, func(w http.ResponseWriter, r *http.Request) {
			conn, _ := sse.Upgrade(w, r)
			defer conn.Close()
			// Buffered channel for backpressure
			events := make(chan string, 100)
			// Sender goroutine
			go func() {
				for event := range events {
					if err := conn.SendData(event); err != nil {
						return
					}
				}
			}()
			// Producer
			for msg := range messages {
				select {
				case events <- msg:
					// Sent successfully
				default:
					// Channel full, drop or handle
					log.Println("Slow client, dropping message")
				}
			}
			close(events) // not in the guide: ends the sender goroutine
			<-conn.Done()
		})
		get(t, srv.Client(), srv.URL).expect(": connected\n\ndata: a\n\ndata: b\n\ndata: c\n\n")
		if got := logs.String(); got != "" {
			t.Errorf("log: got %q, want nothing dropped", got)
		}
	})
}
