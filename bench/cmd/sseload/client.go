package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The load clients are deliberately minimal so that they are not the
// bottleneck: one goroutine per raw TCP connection (Go's netpoller does
// the multiplexing), a hand-written GET, an incremental chunked-encoding
// decoder and an SSE scanner that only looks at "data:" lines and blank
// lines. Nothing is allocated per event.

const (
	readBufSize = 16 << 10
	dialers     = 64 // connections dialled at once
)

// runSpec describes the measured run the clients are counting.
type runSpec struct {
	id      int64
	events  int  // events per client
	latency bool // keep a latency sample per event
	// orders is how many publishers send the events at once, publisher
	// k those with seq ≡ k (mod orders): events are in order when each
	// publisher's are. 0 means 1.
	orders int
}

// pool is a set of clients connected to one server.
type pool struct {
	addr    string
	path    string // request target of the event stream
	header  string // extra request header lines, each ending in CRLF
	clients []*client

	completed atomic.Int64 // clients that have every event of the current run
	alive     atomic.Int64
}

// client is one SSE connection.
type client struct {
	p    *pool
	addr string // the server's host:port; "": the pool's
	conn net.Conn

	alive     atomic.Bool
	lastPrime atomic.Int64 // highest priming event seen

	// Everything below is touched by the reading goroutine under mu,
	// held for the handling of one read.
	mu      sync.Mutex
	err     error
	spec    *runSpec
	bits    []uint64
	got     int
	dups    int
	stray   int
	late    int     // events that arrived after one with a higher sequence number
	lastSeq []int64 // per publisher (runSpec.orders): highest sequence number seen in this run
	doneAt  int64   // unix ns when got reached spec.events
	lastAt  int64   // unix ns of the last measured event
	lats    []int64
	pubs    []int64 // unix ns each event of lats was published
	evKind  byte
	evRun   int64
	evSeq   int64
	evTS    int64
	evValid bool

	// parser state, reading goroutine only
	chunked   bool
	cstate    int
	chunkLeft int
	sizeLine  []byte
	partial   []byte
	now       int64
}

func newPool(addr string, n int) *pool {
	p := &pool{addr: addr, path: eventsPath, clients: make([]*client, n)}
	for i := range p.clients {
		p.clients[i] = &client{p: p}
	}
	return p
}

// connect dials every client that is not connected, a few at a time.
func (p *pool) connect(ctx context.Context) error {
	var todo []*client
	for _, c := range p.clients {
		if !c.alive.Load() {
			todo = append(todo, c)
		}
	}
	return dialAll(ctx, len(todo), func(i int) error { return todo[i].dial(ctx) })
}

