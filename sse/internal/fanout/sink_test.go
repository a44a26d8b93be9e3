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
// writes up with LockWrite, and makes them stall (as a client that does
// not read would) with stall: each write then calls its stall callback,
// unless quiet, and blocks until unstall or the stream's end.
type testSink struct {
	wlock chan struct{} // the write lock, a channel: synctest sees it block

	mu       sync.Mutex
	out      bytes.Buffer
	writes   int
	err      error
	watchers []Watcher
	narrow   bool
	vectored bool     // takes Batch.V; each batch's V is kept in batches
	batches  [][]byte // with vectored: the bytes of each batch, framing entries marked "|"
	entries  []int    // with vectored: the events in each batch
	sizes    []int    // with vectored: each batch's Size
	last     int64
	wrote    chan struct{} // signalled after each write
	stalled  bool          // WriteAt blocks until release is closed
	quiet    bool          // a stalled write does not call its stall callback
	release  chan struct{}
	// suspends: a stalled write given a Resumer is suspended instead of
	// blocking (kept, its Resumer told on unstall or the end), as a
	// Conn's on a connection it watches.
	suspends  bool
	kept      *Batch  // the suspended write
	resumer   Resumer // to tell when it may go on; nil once told
	suspended int     // suspensions so far
	// roomAtOnce: a suspended write finds room again at once, and its
	// Resumer is told before WriteAt returns.
	roomAtOnce bool
	// slowSuspend: a write takes this long before it is suspended.
	slowSuspend     time.Duration
	bounds, unbound int // Bound and Unbound calls
}

// registerAll registers sinks with h for every event, failing the test
// when one is refused.
func registerAll(t *testing.T, h *Engine, sinks ...*testSink) {
	t.Helper()
	for _, s := range sinks {
		if err := h.RegisterAll(s); err != nil {
			t.Fatal(err)
		}
	}
}

func newTestSink() *testSink {
	return &testSink{wlock: make(chan struct{}, 1), last: time.Now().UnixNano(), wrote: make(chan struct{}, 1)}
}

func (s *testSink) LockWrite()   { s.wlock <- struct{}{} }
func (s *testSink) UnlockWrite() { <-s.wlock }

func (s *testSink) WriteAt(b Batch, _ bool, start int64, stall func()) error {
	s.mu.Lock()
	stalled, quiet, release, err := s.stalled, s.quiet, s.release, s.err
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if stalled && s.suspends && b.R != nil {
		time.Sleep(s.slowSuspend)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.err == nil && s.stalled {
			kept := b
			kept.V = slices.Clone(b.V) // the engine reuses its vector
			s.kept, s.resumer = &kept, b.R
			s.suspended++
			if s.roomAtOnce {
				s.stalled = false
				close(s.release)
				r := s.tellResumerLocked()
				s.mu.Unlock()
				r.Resume() // before the engine saw ErrSuspended
				// Let a writer that Resume may have handed the client
				// to take it before this one returns.
				time.Sleep(time.Millisecond)
				s.mu.Lock()
			}
			return ErrSuspended
		}
		if s.err != nil {
			return s.err
		}
		return s.recordLocked(b, start)
	}
	if stalled {
		if stall != nil && !quiet {
			stall()
		}
		<-release
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err // cut short by the end, as a Conn's write is
	}
	return s.recordLocked(b, start)
}

// Continue goes on with the suspended write: it fails once the stream
// ended, is suspended again while the sink is stalled, and is written
// otherwise.
func (s *testSink) Continue() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.kept
	switch {
	case b == nil:
		panic("fanout test: Continue without a suspended write")
	case s.err != nil:
		s.kept = nil
		return s.err
	case s.stalled:
		s.resumer = b.R
		s.suspended++
		return ErrSuspended
	}
	s.kept = nil
	return s.recordLocked(*b, 0)
}

// tellResumerLocked returns the Resumer of a suspended write, to be
// told once s.mu is released, and forgets it.
func (s *testSink) tellResumerLocked() Resumer {
	r := s.resumer
	s.resumer = nil
	return r
}

func (s *testSink) recordLocked(b Batch, start int64) error {
	s.out.Write(b.P)
	if s.vectored {
		var one []byte
		for i, v := range b.V {
			if i == 0 || i == len(b.V)-1 {
				one = append(one, '|') // the stream's framing goes here
				continue
			}
			one = append(one, v...)
		}
		s.batches = append(s.batches, one)
		s.entries = append(s.entries, len(b.V)-2)
		s.sizes = append(s.sizes, b.Size)
		s.out.Write(one[1 : len(one)-1])
	}
	s.writes++
	if start == 0 {
		start = time.Now().UnixNano() // as a Conn does
	}
	s.last = start
	select {
	case s.wrote <- struct{}{}:
	default:
	}
	return nil
}

// stall makes the writes from now on stall until unstall; with quiet,
// without telling the writer (the engine's watchdog then finds them).
func (s *testSink) stall(quiet bool) {
	s.mu.Lock()
	s.stalled, s.quiet = true, quiet
	s.release = make(chan struct{})
	s.mu.Unlock()
}

// unstall lets the stalled writes through, and a suspended one go on.
func (s *testSink) unstall() {
	s.mu.Lock()
	s.stalled = false
	close(s.release)
	r := s.tellResumerLocked()
	s.mu.Unlock()
	if r != nil {
		r.Resume()
	}
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

func (s *testSink) Vectored() bool { return s.vectored }
func (s *testSink) Bound(int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bounds++
	return true
}

func (s *testSink) Unbound() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unbound++
	return nil
}

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
	if s.stalled {
		// A stalled write is cut short, as a Conn's is.
		s.stalled = false
		close(s.release)
	}
	ws := s.watchers
	s.watchers = nil
	r := s.tellResumerLocked()
	s.mu.Unlock()
	if r != nil {
		r.Resume() // a suspended write is cut short too
	}
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

// wire is an Encoder that gives every group the same bytes.
type wire []byte

func (w wire) Wire([]string, func(string) string) []byte { return w }
