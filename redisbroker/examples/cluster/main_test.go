package main

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRun starts two nodes on Redis and checks that the page names its
// node and that a tick of one node reaches a client of the other.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	addrs := make([]string, 2)
	done := make(chan error, 2)
	for i, node := range []string{"A", "B"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = ln.Addr().String()
		ln.Close()
		var out bytes.Buffer
		go func() { done <- run(ctx, []string{"-node", node, "-addr", addrs[i], "-every", "50ms"}, &out) }()
	}
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	})
	var resp *http.Response
	for deadline := time.Now().Add(10 * time.Second); ; {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addrs[1]+"/events", nil)
		var err error
		if resp, err = http.DefaultClient.Do(req); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node B: %v (is Redis running on 127.0.0.1:6379?)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	ticked := false
	for !ticked && sc.Scan() {
		ticked = strings.HasPrefix(sc.Text(), "data: node A: tick ")
	}
	if !ticked {
		t.Fatalf("reading node B's stream: got end of stream (%v), want a tick of node A", sc.Err())
	}
	page, err := http.Get("http://" + addrs[0] + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer page.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(page.Body)
	if !strings.Contains(b.String(), "<h1>Served by node A</h1>") {
		t.Errorf("page of node A: got %q, want it to name node A", b.String())
	}
}
