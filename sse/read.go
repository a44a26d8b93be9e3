package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"time"
	"unicode/utf8"
)

// Read returns an iterator over the events of the event stream r, parsed
// as the WHATWG HTML standard ("Server-sent events", "Interpreting an
// event stream") prescribes. See [Reader] for the rules.
//
// Iteration stops at the end of r; an event cut off by the end of input
// is discarded and io.EOF is not yielded. Any other read error is yielded
// once, with a zero Event, and ends the iteration. Use a [Reader] to set a
// maximum event size, observe comments or learn the reconnection time.
func Read(r io.Reader) iter.Seq2[Event, error] {
	return NewReader(r).All()
}

// Reader parses an event stream.
//
// It follows the standard to the letter: the input is decoded as UTF-8,
// each maximal invalid subpart becoming one U+FFFD; one leading byte order
// mark is dropped; lines end with CR, LF or CRLF; a line starting with a
// colon is a comment; a line without a colon is a field whose name is the
// whole line and whose value is empty; one space after the colon is
// removed; the fields event, data, id and retry are honoured and others
// ignored; an empty line dispatches the event. An event whose data buffer
// is empty is not dispatched, and an event not ended by an empty line when
// the input ends is discarded.
//
// An event's Type is "message" when no (or an empty) event field was
// given. Its ID is the last event ID in effect at dispatch, which carries
// over from event to event until an id field changes it; an id field
// containing NUL is ignored. Its Retry is the value of the last valid
// retry field (ASCII digits only) since the previous empty line, else 0;
// use [Reader.Retry] to tell "retry: 0" from none.
//
// A Reader buffers its input and limits the size of one event (and of
// any line, comments included) to MaxEventSize, 16 MiB by default, so
// that a stream without line ends cannot take all memory. A stream of
// comments or empty lines is read in constant memory. It is not safe for
// concurrent use.
type Reader struct {
	// MaxEventSize caps the memory one event may take: the length of
	// the line being read (field name included, line end excluded) plus
	// the data and event type gathered so far for the event. Going over
	// makes Next return an error matching [ErrEventTooLarge], and the
	// Reader stops; its input buffer never grows past one byte more than
	// MaxEventSize. Zero means 16 MiB; a negative value
	// means no limit.
	MaxEventSize int

	// OnComment, when set, is called with the text of each comment line:
	// what follows the leading colon, with one leading space removed. It
	// is called from Next, in stream order: before Next returns the
	// event that follows the comment.
	OnComment func(text string)

	rd      io.Reader
	buf     []byte // buffered input, unread in buf[r:w]
	r, w    int
	scanned int   // bytes at the start of buf[r:w] known to hold no line end
	rerr    error // error from rd, reported once buf is drained
	err     error // sticky error returned by Next

	bomDone bool // the start of the stream has been checked for a BOM
	skipLF  bool // the last line ended in CR: drop an LF that follows

	data    []byte // data buffer, when it holds more than one line
	one     string // the data buffer while it holds one line: its value
	hasOne  bool   // the data buffer is one, followed by an LF
	typ     []byte // event type buffer
	typStr  string // last dispatched non-empty type, reused to save allocations
	idBuf   string // last event ID buffer
	lastID  string // last event ID string, updated on dispatch
	retry   int    // reconnection time in ms from the stream, or -1
	evRetry int    // retry set since the previous dispatch, or 0
}

// defaultMaxEventSize is the size limit of one event when
// Reader.MaxEventSize or Client.MaxEventSize is zero.
const defaultMaxEventSize = 16 << 20

const (
	minBufSize  = 4 << 10
	keepBufSize = 64 << 10 // larger buffers are dropped once idle
	maxEmpty    = 100      // empty reads tolerated in a row
)

// NewReader returns a Reader parsing the event stream r.
func NewReader(r io.Reader) *Reader {
	return &Reader{rd: r, retry: -1}
}

// LastEventID returns the last event ID string: the value of the last id
// field in effect when the most recent empty line was read. Unlike the ID
// of an event, it is updated by an empty line even when no event is
// dispatched (because the data buffer was empty). It persists until
// the stream changes it.
func (r *Reader) LastEventID() string {
	return r.lastID
}

// Retry returns the reconnection time last set by a valid retry field,
// and whether one was seen. It takes effect as soon as the field is read,
// even when no event is dispatched after it.
func (r *Reader) Retry() (time.Duration, bool) {
	if r.retry < 0 {
		return 0, false
	}
	return msDuration(r.retry), true
}

// msDuration converts milliseconds to a Duration, saturating.
func msDuration(ms int) time.Duration {
	if int64(ms) > math.MaxInt64/int64(time.Millisecond) {
		return math.MaxInt64
	}
	return time.Duration(ms) * time.Millisecond
}

// All returns an iterator over the remaining events, with the same rules
// as [Read]. Breaking out of the loop leaves the Reader usable.
func (r *Reader) All() iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		for {
			ev, err := r.Next()
			if err == io.EOF {
				return
			}
			if !yield(ev, err) || err != nil {
				return
			}
		}
	}
}

