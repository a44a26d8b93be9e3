package fanout

import (
	"bytes"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// errEnded is what a testSink ended by its test returns.
var errEnded = errors.New("fanout test: stream ended")

// testSink is a Sink that keeps what it is written. A test holds its
// writes up with block, and makes them stall (as a client that does not
// read would) with stall.
type testSink struct {
	wlock chan struct{} // the write lock, a channel: synctest sees it block

	mu       sync.Mutex
	out      bytes.Buffer
	writes   int
	err      error
	watchers []Watcher
	narrow   bool
	last     int64
	wrote    chan struct{} // signalled after each write
	stalled  bool          // WriteAt calls stall, then blocks until release
	release  chan struct{}
}

func newTestSink() *testSink {
	return &testSink{wlock: make(chan struct{}, 1), last: time.Now().UnixNano(), wrote: make(chan struct{}, 1), release: make(chan struct{})}
}

func (s *testSink) LockWrite()   { s.wlock <- struct{}{} }
func (s *testSink) UnlockWrite() { <-s.wlock }
func (s *testSink) WaitWrites()  { s.LockWrite(); s.UnlockWrite() }

func (s *testSink) WriteAt(b Batch, _ bool, start int64, stall func()) error {
	s.mu.Lock()
	stalled, err := s.stalled, s.err
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if stalled {
		if stall != nil {
			stall()
		}
		<-s.release
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.out.Write(b.P)
	for _, v := range b.V {
		s.out.Write(v)
	}
	s.writes++
	s.last = start
	select {
	case s.wrote <- struct{}{}:
	default:
	}
	return nil
}

// stall makes the writes from now on stall until unstall.
func (s *testSink) stall() {
	s.mu.Lock()
	s.stalled = true
	s.mu.Unlock()
}

// unstall lets the stalled writes through.
func (s *testSink) unstall() {
	s.mu.Lock()
	s.stalled = false
	s.mu.Unlock()
	close(s.release)
}

func (s *testSink) written() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

func (s *testSink) Narrow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.narrow
}

func (s *testSink) Vectored() bool        { return false }
func (s *testSink) Bound(int64) bool      { return true }
func (s *testSink) Unbound() error        { return nil }
func (s *testSink) Deadlineless() bool    { return false }
func (s *testSink) SendsHeartbeats() bool { return false }
func (s *testSink) Gone() bool            { return false }

func (s *testSink) LastWrite() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func (s *testSink) End(cause error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = cause
	ws := s.watchers
	s.watchers = nil
	s.mu.Unlock()
	for _, w := range ws {
		w.StreamEnded()
	}
}

func (s *testSink) Drop(cause error) { s.End(cause) }

func (s *testSink) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *testSink) Watch(w Watcher) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return false
	}
	s.watchers = append(s.watchers, w)
	return true
}

func (s *testSink) Unwatch(w Watcher) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watchers = slices.DeleteFunc(s.watchers, func(x Watcher) bool { return x == w })
}

// testConfig is a Config for tests: the defaults of the sse package,
// without heartbeats.
func testConfig() Config {
	return Config{
		QueueSize:    1024,
		MaxBytes:     256 << 20,
		Retry:        time.Second,
		Comment:      []byte(": keep-alive\n\n"),
		WriteTimeout: 10 * time.Second,
		Closed:       errors.New("fanout test: closed"),
		Ended:        errEnded,
		Gone:         errors.New("fanout test: client gone"),
	}
}

// newTestEngine returns an engine configured by cfg, closed when the
// test ends.
func newTestEngine(t *testing.T, cfg Config) *Engine {
	t.Helper()
	h := New(cfg)
	t.Cleanup(func() { h.Close() })
	return h
}
