package examples_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// binDir holds the example programs, built once by TestMain.
var binDir string

// buildErr is the output of a failed build, reported by every test.
var buildErr error

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sse-examples-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	buildErr = build(dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// build compiles every example into dir.
func build(dir string) error {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("go command not found: %w", err)
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if raceEnabled() {
		// Build the programs as the tests are built: they then share the
		// compiled standard library, and data races in them are caught.
		args = append(args, "-race")
	}
	cmd := exec.Command(gobin, append(args, "./...")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./...: %v\n%s", err, out)
	}
	return nil
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

var examples = []string{
	"quickstart", "chat", "dashboard", "replay", "filtered",
	"backpressure", "auth", "shutdown", "keepalive", "tail",
}

// TestBuild checks that every example builds (in TestMain) and prints its
// usage for -h, which checks that it starts and parses its flags.
func TestBuild(t *testing.T) {
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	for _, name := range examples {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, filepath.Join(binDir, name), "-h")
		cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
		out, _ := cmd.CombinedOutput()
		cancel()
		if name != "tail" && !bytes.Contains(out, []byte("-addr")) {
			t.Errorf("%s -h: no -addr flag in usage:\n%s", name, out)
		}
	}
}

// proc is a running example.
type proc struct {
	cmd     *exec.Cmd
	url     string // base URL, "http://127.0.0.1:PORT"
	logs    *logWriter
	exited  chan struct{} // closed when the program has exited
	waitErr error         // how it exited, once exited is closed
}

// logWriter collects a program's stderr and spots the address it listens on.
type logWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	addr chan string
	sent bool
}

var listening = regexp.MustCompile(`listening on (http://\S+)`)

func (lw *logWriter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	lw.buf.Write(p)
	if lw.sent {
		return len(p), nil
	}
	if m := listening.FindSubmatch(lw.buf.Bytes()); m != nil {
		lw.sent = true
		lw.addr <- string(m[1])
	}
	return len(p), nil
}

func (lw *logWriter) String() string {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.buf.String()
}

// start runs the named example on a free loopback port and returns once
// it listens. The program is killed when the test ends.
func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	lw := &logWriter{addr: make(chan string, 1)}
	// Port 0 lets the kernel pick a free port; the program logs which.
	cmd := exec.Command(filepath.Join(binDir, name), append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	cmd.Stdout, cmd.Stderr = lw, lw
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0 halt_on_error=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: lw, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
		if strings.Contains(lw.String(), "DATA RACE") {
			t.Errorf("%s: data race", name)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, lw)
		}
	})
	select {
	case p.url = <-lw.addr:
		return p
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not start listening", name)
		return nil
	}
}

// stream is one open event stream.
type stream struct {
	resp *http.Response
	br   *bufio.Reader
	rd   *sse.Reader
}

// open sends a GET to url, checks for an event stream, and consumes the
// opening comment. The stream is closed when the test ends, and after 10
// seconds at the latest.
func open(t *testing.T, url string, header http.Header) *stream {
	t.Helper()
	resp := get(t, url, header)
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("GET %s: Content-Type %q", url, ct)
	}
	s := &stream{resp: resp, br: bufio.NewReader(resp.Body)}
	s.expectRaw(t, ": connected\n\n")
	s.rd = sse.NewReader(s.br)
	return s
}

// get sends a GET to url with a 10-second limit on the whole exchange.
func get(t *testing.T, url string, header http.Header) *http.Response {
	t.Helper()
	return do(t, http.MethodGet, url, header)
}

func do(t *testing.T, method, url string, header http.Header) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	return resp
}

// post sends a POST to url and returns the response body.
func post(t *testing.T, url string) string {
	t.Helper()
	resp := do(t, http.MethodPost, url, nil)
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s: %s", url, resp.Status, body)
	}
	return string(body)
}