// Next returns the next dispatched event. At the end of the input it
// returns io.EOF, discarding an unfinished event. A read error is returned
// as is; an event exceeding MaxEventSize gives an error matching
// [ErrEventTooLarge]. After an error, Next keeps returning it.
func (r *Reader) Next() (Event, error) {
	if r.err != nil {
		return Event{}, r.err
	}
	for {
		line, err := r.readLine()
		if err != nil {
			r.err = err
			return Event{}, err
		}
		if len(line) == 0 {
			if ev, ok := r.dispatch(); ok {
				return ev, nil
			}
			continue
		}
		if err := r.processLine(line); err != nil {
			r.err = err
			return Event{}, err
		}
		// Decoding may have grown the buffers past the line: each
		// invalid byte becomes a 3-byte U+FFFD.
		if err := r.checkSize(0); err != nil {
			r.err = err
			return Event{}, err
		}
	}
}

// setLastEventID seeds the last event ID buffer, so that events carry id
// until the stream sets another. A client resuming a stream uses it to
// keep the ID it sent in the Last-Event-ID header.
func (r *Reader) setLastEventID(id string) {
	r.idBuf = id
	r.lastID = id
}

// dispatch runs the standard's dispatch steps at an empty line.
func (r *Reader) dispatch() (Event, bool) {
	r.lastID = r.idBuf
	if len(r.data) == 0 && !r.hasOne {
		r.typ = r.typ[:0]
		r.evRetry = 0
		return Event{}, false
	}
	typ := "message"
	if len(r.typ) > 0 {
		if string(r.typ) != r.typStr {
			r.typStr = string(r.typ)
		}
		typ = r.typStr
	}
	ev := Event{
		Type:  typ,
		ID:    r.lastID,
		Retry: r.evRetry,
	}
	if r.hasOne {
		// The usual event of one data line costs no copy but its
		// string.
		ev.Data = r.one
		r.one, r.hasOne = "", false
	} else {
		ev.Data = string(r.data[:len(r.data)-1])
		if cap(r.data) > keepBufSize {
			r.data = nil
		} else {
			r.data = r.data[:0]
		}
	}
	r.typ = r.typ[:0]
	r.evRetry = 0
	return ev, true
}

// appendData appends a data field's value and an LF to the data buffer.
func (r *Reader) appendData(value []byte) {
	switch {
	case len(r.data) == 0 && !r.hasOne:
		if utf8.Valid(value) {
			r.one = string(value)
		} else {
			r.one = string(appendUTF8(nil, value))
		}
		r.hasOne = true
		return
	case r.hasOne:
		r.data = append(r.data[:0], r.one...)
		r.data = append(r.data, '\n')
		r.one, r.hasOne = "", false
	}
	r.data = appendUTF8(r.data, value)
	r.data = append(r.data, '\n')
}

// dataLen returns the length of the data buffer.
func (r *Reader) dataLen() int {
	if r.hasOne {
		return len(r.one) + 1
	}
	return len(r.data)
}

// processLine interprets a non-empty line.
func (r *Reader) processLine(line []byte) error {
	if line[0] == ':' {
		if r.OnComment != nil {
			text := trimSpace(line[1:])
			if utf8.Valid(text) {
				r.OnComment(string(text))
			} else {
				r.OnComment(string(appendUTF8(nil, text)))
			}
		}
		return nil
	}
	name, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], trimSpace(line[i+1:])
	}
	// Field names are matched on the raw bytes: ASCII names match exactly
	// when the decoded names would.
	switch string(name) {
	case "event":
		r.typ = appendUTF8(r.typ[:0], value)
	case "data":
		r.appendData(value)
	case "id":
		if bytes.IndexByte(value, 0) >= 0 {
			return nil
		}
		if utf8.Valid(value) {
			if string(value) != r.idBuf {
				r.idBuf = string(value)
			}
		} else {
			r.idBuf = string(appendUTF8(nil, value))
		}
	case "retry":
		if ms, ok := parseDigits(value); ok {
			r.retry = ms
			r.evRetry = ms
		}
	}
	return nil
}

// checkSize enforces MaxEventSize, given the length of the line being
// read. The buffers and the line are counted before the line is
// interpreted, so the outcome does not depend on how the input is split
// into reads.
func (r *Reader) checkSize(line int) error {
	n := line + r.dataLen() + len(r.typ)
	limit := r.limit()
	if limit < 0 || n <= limit {
		return nil
	}
	return fmt.Errorf("%w: %d bytes or more exceed the limit of %d", ErrEventTooLarge, n, limit)
}

// limit returns the effective MaxEventSize, or -1 for none.
func (r *Reader) limit() int {
	switch {
	case r.MaxEventSize == 0:
		return defaultMaxEventSize
	case r.MaxEventSize < 0:
		return -1
	}
	return r.MaxEventSize
}

// trimSpace removes one leading space.
func trimSpace(b []byte) []byte {
	if len(b) > 0 && b[0] == ' ' {
		return b[1:]
	}
	return b
}

