package sse_test

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coregx/stream/sse"
)

// fakeWriter is an http.ResponseWriter that records what is written and
// can block writes, for tests that run in a synctest bubble.
type fakeWriter struct {
	mu       sync.Mutex
	header   http.Header
	status   int
	writes   []string // one entry per Write
	flushes  int
	deadline time.Time
	dlMoved  chan struct{} // closed when the deadline changes
	block    chan struct{} // when non-nil, Write waits for it or the deadline
	noDL     bool          // SetWriteDeadline is not supported
	dlCalls  int           // SetWriteDeadline calls
}

func newFakeWriter() *fakeWriter {
	return &fakeWriter{header: http.Header{}, dlMoved: make(chan struct{})}
}

func (f *fakeWriter) Header() http.Header { return f.header }

func (f *fakeWriter) WriteHeader(code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.status == 0 {
		f.status = code
	}
}

func (f *fakeWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	if f.status == 0 {
		f.status = http.StatusOK
	}
	block := f.block
	f.mu.Unlock()
	for block != nil {
		// Like a net.Conn, a blocked write obeys deadline changes.
		f.mu.Lock()
		deadline, moved := f.deadline, f.dlMoved
		f.mu.Unlock()
		var timeout <-chan time.Time
		if !deadline.IsZero() {
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-block:
			block = nil
		case <-timeout:
			return 0, os.ErrDeadlineExceeded
		case <-moved:
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes = append(f.writes, string(p))
	return len(p), nil
}

func (f *fakeWriter) Flush() {
	f.mu.Lock()
	f.flushes++
	f.mu.Unlock()
}

func (f *fakeWriter) SetWriteDeadline(t time.Time) error {
	if f.noDL {
		return http.ErrNotSupported
	}
	f.mu.Lock()
	f.dlCalls++
	f.deadline = t
	close(f.dlMoved)
	f.dlMoved = make(chan struct{})
	f.mu.Unlock()
	return nil
}

// setBlock makes later writes wait until the returned func is called.
func (f *fakeWriter) setBlock() (release func()) {
	ch := make(chan struct{})
	f.mu.Lock()
	f.block = ch
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		f.block = nil
		f.mu.Unlock()
		close(ch)
	}
}

func (f *fakeWriter) Writes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.writes...)
}

func (f *fakeWriter) Body() string { return strings.Join(f.Writes(), "") }

// noFlushWriter is a ResponseWriter that cannot flush.
type noFlushWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *noFlushWriter) Header() http.Header         { return w.header }
func (w *noFlushWriter) WriteHeader(code int)        { w.status = code }
func (w *noFlushWriter) Write(p []byte) (int, error) { return w.body.Write(p) }

// wrapWriter is middleware's writer: it offers only Unwrap.
type wrapWriter struct {
	http.ResponseWriter
	bytes int
}

func (w *wrapWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.bytes += n
	return n, err
}

func (w *wrapWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// stream reads an event stream response.
type stream struct {
	t    *testing.T
	resp *http.Response
	br   *bufio.Reader
}

// get opens an event stream at url with client c and checks the status.
func get(t *testing.T, c *http.Client, url string, header ...string) *stream {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", resp.StatusCode)
	}
	return &stream{t: t, resp: resp, br: bufio.NewReader(resp.Body)}
}

// next reads exactly len(want) bytes and compares them with want.
func (s *stream) expect(want string) {
	s.t.Helper()
	got := make([]byte, len(want))
	n, err := io.ReadFull(s.br, got)
	if err != nil {
		s.t.Fatalf("reading %q: got %q, err %v", want, got[:n], err)
	}
	if string(got) != want {
		s.t.Fatalf("stream: got %q, want %q", got, want)
	}
}

// block reads one event block, up to and including its blank line.
func (s *stream) block() string {
	s.t.Helper()
	var b strings.Builder
	for {
		line, err := s.br.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			s.t.Fatalf("reading event: got %q, err %v", b.String(), err)
		}
		if line == "\n" {
			return b.String()
		}
	}
}

// expectEOF checks that the stream ends cleanly with no further bytes.
func (s *stream) expectEOF() {
	s.t.Helper()
	rest, err := io.ReadAll(s.br)
	if len(rest) > 0 || err != nil {
		s.t.Fatalf("after end: got %q, err %v; want a clean end", rest, err)
	}
}

// expectClientGone checks, in a testing/synctest bubble, that the handler
// whose request's context was just cancelled returned (done is closed) and
// that its one client was counted as gone.
func expectClientGone(t *testing.T, done <-chan struct{}, stats func() sse.Stats) {
	t.Helper()
	synctest.Wait()
	select {
	case <-done:
	default:
		t.Fatal("ServeHTTP still running after the request's context ended")
	}
	if st := stats(); st.Clients != 0 || st.ClientDisconnects != 1 {
		t.Errorf("Stats: %d clients, %d client disconnects; want 0, 1", st.Clients, st.ClientDisconnects)
	}
}

// deadlineCalls returns how many times SetWriteDeadline was called.
func (f *fakeWriter) deadlineCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dlCalls
}

// currentDeadline returns the write deadline now set.
func (f *fakeWriter) currentDeadline() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deadline
}

// defaultMaxEventSize is the documented size limit of one event when
// Reader.MaxEventSize or Client.MaxEventSize is zero.
const defaultMaxEventSize = 16 << 20