// expectRaw reads len(want) bytes and compares them with want.
func (s *stream) expectRaw(t *testing.T, want string) {
	t.Helper()
	got := make([]byte, len(want))
	n, err := io.ReadFull(s.br, got)
	if string(got[:n]) != want {
		t.Fatalf("stream: got %q (%v), want %q", got[:n], err, want)
	}
}

// next returns the next event.
func (s *stream) next(t *testing.T) sse.Event {
	t.Helper()
	ev, err := s.rd.Next()
	if err != nil {
		t.Fatalf("reading event: %v", err)
	}
	return ev
}

// expect reads the next event and compares it with want.
func (s *stream) expect(t *testing.T, want sse.Event) {
	t.Helper()
	if got := s.next(t); got != want {
		t.Fatalf("event: got %+v, want %+v", got, want)
	}
}

func (s *stream) close() { s.resp.Body.Close() }

func TestQuickstart(t *testing.T) {
	p := start(t, "quickstart", "-every", "20ms")
	s := open(t, p.url+"/events", nil)
	// The exact bytes of the guide's output.
	s.expectRaw(t, "data: ping\n\ndata: ping\n\ndata: ping\n\n")

	resp := get(t, p.url+"/", nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("new EventSource('/events')")) {
		t.Errorf("GET /: %s\n%s", resp.Status, body)
	}
}

func TestChat(t *testing.T) {
	p := start(t, "chat")
	goRoom := open(t, p.url+"/events?room=go", nil)
	lobby := open(t, p.url+"/events", nil)
	// The opening comment was seen, so both are registered.
	if got := post(t, p.url+"/send?room=go&user=alice&text=hi%0Athere"); got != "sent to 1 clients\n" {
		t.Errorf("send: %q", got)
	}
	post(t, p.url+"/send?user=bob&text=%3Cb%3Elobby")
	post(t, p.url+"/send?room=none&user=bob&text=lost")
	post(t, p.url+"/send?room=go&user=bob&text=bye")

	goRoom.expect(t, sse.Event{Type: "message", Data: `{"user":"alice","text":"hi\nthere"}`})
	goRoom.expect(t, sse.Event{Type: "message", Data: `{"user":"bob","text":"bye"}`})
	lobby.expect(t, sse.Event{Type: "message", Data: `{"user":"bob","text":"\u003cb\u003elobby"}`})

	resp := do(t, http.MethodPost, p.url+"/send?room=go&user=bob", nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("send without text: %s", resp.Status)
	}
}

