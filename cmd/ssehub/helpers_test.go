package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testSecret is the HMAC key of the hubs the tests start.
const testSecret = "0123456789abcdef0123456789abcdef"

// testHub is a hub started by run on 127.0.0.1:0.
type testHub struct {
	base     string // http://127.0.0.1:port
	url      string // base + /.well-known/mercure
	resource string
	cancel   context.CancelFunc
	done     chan error

	mu  sync.Mutex
	log strings.Builder
}

// startHub runs the hub with args (after -addr 127.0.0.1:0 and the test
// key) and env, and stops it when the test ends, failing it if run
// returned an error.
func startHub(t testing.TB, env map[string]string, args ...string) *testHub {
	t.Helper()
	return startRun(t, env, append([]string{"-addr", "127.0.0.1:0", "-jwt-key", testSecret}, args...))
}

// startRun runs the hub with exactly args and env; see startHub.
func startRun(t testing.TB, env map[string]string, all []string) *testHub {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	h := &testHub{cancel: cancel, done: make(chan error, 1)}
	go func() {
		h.done <- run(ctx, all, func(k string) string { return env[k] }, pw)
		pw.Close()
	}()
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			h.mu.Lock()
			h.log.WriteString(line + "\n")
			h.mu.Unlock()
			if _, rest, ok := strings.Cut(line, "ssehub: listening\" url="); ok && !sent {
				ready <- strings.Fields(rest)[0]
				sent = true
			}
		}
		if !sent {
			close(ready)
		}
	}()
	select {
	case u, ok := <-ready:
		if !ok {
			cancel()
			t.Fatalf("hub did not start: %v\n%s", <-h.done, h.logs())
		}
		h.url = u
		h.base = strings.TrimSuffix(u, "/.well-known/mercure")
		h.resource = u
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("hub did not start within 10s")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-h.done; err != nil {
			t.Errorf("run returned %v, want nil", err)
		}
	})
	return h
}

func (h *testHub) logs() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.log.String()
}

// claims returns the usual claims of a token for h granting details.
func (h *testHub) claims(details ...map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{"aud": h.resource, "exp": time.Now().Add(time.Hour).Unix()}
	if details != nil {
		ds := make([]any, len(details))
		for i, d := range details {
			ds[i] = d
		}
		c["authorization_details"] = ds
	}
	return c
}

// detail returns a mercure authorization detail for actions on exact
// topics ("*" included).
func detail(actions string, topics ...string) map[string]any {
	ts := make([]any, len(topics))
	for i, tp := range topics {
		ts[i] = map[string]any{"match": tp}
	}
	return map[string]any{"type": "mercure", "actions": strings.Split(actions, ","), "topics": ts}
}

// sign signs claims with the test key as an at+jwt token.
func sign(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	return signWith(t, jwt.SigningMethodHS256, []byte(testSecret), "at+jwt", claims)
}

func signWith(t testing.TB, m jwt.SigningMethod, key any, typ string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if typ == "" {
		delete(tok.Header, "typ")
	} else {
		tok.Header["typ"] = typ
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// admin returns a token granting publish and subscribe on every topic.
func (h *testHub) admin(t testing.TB) string {
	return sign(t, h.claims(detail("publish,subscribe", "*")))
}

// publish posts form with token (none when empty) and returns the
// status, body and response.
func (h *testHub) publish(t *testing.T, token string, form url.Values) (int, string, *http.Response) {
	t.Helper()
	req, _ := http.NewRequest("POST", h.url, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(t, req)
}

// mustPublish publishes form with an admin token and returns the id.
func (h *testHub) mustPublish(t *testing.T, form url.Values) string {
	t.Helper()
	code, body, _ := h.publish(t, h.admin(t), form)
	if code != http.StatusOK {
		t.Fatalf("publish %v: got %d %q, want 200", form, code, body)
	}
	return body
}

func do(t *testing.T, req *http.Request) (int, string, *http.Response) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b), res
}

// get requests h.url with query and headers and returns the status,
// body and response; for streams use subscribe.
func (h *testHub) get(t *testing.T, query string, header http.Header) (int, string, *http.Response) {
	t.Helper()
	req, _ := http.NewRequest("GET", h.url+"?"+query, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.Header.Get("Content-Type") == "text/event-stream" {
		return res.StatusCode, "", res // a stream: do not wait for its end
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b), res
}

// stream is an open subscription.
type stream struct {
	t   *testing.T
	res *http.Response
	br  *bufio.Reader
}

// subscribe opens a stream on h with query and headers, failing the test
// unless it answers 200.
func (h *testHub) subscribe(t *testing.T, query string, header http.Header) *stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", h.url+"?"+query, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("subscribe %q: got %d %q, want 200", query, res.StatusCode, b)
	}
	s := &stream{t: t, res: res, br: bufio.NewReader(res.Body)}
	if got := s.block(true); got != ": connected\n\n" {
		t.Fatalf("stream opened with %q, want %q", got, ": connected\n\n")
	}
	return s
}

// block returns the next block of lines up to and including the blank
// line, comments included when comments is true.
func (s *stream) block(comments bool) string {
	s.t.Helper()
	for {
		var b strings.Builder
		for {
			line, err := s.br.ReadString('\n')
			if err != nil {
				s.t.Fatalf("reading stream after %q: %v", b.String(), err)
			}
			b.WriteString(line)
			if line == "\n" {
				break
			}
		}
		if comments || !strings.HasPrefix(b.String(), ":") {
			return b.String()
		}
	}
}

// next returns the next event block, skipping comments.
func (s *stream) next() string {
	s.t.Helper()
	return s.block(false)
}

// expectEnd fails the test unless the stream ends before anything else.
func (s *stream) expectEnd() {
	s.t.Helper()
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			return
		}
		if line != "\n" && !strings.HasPrefix(line, ":") && !strings.HasPrefix(line, "retry:") {
			s.t.Fatalf("got %q, want the end of the stream", line)
		}
	}
}

// form builds url.Values from pairs.
func form(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

// ev is the wire form of an event with id and data.
func ev(id, data string) string {
	return "id: " + id + "\ndata: " + data + "\n\n"
}
