package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRunConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"UnknownFlag", []string{"-nope"}, nil, "flag provided but not defined: -nope"},
		{"Argument", []string{"extra"}, nil, `unexpected argument "extra"`},
		{"RedisDB", []string{"-broker", "redis://127.0.0.1:6379/x"}, nil, `-broker: redis: invalid database number: "x"`},
		{"Broker", []string{"-broker", "kafka"}, nil, `-broker "kafka": want memory, redis://HOST:PORT[/DB] or nats://HOST:PORT`},
		{"LogFormat", []string{"-log-format", "xml"}, nil, `-log-format "xml": want text or json`},
		{"EnvDuration", nil, map[string]string{"SSEHUB_HEARTBEAT": "soon"}, `SSEHUB_HEARTBEAT="soon": parse error`},
		{"ShortSecret", []string{"-jwt-key", "short"}, nil, "-jwt-key: an HMAC secret needs at least 32 bytes (or give a PEM file)"},
		{"AlgMismatch", []string{"-jwt-key", testSecret, "-jwt-alg", "RS256"}, nil, "-jwt-alg: RS256 does not fit the key (it verifies HS256, HS384, HS512)"},
		{"AlgNone", []string{"-jwt-key", testSecret, "-jwt-alg", "none"}, nil, `-jwt-alg: "none" is never accepted`},
		{"KeyAndJWKS", []string{"-jwt-key", testSecret, "-jwks-url", "http://127.0.0.1:1/jwks"}, nil, "-jwt-key and -jwks-url exclude each other"},
		{"Addr", []string{"-addr", "256.0.0.1:0"}, nil, "-addr 256.0.0.1:0: "},
		{"SubscriptionsTTL", []string{"-subscriptions-ttl", "0s"}, nil, "-subscriptions-ttl must be positive"},
		{"TLSHalf", []string{"-tls-cert", "cert.pem"}, nil, "-tls-cert and -tls-key go together"},
		{"TLSFiles", []string{"-tls-cert", "/nonexistent/cert.pem", "-tls-key", "/nonexistent/key.pem"}, nil, "-tls-cert/-tls-key: open /nonexistent/cert.pem: no such file or directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"-addr", "127.0.0.1:0"}, c.args...)
			err := run(t.Context(), args, func(k string) string { return c.env[k] }, io.Discard)
			var ce *configError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a configError", err)
			}
			if !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got %q, want one line starting %q", err, c.want)
			}
		})
	}
}

func TestRunBrokerUnreachable(t *testing.T) {
	for _, c := range []struct{ broker, want string }{
		{"redis://127.0.0.1:1", "-broker: Redis at 127.0.0.1:1: "},
		{"nats://127.0.0.1:1", "-broker: NATS at 127.0.0.1:1: "},
	} {
		err := run(t.Context(), []string{"-addr", "127.0.0.1:0", "-jwt-key", testSecret, "-broker", c.broker}, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %v, want one line starting %q", c.broker, err, c.want)
		}
	}
}

func TestRunVersion(t *testing.T) {
	var out strings.Builder
	if err := run(t.Context(), []string{"-version"}, func(string) string { return "" }, &out); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "ssehub devel\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestRunEnvironment(t *testing.T) {
	h := startHub(t, map[string]string{"SSEHUB_ANONYMOUS": "true", "SSEHUB_MAX_CONNECTIONS": "1"})
	h.subscribe(t, "match=x", nil) // anonymous allowed by the environment
	code, _, _ := h.get(t, "match=y", nil)
	if code != http.StatusTooManyRequests {
		t.Errorf("second stream: got %d, want 429", code)
	}
}

func TestRunOperations(t *testing.T) {
	h := startHub(t, nil)
	for path, want := range map[string]string{"/healthz": "ok\n", "/readyz": "ready\n"} {
		res, err := http.Get(h.base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || string(b) != want {
			t.Errorf("%s: got %d %q, want 200 %q", path, res.StatusCode, b, want)
		}
	}
	res, err := http.Get(h.base + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(b), `<h1>ssehub</h1>`) {
		t.Errorf("demo page: got %d, want 200 with the demo", res.StatusCode)
	}
}

func TestRunDevMode(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0"}, func(string) string { return "" }, pw)
		pw.Close()
	}()
	out, _ := readUntil(pr, "ssehub: listening")
	cancel()
	io.Copy(io.Discard, pr)
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(out, "DEVELOPMENT MODE") {
		t.Errorf("log %q does not say DEVELOPMENT MODE", out)
	}
	_, rest, _ := strings.Cut(out, "Development token (publish and subscribe on every topic, valid 24h0m0s):\n")
	tok, _, _ := strings.Cut(rest, "\n")
	if strings.Count(tok, ".") != 2 {
		t.Errorf("got dev token %q, want a JWT", tok)
	}
}

// readUntil reads r until a line containing s, returning what it read.
func readUntil(r io.Reader, s string) (string, error) {
	var b strings.Builder
	buf := make([]byte, 1)
	for !strings.Contains(b.String(), s) || !strings.HasSuffix(b.String(), "\n") {
		if _, err := r.Read(buf); err != nil {
			return b.String(), err
		}
		b.Write(buf)
	}
	return b.String(), nil
}

func TestRunGracefulShutdown(t *testing.T) {
	h := startHub(t, nil, "-anonymous")
	s := h.subscribe(t, "match=x", nil)
	start := time.Now()
	h.cancel()
	s.expectEnd()
	if err := <-h.done; err != nil {
		t.Errorf("run: got %v, want nil", err)
	}
	h.done <- nil // for the cleanup
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("shutdown took %v", d)
	}
}

func TestRunMetrics(t *testing.T) {
	h := startHub(t, nil, "-anonymous")
	s := h.subscribe(t, "match=urn:metrics", nil)
	id := h.mustPublish(t, form("topic", "urn:metrics", "data", "x"))
	if got, want := s.next(), ev(id, "x"); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	h.publish(t, "", form("topic", "urn:metrics"))
	res, err := http.Get(h.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{
		"\nssehub_sse_connections 1\n",
		"\nssehub_sse_published_total 1\n",
		"\nssehub_publish_duration_seconds_count{code=\"200\"} 1\n",
		"\nssehub_publish_duration_seconds_count{code=\"401\"} 1\n",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", strings.TrimSpace(want))
		}
	}
}

func TestRunJSONLogs(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	args := []string{"-addr", "127.0.0.1:0", "-jwt-key", testSecret, "-log-format", "json"}
	go func() { done <- run(ctx, args, func(string) string { return "" }, pw); pw.Close() }()
	out, _ := readUntil(pr, `"msg":"ssehub: listening"`)
	cancel()
	io.Copy(io.Discard, pr)
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["msg"] == nil {
			t.Errorf("log line %q is not a JSON record: %v", line, err)
		}
	}
}