func TestDashboard(t *testing.T) {
	p := start(t, "dashboard", "-every", "20ms")
	s := open(t, p.url+"/events", nil)
	for i := range 3 { // the first sample, then broadcast ones
		ev := s.next(t)
		var m struct {
			Time       time.Time `json:"time"`
			Goroutines int       `json:"goroutines"`
			HeapAlloc  uint64    `json:"heap_alloc"`
			Clients    *int      `json:"clients"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &m); err != nil || ev.Type != "metrics" {
			t.Fatalf("event %d: %+v: %v", i, ev, err)
		}
		if m.Time.IsZero() || m.Goroutines == 0 || m.HeapAlloc == 0 || m.Clients == nil {
			t.Errorf("event %d: missing metrics: %s", i, ev.Data)
		}
	}
}

// TestReplay checks that a client resuming with Last-Event-ID gets every
// later event exactly once and in order, across the switch from replay to
// live events, while events are published every millisecond; and that one
// whose ID the history does not hold gets the gap event first.
func TestReplay(t *testing.T) {
	p := start(t, "replay", "-every", "1ms", "-size", "10000")
	s := open(t, p.url+"/events", nil)
	// A first connection gets live events only.
	first, err := strconv.Atoi(s.next(t).ID)
	if err != nil || first < 1 {
		t.Fatalf("first event ID %d (%v), want a number from 1", first, err)
	}
	for id := first + 1; id <= first+5; id++ {
		s.expect(t, replayEvent(id))
	}
	if retry, ok := s.rd.Retry(); retry != time.Second || !ok {
		t.Errorf("retry: got %v, %v; want 1s, true", retry, ok)
	}
	s.close()

	// The subtests run in parallel, and all end before t.Run returns.
	t.Run("resume", func(t *testing.T) {
		for _, c := range []struct {
			lastID string
			gap    bool
			first  int
		}{
			{"3", false, 4}, {"20", false, 21}, {"bogus", true, 1}, {"999999", true, 1},
		} {
			t.Run("Last-Event-ID="+c.lastID, func(t *testing.T) {
				t.Parallel()
				// Let events pile up for the replay, and some go live.
				time.Sleep(50 * time.Millisecond)
				s := open(t, p.url+"/events", http.Header{"Last-Event-ID": {c.lastID}})
				if c.gap {
					s.expect(t, sse.Event{Type: sse.GapEventType, Data: "1"})
				}
				for id := c.first; id < c.first+300; id++ {
					s.expect(t, replayEvent(id))
				}
			})
		}
	})
}

// replayEvent returns the event examples/replay publishes with ID id.
func replayEvent(id int) sse.Event {
	return sse.Event{Type: "message", ID: strconv.Itoa(id), Data: "event " + strconv.Itoa(id)}
}

// TestReplayHistoryBound checks that a client that fell out of the
// bounded history gets the gap event, then what is left of it.
func TestReplayHistoryBound(t *testing.T) {
	p := start(t, "replay", "-every", "1ms", "-size", "5")
	s := open(t, p.url+"/events", nil)
	for range 20 {
		s.next(t)
	}
	s.close()
	s = open(t, p.url+"/events", http.Header{"Last-Event-ID": {"1"}})
	gap := s.next(t)
	oldest, err := strconv.Atoi(gap.Data)
	if gap.Type != sse.GapEventType || err != nil || oldest < 16 {
		t.Fatalf("got %+v, want a gap event naming an event after 15", gap)
	}
	for id := oldest; id < oldest+20; id++ {
		s.expect(t, replayEvent(id))
	}
}

func TestFiltered(t *testing.T) {
	p := start(t, "filtered", "-every", "0")
	warn := open(t, p.url+"/events?level=warn", nil)
	info := open(t, p.url+"/events", nil)
	for _, q := range []string{"level=debug&msg=d", "level=info&msg=i", "level=warn&msg=w", "level=error&msg=e"} {
		if resp := do(t, http.MethodPost, p.url+"/log?"+q, nil); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("POST /log?%s: %s", q, resp.Status)
		}
	}
	// The server numbers the entries 1 to 4, in the order posted.
	entry := func(id, level, msg string) sse.Event {
		return sse.Event{Type: "message", ID: id, Data: `{"level":"` + level + `","msg":"` + msg + `"}`}
	}
	warn.expect(t, entry("3", "warn", "w"))
	warn.expect(t, entry("4", "error", "e"))
	info.expect(t, entry("2", "info", "i"))
	info.expect(t, entry("3", "warn", "w"))
	info.expect(t, entry("4", "error", "e"))

	// A client resuming after entry 1 gets what it missed, filtered.
	resumed := open(t, p.url+"/events?level=error", http.Header{"Last-Event-ID": {"1"}})
	resumed.expect(t, entry("4", "error", "e"))

	for _, url := range []string{"/events?level=loud", "/log?level=loud&msg=x"} {
		method := http.MethodGet
		if strings.HasPrefix(url, "/log") {
			method = http.MethodPost
		}
		if resp := do(t, method, p.url+url, nil); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s %s: %s, want 400", method, url, resp.Status)
		}
	}
}

// TestBackpressure checks that a client that stops reading is
// disconnected while one that reads stays.
func TestBackpressure(t *testing.T) {
	p := start(t, "backpressure", "-every", "1ms", "-size", "4096", "-queue", "256")
	open(t, p.url+"/events", nil) // never read again
	reader := open(t, p.url+"/events", nil)
	done := make(chan struct{})
	defer func() { <-done }()
	defer reader.close()
	go func() {
		defer close(done)
		io.Copy(io.Discard, reader.br)
	}()

	deadline := time.Now().Add(20 * time.Second)
	for {
		var st sse.Stats
		resp := get(t, p.url+"/stats", nil)
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		if st.SlowDisconnects >= 1 {
			if st.Clients != 1 || st.SlowDisconnects != 1 {
				t.Errorf("stats: %+v; want the reading client only, and one slow disconnect", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stalled client not disconnected: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAuth(t *testing.T) {
	p := start(t, "auth", "-token", "s3cret", "-origin", "https://app.example", "-max", "2", "-every", "20ms")
	events := p.url + "/events"

	// The preflight needs no token and allows Last-Event-ID.
	resp := do(t, http.MethodOptions, events, http.Header{
		"Origin":                         {"https://app.example"},
		"Access-Control-Request-Method":  {"GET"},
		"Access-Control-Request-Headers": {"last-event-id"},
	})
	if resp.StatusCode != http.StatusNoContent ||
		resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Last-Event-ID") {
		t.Errorf("preflight: %s %v", resp.Status, resp.Header)
	}

	for _, h := range []http.Header{nil, {"Authorization": {"Bearer wrong"}}, {"Authorization": {"Basic czNjcmV0"}}} {
		if resp := get(t, events, h); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("GET with %v: %s", h, resp.Status)
		}
	}
	if resp := get(t, events+"?token=wrong", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET with a wrong token: %s", resp.Status)
	}

	byQuery := open(t, events+"?token=s3cret", nil)
	if got := byQuery.resp.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
		t.Errorf("Access-Control-Allow-Origin: %q", got)
	}
	byHeader := open(t, events, http.Header{"Authorization": {"bearer s3cret"}})
	for _, s := range []*stream{byQuery, byHeader} {
		ev := s.next(t)
		if ev.Type != "notification" || !strings.HasPrefix(ev.Data, "notification ") {
			t.Errorf("event: %+v", ev)
		}
	}

	// The third stream is over the limit.
	if resp := get(t, events+"?token=s3cret", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("third stream: %s, want 503", resp.Status)
	}
	// Once one ends, its slot is free again.
	byQuery.close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp := get(t, events+"?token=s3cret", nil)
		if resp.StatusCode == http.StatusOK {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("slot not freed: %s", resp.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestShutdown checks, for every example server, that SIGINT or SIGTERM
// ends its open streams with a retry hint, and the program promptly with
// status 0.
func TestShutdown(t *testing.T) {
	for _, c := range []struct {
		name   string
		args   []string
		paths  []string // streams to open
		events int      // events to read from each before the signal
		sig    os.Signal
	}{
		// Reading an event first makes sure the stream is registered
		// with the hub that ends it.
		{"quickstart", []string{"-every", "20ms"}, []string{"/events"}, 1, os.Interrupt},
		{"chat", nil, []string{"/events", "/events?room=go"}, 0, syscall.SIGTERM},
		{"dashboard", []string{"-every", "20ms"}, []string{"/events"}, 2, syscall.SIGTERM},
		{"replay", []string{"-every", "20ms"}, []string{"/events"}, 1, syscall.SIGTERM},
		{"filtered", []string{"-every", "20ms"}, []string{"/events?level=debug"}, 1, os.Interrupt},
		{"backpressure", []string{"-every", "20ms", "-size", "100"}, []string{"/events"}, 1, syscall.SIGTERM},
		{"auth", []string{"-token", "t", "-every", "20ms"}, []string{"/events?token=t"}, 1, syscall.SIGTERM},
		{"shutdown", []string{"-every", "20ms"}, []string{"/events", "/clock"}, 1, os.Interrupt},
		{"keepalive", []string{"-every", "20ms"}, []string{"/events", "/manual"}, 1, syscall.SIGTERM},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := start(t, c.name, c.args...)
			var streams []*stream
			for _, path := range c.paths {
				s := open(t, p.url+path, nil)
				for range c.events {
					s.next(t)
				}
				streams = append(streams, s)
			}
			began := time.Now()
			if err := p.cmd.Process.Signal(c.sig); err != nil {
				t.Fatal(err)
			}
			for i, s := range streams {
				rest, err := io.ReadAll(s.br)
				if err != nil {
					t.Fatalf("%s: stream ended with %v, want a clean end", c.paths[i], err)
				}
				// The hint asks for 1 s plus up to 5 s at random.
				ms := 0
				if m := retryAtEnd.FindSubmatch(rest); m != nil {
					ms, _ = strconv.Atoi(string(m[1]))
				}
				if ms < 1000 || ms > 6000 {
					t.Errorf("%s: stream ended with %q, want a retry field of 1000 to 6000 ms", c.paths[i], tail(rest))
				}
			}
			select {
			case <-p.exited:
				if p.waitErr != nil {
					t.Fatalf("exit: %v, want status 0", p.waitErr)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the program did not exit within 5 s of the signal")
			}
			if d := time.Since(began); d > 3*time.Second {
				t.Errorf("shutdown took %v, want less than 3 s", d)
			}
			if !strings.Contains(p.logs.String(), "shut down cleanly") {
				t.Errorf("no clean shutdown in the log")
			}
		})
	}
}

// retryAtEnd matches a stream that ends with a retry field.
var retryAtEnd = regexp.MustCompile(`(?:^|\n)retry: (\d+)\n\n$`)

// tail returns the last 200 bytes of b.
func tail(b []byte) []byte { return b[max(len(b)-200, 0):] }

func TestKeepalive(t *testing.T) {
	p := start(t, "keepalive", "-heartbeat", "50ms", "-every", "1h")
	for _, path := range []string{"/events", "/manual"} {
		s := open(t, p.url+path, nil)
		s.expectRaw(t, ": keep-alive\n\n: keep-alive\n\n")
		s.close()
	}
}

// TestPages checks that every example with a page serves it with the
// shared stylesheet, script and favicon.
func TestPages(t *testing.T) {
	assets := []struct{ path, contentType, contains string }{
		{"/style.css", "text/css; charset=utf-8", ".status"},
		{"/status.js", "text/javascript; charset=utf-8", "function watch("},
		{"/favicon.svg", "image/svg+xml", "<svg"},
	}
	for _, name := range []string{"quickstart", "chat", "dashboard", "replay", "filtered"} {
		t.Run(name, func(t *testing.T) {
			var args []string
			if name != "chat" {
				args = []string{"-every", "1h"}
			}
			p := start(t, name, args...)
			resp := get(t, p.url+"/", nil)
			body, _ := io.ReadAll(resp.Body)
			for _, want := range []string{`<meta name="viewport"`, `href="/style.css"`, `href="/favicon.svg"`, `src="/status.js"`, "new EventSource(", "watch(es,"} {
				if !bytes.Contains(body, []byte(want)) {
					t.Errorf("GET /: page lacks %s", want)
				}
			}
			if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/html; charset=utf-8" {
				t.Errorf("GET /: got %s, %q; want 200 OK, text/html", resp.Status, ct)
			}
			for _, a := range assets {
				resp := get(t, p.url+a.path, nil)
				body, _ := io.ReadAll(resp.Body)
				if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != a.contentType {
					t.Errorf("GET %s: got %s, %q; want 200 OK, %q", a.path, resp.Status, ct, a.contentType)
				}
				if !bytes.Contains(body, []byte(a.contains)) {
					t.Errorf("GET %s: body lacks %q", a.path, a.contains)
				}
			}
		})
	}
}