// dialAll calls dial(0) … dial(n-1), dialers at a time, and returns the
// first error, or ctx's if it ends before every call started.
func dialAll(ctx context.Context, n int, dial func(i int) error) error {
	sem := make(chan struct{}, dialers)
	errc := make(chan error, n)
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := dial(i); err != nil {
				errc <- err
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc // nil when every dial succeeded
}

func (c *client) dial(ctx context.Context) error {
	addr := c.addr
	if addr == "" {
		addr = c.p.addr
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	req := "GET " + c.p.path + " HTTP/1.1\r\nHost: " + addr +
		"\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n" + c.p.header + "\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return fmt.Errorf("write request: %w", err)
	}
	c.mu.Lock()
	c.conn = conn
	c.err = nil
	c.chunked, c.cstate, c.chunkLeft = false, 0, 0
	c.sizeLine, c.partial = c.sizeLine[:0], c.partial[:0]
	c.evValid = false
	c.mu.Unlock()
	c.alive.Store(true)
	c.p.alive.Add(1)
	go c.read(conn)
	return nil
}

// close closes every connection and waits briefly for the readers.
func (p *pool) close() {
	for _, c := range p.clients {
		c.mu.Lock()
		if c.conn != nil {
			if tc, ok := c.conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // no TIME_WAIT pile-up between runs
			}
			c.conn.Close()
		}
		c.mu.Unlock()
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.alive.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// begin makes spec the run being counted and resets every client for it.
func (p *pool) begin(spec *runSpec) {
	p.completed.Store(0)
	for _, c := range p.clients {
		c.mu.Lock()
		c.reset(spec)
		c.mu.Unlock()
	}
}

func (c *client) reset(spec *runSpec) {
	c.spec = spec
	words := (spec.events + 63) / 64
	if cap(c.bits) >= words {
		c.bits = c.bits[:words]
		clear(c.bits)
	} else {
		c.bits = make([]uint64, words)
	}
	c.got, c.dups, c.stray, c.late, c.doneAt, c.lastAt = 0, 0, 0, 0, 0, 0
	c.lastSeq = c.lastSeq[:0]
	for range max(1, spec.orders) {
		c.lastSeq = append(c.lastSeq, -1)
	}
	c.lats, c.pubs = c.lats[:0], c.pubs[:0]
	if spec.latency && cap(c.lats) < spec.events {
		c.lats, c.pubs = make([]int64, 0, spec.events), make([]int64, 0, spec.events)
	}
}

func (c *client) read(conn net.Conn) {
	buf := make([]byte, readBufSize)
	err := c.readHeader(conn, buf)
	for err == nil {
		var n int
		n, err = conn.Read(buf)
		if n > 0 {
			c.mu.Lock()
			c.now = time.Now().UnixNano()
			perr := c.feed(buf[:n])
			c.mu.Unlock()
			if perr != nil {
				err = perr
			}
		}
	}
	conn.Close()
	c.mu.Lock()
	if !errors.Is(err, net.ErrClosed) {
		c.err = err
	}
	c.mu.Unlock()
	c.alive.Store(false)
	c.p.alive.Add(-1)
}

// readHeader reads the response head, checks for 200 and notes whether
// the body is chunked; body bytes read along with it are fed on.
func (c *client) readHeader(conn net.Conn, buf []byte) error {
	n := 0
	for {
		if n == len(buf) {
			return errors.New("response header too large")
		}
		m, err := conn.Read(buf[n:])
		n += m
		if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 {
			head := buf[:i]
			if !bytes.HasPrefix(head, []byte("HTTP/1.1 200")) && !bytes.HasPrefix(head, []byte("HTTP/1.0 200")) {
				line, _, _ := bytes.Cut(head, []byte("\r\n"))
				return fmt.Errorf("unexpected response %q", line)
			}
			lower := bytes.ToLower(head)
			c.mu.Lock()
			c.chunked = bytes.Contains(lower, []byte("\r\ntransfer-encoding: chunked"))
			c.now = time.Now().UnixNano()
			perr := c.feed(buf[i+4 : n])
			c.mu.Unlock()
			return perr
		}
		if err != nil {
			return err
		}
	}
}

const (
	csSize = iota // reading a chunk-size line
	csData        // reading chunk data
	csCRLF        // skipping the CRLF after chunk data
)

var errBodyEnded = errors.New("server ended the stream")

// feed decodes the transfer encoding and passes the payload to scan.
func (c *client) feed(p []byte) error {
	if !c.chunked {
		c.scan(p)
		return nil
	}
	for len(p) > 0 {
		switch c.cstate {
		case csSize:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				c.sizeLine = append(c.sizeLine, p...)
				return nil
			}
			line := p[:i]
			if len(c.sizeLine) > 0 {
				c.sizeLine = append(c.sizeLine, line...)
				line = c.sizeLine
			}
			size, ok := parseHex(line)
			c.sizeLine = c.sizeLine[:0]
			p = p[i+1:]
			if !ok {
				return fmt.Errorf("bad chunk size line %q", line)
			}
			if size == 0 {
				return errBodyEnded
			}
			c.chunkLeft, c.cstate = size, csData
		case csData:
			k := min(len(p), c.chunkLeft)
			c.scan(p[:k])
			p = p[k:]
			c.chunkLeft -= k
			if c.chunkLeft == 0 {
				c.cstate, c.chunkLeft = csCRLF, 2
			}
		case csCRLF:
			k := min(len(p), c.chunkLeft)
			p = p[k:]
			c.chunkLeft -= k
			if c.chunkLeft == 0 {
				c.cstate = csSize
			}
		}
	}
	return nil
}

// parseHex parses a chunk-size line: hex digits, then optional
// extensions and a CR.
func parseHex(b []byte) (int, bool) {
	n, digits := 0, 0
	for _, ch := range b {
		var v int
		switch {
		case '0' <= ch && ch <= '9':
			v = int(ch - '0')
		case 'a' <= ch && ch <= 'f':
			v = int(ch-'a') + 10
		case 'A' <= ch && ch <= 'F':
			v = int(ch-'A') + 10
		default:
			return n, digits > 0
		}
		if digits++; digits > 8 {
			return 0, false
		}
		n = n<<4 | v
	}
	return n, digits > 0
}

// scan splits the event stream into lines.
func (c *client) scan(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.partial = append(c.partial, p...)
			return
		}
		line := p[:i]
		p = p[i+1:]
		if len(c.partial) > 0 {
			c.partial = append(c.partial, line...)
			line = c.partial
		}
		c.line(line)
		c.partial = c.partial[:0]
	}
}