// parseDigits parses a non-empty run of ASCII digits in base ten,
// saturating at math.MaxInt.
func parseDigits(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int(c - '0')
		if n > (math.MaxInt-d)/10 {
			n = math.MaxInt
		} else {
			n = n*10 + d
		}
	}
	return n, true
}

// readLine returns the next line without its line end. The line is valid
// until the next call. It returns the read error, or io.EOF, when the
// input ends; a line not ended by CR or LF is then dropped.
func (r *Reader) readLine() ([]byte, error) {
	for {
		if r.skipLF && r.r < r.w {
			if r.buf[r.r] == '\n' {
				r.r++
			}
			r.skipLF = false
		}
		if !r.bomDone {
			if !r.checkBOM() {
				if err := r.fill(); err != nil {
					return nil, err
				}
				continue
			}
		}
		start := r.r + r.scanned
		if i := indexLineEnd(r.buf[start:r.w]); i >= 0 {
			end := start + i
			line := r.buf[r.r:end]
			if err := r.checkSize(len(line)); err != nil {
				return nil, err
			}
			r.skipLF = r.buf[end] == '\r'
			r.r = end + 1
			r.scanned = 0
			return line, nil
		}
		r.scanned = r.w - r.r
		if err := r.checkSize(r.scanned); err != nil {
			return nil, err
		}
		if err := r.fill(); err != nil {
			return nil, err
		}
	}
}

// checkBOM drops a byte order mark at the start of the stream. It reports
// false when more input is needed to decide.
func (r *Reader) checkBOM() bool {
	const bom = "\xEF\xBB\xBF"
	b := r.buf[r.r:r.w]
	n := min(len(b), len(bom))
	if string(b[:n]) != bom[:n] {
		r.bomDone = true
		return true
	}
	if n < len(bom) {
		if r.rerr != nil {
			r.bomDone = true // too short to matter: no line can end
			return true
		}
		return false
	}
	r.r += len(bom)
	r.bomDone = true
	return true
}

// indexLineEnd returns the index of the first CR or LF in b, or -1.
func indexLineEnd(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.IndexByte(b, '\r')
	}
	if j := bytes.IndexByte(b[:i], '\r'); j >= 0 {
		return j
	}
	return i
}

// fill reads more input into the buffer, keeping the unread bytes. It
// returns the pending read error once the buffer holds no more input.
func (r *Reader) fill() error {
	if r.rerr != nil {
		return r.rerr
	}
	switch {
	case r.buf == nil:
		r.buf = make([]byte, minBufSize)
	case r.r == r.w:
		r.r, r.w = 0, 0
		if len(r.buf) > keepBufSize {
			r.buf = make([]byte, minBufSize)
		}
	case r.w < len(r.buf):
		// room left: read after the unread bytes
	case r.r > 0:
		r.w = copy(r.buf, r.buf[r.r:r.w])
		r.r = 0
	default:
		// The buffer holds one unfinished line: double it, but only to
		// one byte past the limit, which is enough to detect going over.
		size := 2 * len(r.buf)
		if limit := r.limit(); limit >= 0 && size >= limit {
			size = max(len(r.buf)+1, limit+1)
		}
		buf := make([]byte, size)
		copy(buf, r.buf[:r.w])
		r.buf = buf
	}
	for range maxEmpty {
		n, err := r.rd.Read(r.buf[r.w:])
		if n < 0 || n > len(r.buf)-r.w {
			err = errors.New("sse: reader returned invalid count from Read")
			n = 0
		}
		r.w += n
		if err != nil {
			r.rerr = err
			if n == 0 {
				return err
			}
			return nil
		}
		if n > 0 {
			return nil
		}
	}
	r.rerr = io.ErrNoProgress
	return r.rerr
}

// appendUTF8 appends b to dst decoded as UTF-8 the way the WHATWG
// Encoding Standard does: each maximal subpart of an ill-formed sequence
// becomes one U+FFFD.
func appendUTF8(dst, b []byte) []byte {
	if utf8.Valid(b) {
		return append(dst, b...)
	}
	for len(b) > 0 {
		c := b[0]
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			b = b[1:]
			continue
		}
		r, size := utf8.DecodeRune(b)
		if r != utf8.RuneError || size > 1 {
			dst = append(dst, b[:size]...)
			b = b[size:]
			continue
		}
		dst = utf8.AppendRune(dst, utf8.RuneError)
		b = b[invalidLen(b):]
	}
	return dst
}

// invalidLen returns the length of the maximal subpart at the start of b,
// which does not begin a well-formed sequence: the lead byte and the
// continuation bytes that could still have completed it.
func invalidLen(b []byte) int {
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch c := b[0]; {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c == 0xED:
		need, hi = 2, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		need = 2
	case c == 0xF0:
		need, lo = 3, 0x90
	case c == 0xF4:
		need, hi = 3, 0x8F
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	default:
		return 1
	}
	n := 1
	for ; n <= need && n < len(b); n++ {
		if b[n] < lo || b[n] > hi {
			break
		}
		lo, hi = 0x80, 0xBF
	}
	return n
}
