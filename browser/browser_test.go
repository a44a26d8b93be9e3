package browser_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// chromium returns the browser binary or fails the test with how to get it.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found: install it (Debian: apt-get update && apt-get install -y chromium) or set CHROMIUM to its path")
	return ""
}

// page collects what the browser's EventSource sees and posts it back.
const page = `<!doctype html>
<meta charset="utf-8">
<title>sse browser test</title>
<script>
const seen = [];
let opens = 0;
const es = new EventSource(%q);
function record(e) {
  seen.push({type: e.type, data: e.data, lastEventId: e.lastEventId});
  if (seen.length === %d) {
    es.close();
    fetch('/result', {method: 'POST', body: JSON.stringify({opens, seen})});
  }
}
es.onopen = () => { opens++; };
es.onmessage = record;
for (const t of %s) es.addEventListener(t, record);
</script>
`

type seenEvent struct {
	Type        string `json:"type"`
	Data        string `json:"data"`
	LastEventID string `json:"lastEventId"`
}

type result struct {
	Opens int         `json:"opens"`
	Seen  []seenEvent `json:"seen"`
}

// runBrowser serves a page that listens to streamPath on mux, opens it in
// headless Chromium and returns what the page saw once it saw want events.
func runBrowser(t *testing.T, mux *http.ServeMux, streamPath string, want int, types []string) result {
	t.Helper()
	bin := chromium(t)
	results := make(chan result, 1)
	typesJSON, _ := json.Marshal(types)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, page, streamPath, want, typesJSON)
	})
	mux.HandleFunc("POST /result", func(w http.ResponseWriter, r *http.Request) {
		var res result
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &res); err != nil {
			t.Errorf("result %q: %v", body, err)
		}
		select {
		case results <- res:
		default:
		}
	})
	favicon := func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }
	mux.HandleFunc("GET /favicon.ico", favicon)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--disable-extensions", "--user-data-dir="+t.TempDir(), srv.URL+"/")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	select {
	case res := <-results:
		return res
	case err := <-exited:
		t.Fatalf("chromium exited before the page reported (%v):\n%s", err, stderr.String())
	case <-ctx.Done():
		t.Fatalf("no result from the page within 60s; chromium said:\n%s", stderr.String())
	}
	return result{}
}

func TestBrowserReceivesEventsAndResumes(t *testing.T) {
	var mu sync.Mutex
	var lastIDs []string
	sendErrs := make(chan error, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		conn, err := sse.Upgrade(w, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer conn.Close()
		mu.Lock()
		lastIDs = append(lastIDs, conn.LastEventID())
		mu.Unlock()
		if conn.LastEventID() == "" {
			conn.Send(sse.NewEvent("first").WithID("1").WithRetry(50))
			conn.Send(sse.NewEvent("line one\nline two\r\nline three").WithID("2"))
			// Refused: the browser must never see an injected event.
			sendErrs <- conn.Send(sse.NewEvent("x").WithID("3\nevent: admin\ndata: pwned"))
			conn.Send(sse.NewEvent("Hello, World!").WithType("greeting").WithID("3"))
			conn.SendComment("ignored")
			return // the browser reconnects after 50 ms with Last-Event-ID: 3
		}
		conn.SendData("no id: keeps 3")
		conn.Send(sse.NewEvent("last").WithID("4"))
		<-conn.Done()
	})
	res := runBrowser(t, mux, "/events", 5, []string{"greeting", "admin"})
	want := []seenEvent{
		{"message", "first", "1"},
		{"message", "line one\nline two\nline three", "2"},
		{"greeting", "Hello, World!", "3"},
		{"message", "no id: keeps 3", "3"},
		{"message", "last", "4"},
	}
	if fmt.Sprint(res.Seen) != fmt.Sprint(want) {
		t.Errorf("browser saw %q,\nwant %q", res.Seen, want)
	}
	if res.Opens != 2 {
		t.Errorf("browser opened the stream %d times, want 2", res.Opens)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(lastIDs) != fmt.Sprint([]string{"", "3"}) {
		t.Errorf("Last-Event-ID per connection = %q, want [\"\" \"3\"]", lastIDs)
	}
	if err := <-sendErrs; !errors.Is(err, sse.ErrInvalidEvent) {
		t.Errorf("injecting Send = %v, want ErrInvalidEvent", err)
	}
}

func TestBrowserHubBroadcast(t *testing.T) {
	type Message struct {
		User string `json:"user"`
		Text string `json:"text"`
	}
	hub := sse.NewHub[Message]()
	t.Cleanup(func() { hub.Close() })
	registered := make(chan struct{}, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		conn, err := sse.Upgrade(w, r)
		if err != nil {
			return
		}
		defer conn.Close()
		if err := hub.Register(conn); err != nil {
			return
		}
		defer hub.Unregister(conn)
		registered <- struct{}{}
		<-conn.Done()
	})
	go func() {
		<-registered
		for i := range 3 {
			hub.Broadcast(Message{User: "alice", Text: fmt.Sprint("hi ", i)})
		}
	}()
	res := runBrowser(t, mux, "/events", 3, nil)
	want := []seenEvent{
		{"message", `{"user":"alice","text":"hi 0"}`, ""},
		{"message", `{"user":"alice","text":"hi 1"}`, ""},
		{"message", `{"user":"alice","text":"hi 2"}`, ""},
	}
	if fmt.Sprint(res.Seen) != fmt.Sprint(want) {
		t.Errorf("browser saw %q,\nwant %q", res.Seen, want)
	}
}

// A browser resuming from an ID the history does not hold sees the gap
// event, then every retained event, then live ones; and one resuming
// from a known ID gets exactly what it missed.
func TestBrowserServerGapAndResume(t *testing.T) {
	events := &sse.Server{Options: sse.Options{Heartbeat: -1}}
	t.Cleanup(func() { events.Close() })
	ctx := t.Context()
	var ids []string
	for _, text := range []string{"one", "two", "three"} {
		id, err := events.Publish(ctx, "", sse.NewEvent(text))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	mux := http.NewServeMux()
	// EventSource cannot set headers: the first Last-Event-ID goes in the
	// lastEventId query parameter.
	mux.Handle("GET /events", events)
	res := runBrowser(t, mux, "/events?lastEventId=gone", 4, []string{sse.GapEventType})
	want := []seenEvent{
		{sse.GapEventType, ids[0], ""},
		{"message", "one", ids[0]},
		{"message", "two", ids[1]},
		{"message", "three", ids[2]},
	}
	if fmt.Sprint(res.Seen) != fmt.Sprint(want) {
		t.Errorf("browser saw %q,\nwant %q", res.Seen, want)
	}

	mux = http.NewServeMux()
	mux.Handle("GET /events", events)
	res = runBrowser(t, mux, "/events?lastEventId="+ids[1], 1, nil)
	want = []seenEvent{{"message", "three", ids[2]}}
	if fmt.Sprint(res.Seen) != fmt.Sprint(want) {
		t.Errorf("resuming browser saw %q,\nwant %q", res.Seen, want)
	}
}