// line handles one line: "data:" lines are parsed at once (every
// measured event has one line of data), a blank line dispatches.
func (c *client) line(l []byte) {
	if n := len(l); n > 0 && l[n-1] == '\r' {
		l = l[:n-1]
	}
	if len(l) == 0 {
		if c.evValid {
			c.event()
			c.evValid = false
		}
		return
	}
	v, ok := bytes.CutPrefix(l, []byte("data:"))
	if !ok {
		return // comments, id:, event:, retry:
	}
	v = bytes.TrimPrefix(v, []byte(" "))
	v = bytes.TrimPrefix(v, []byte(`"`)) // tolerate a JSON-quoted string
	if len(v) < 2 || (v[0] != 'd' && v[0] != 'p') || v[1] != ' ' {
		return
	}
	c.evKind = v[0]
	v = v[2:]
	var ok1, ok2, ok3 bool
	c.evRun, v, ok1 = nextInt(v)
	c.evSeq, v, ok2 = nextInt(v)
	c.evTS, _, ok3 = nextInt(v)
	c.evValid = ok1 && ok2 && ok3
}

// nextInt parses a non-negative decimal followed by a space.
func nextInt(b []byte) (int64, []byte, bool) {
	var n int64
	for i, ch := range b {
		if ch == ' ' {
			return n, b[i+1:], i > 0
		}
		if ch < '0' || ch > '9' {
			return 0, nil, false
		}
		n = n*10 + int64(ch-'0')
	}
	return 0, nil, false
}

// event counts one complete event.
func (c *client) event() {
	if c.evKind == 'p' {
		if c.evRun > c.lastPrime.Load() {
			c.lastPrime.Store(c.evRun)
		}
		return
	}
	spec := c.spec
	if spec == nil || spec.id != c.evRun {
		c.stray++
		return
	}
	seq := c.evSeq
	if seq < 0 || seq >= int64(spec.events) {
		c.stray++
		return
	}
	w, bit := seq/64, uint64(1)<<(seq%64)
	if c.bits[w]&bit != 0 {
		c.dups++
		return
	}
	last := &c.lastSeq[seq%int64(len(c.lastSeq))]
	if seq < *last {
		c.late++
	}
	*last = max(*last, seq)
	c.bits[w] |= bit
	c.got++
	c.lastAt = c.now
	if spec.latency {
		c.lats = append(c.lats, c.now-c.evTS)
		c.pubs = append(c.pubs, c.evTS)
	}
	if c.got == spec.events {
		c.doneAt = c.now
		c.p.completed.Add(1)
	}
}

// runResult is what the clients saw of one run.
type runResult struct {
	clients   int // clients counted (connected at the start)
	delivered int64
	lost      int64
	dups      int64
	stray     int64
	late      int64 // events that arrived out of order
	complete  int   // counted clients with every event, in order, once
	dropped   int   // clients disconnected during the run
	lastAt    int64 // unix ns of the last delivery
	lats      []int64
	pubs      []int64 // unix ns each event of lats was published
	firstErr  error
}

// collect sums what every client saw of spec. Only clients in counted
// (the ones connected when the run began) are expected to have events.
func (p *pool) collect(spec *runSpec, counted []bool) runResult {
	var r runResult
	for i, c := range p.clients {
		c.mu.Lock()
		if c.spec == spec {
			r.delivered += int64(c.got)
			r.dups += int64(c.dups)
			r.stray += int64(c.stray)
			r.lastAt = max(r.lastAt, c.lastAt)
			r.lats = append(r.lats, c.lats...)
			r.pubs = append(r.pubs, c.pubs...)
		}
		if counted[i] {
			r.clients++
			if c.spec == spec {
				r.lost += int64(spec.events - c.got)
				r.late += int64(c.late)
				if c.got == spec.events && c.dups == 0 && c.late == 0 {
					r.complete++
				}
			} else {
				r.lost += int64(spec.events)
			}
			if !c.alive.Load() {
				r.dropped++
				if r.firstErr == nil && c.err != nil {
					r.firstErr = c.err
				}
			}
		}
		c.mu.Unlock()
	}
	return r
}

// aliveSet reports which clients are connected now.
func (p *pool) aliveSet() ([]bool, int) {
	s := make([]bool, len(p.clients))
	n := 0
	for i, c := range p.clients {
		if c.alive.Load() {
			s[i] = true
			n++
		}
	}
	return s, n
}

// progress sums the events of spec received so far.
func (p *pool) progress(spec *runSpec) int64 {
	var n int64
	for _, c := range p.clients {
		c.mu.Lock()
		if c.spec == spec {
			n += int64(c.got)
		}
		c.mu.Unlock()
	}
	return n
}

// settled reports whether every counted client has all events of spec
// or is disconnected.
func (p *pool) settled(spec *runSpec, counted []bool) bool {
	for i, c := range p.clients {
		if !counted[i] || !c.alive.Load() {
			continue
		}
		c.mu.Lock()
		done := c.spec == spec && c.got == spec.events
		c.mu.Unlock()
		if !done {
			return false
		}
	}
	return true
}

// primed counts connected clients that have seen priming event k or later.
func (p *pool) primed(k int64) (primed, alive int) {
	for _, c := range p.clients {
		if c.alive.Load() {
			alive++
			if c.lastPrime.Load() >= k {
				primed++
			}
		}
	}
	return primed, alive
}
