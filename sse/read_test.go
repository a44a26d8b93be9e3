package sse_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/coregx/stream/sse"
)

// record is one line of a golden file: a comment, an event, or the state
// of the reader once the input has ended.
type record struct {
	Comment *string     `json:"comment,omitempty"`
	Event   *plainEvent `json:"event,omitempty"`
	End     *endState   `json:"end,omitempty"`
}

// plainEvent has the fields of sse.Event without its MarshalText method,
// so that JSON shows the fields rather than the wire form.
type plainEvent sse.Event

type endState struct {
	LastEventID string `json:"lastEventID"`
	RetryMs     int64  `json:"retryMs"` // -1 when no retry field was seen
}

func (r record) String() string {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// parseAll runs a Reader over r to the end and records what it reports.
func parseAll(r io.Reader) ([]string, error) {
	var out []string
	rd := sse.NewReader(r)
	rd.OnComment = func(text string) {
		out = append(out, record{Comment: &text}.String())
	}
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return out, err
		}
		out = append(out, record{Event: (*plainEvent)(&ev)}.String())
	}
	end := endState{LastEventID: rd.LastEventID(), RetryMs: -1}
	if d, ok := rd.Retry(); ok {
		end.RetryMs = d.Milliseconds()
	}
	return append(out, record{End: &end}.String()), nil
}

type goldenCase struct {
	name   string
	stream []byte
	want   []string
}

func loadGolden(t testing.TB) []goldenCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.stream"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden streams: %v", err)
	}
	var cases []goldenCase
	for _, f := range files {
		stream, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		golden, err := os.ReadFile(strings.TrimSuffix(f, ".stream") + ".golden")
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for line := range strings.Lines(string(golden)) {
			var rec record
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("%s: bad golden line %q: %v", f, line, err)
			}
			want = append(want, rec.String())
		}
		name := strings.TrimSuffix(filepath.Base(f), ".stream")
		cases = append(cases, goldenCase{name, stream, want})
	}
	return cases
}

// chunkReader returns its chunks one Read at a time, then err (io.EOF
// when nil).
type chunkReader struct {
	chunks [][]byte
	err    error
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.chunks) > 0 && len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	if len(c.chunks) == 0 {
		if c.err == nil {
			return 0, io.EOF
		}
		return 0, c.err
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	return n, nil
}

func compareRecords(t *testing.T, got, want []string) {
	t.Helper()
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("record %d:\n got %s\nwant %s", i, g, w)
		}
	}
}

func TestReaderGolden(t *testing.T) {
	for _, tc := range loadGolden(t) {
		t.Run(tc.name, func(t *testing.T) {
			readers := []struct {
				name string
				r    func() io.Reader
			}{
				{"whole", func() io.Reader { return bytes.NewReader(tc.stream) }},
				{"one byte", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(tc.stream)) }},
				{"half", func() io.Reader { return iotest.HalfReader(bytes.NewReader(tc.stream)) }},
				{"data with eof", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(tc.stream)) }},
			}
			for _, rd := range readers {
				got, err := parseAll(rd.r())
				if err != nil {
					t.Fatalf("%s: error %v, want io.EOF", rd.name, err)
				}
				if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
					t.Errorf("%s reader:", rd.name)
					compareRecords(t, got, tc.want)
				}
			}
		})
	}
}

// TestReaderGoldenSplit feeds every golden stream in two reads, split at
// every possible point.
func TestReaderGoldenSplit(t *testing.T) {
	for _, tc := range loadGolden(t) {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i <= len(tc.stream); i++ {
				in := &chunkReader{chunks: [][]byte{tc.stream[:i:i], tc.stream[i:]}}
				got, err := parseAll(in)
				if err != nil {
					t.Fatalf("split at %d: error %v, want io.EOF", i, err)
				}
				if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
					t.Errorf("split at %d:", i)
					compareRecords(t, got, tc.want)
					return
				}
			}
		})
	}
}

func TestReadGolden(t *testing.T) {
	for _, tc := range loadGolden(t) {
		t.Run(tc.name, func(t *testing.T) {
			var want []sse.Event
			for _, line := range tc.want {
				var rec record
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatal(err)
				}
				if rec.Event != nil {
					want = append(want, sse.Event(*rec.Event))
				}
			}
			var got []sse.Event
			for ev, err := range sse.Read(bytes.NewReader(tc.stream)) {
				if err != nil {
					t.Fatalf("Read yielded error %v", err)
				}
				got = append(got, ev)
			}
			if len(got) != len(want) {
				t.Fatalf("got %d events %+v, want %d %+v", len(got), got, len(want), want)
			}
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("event %d: got %+v, want %+v", i, got[i], want[i])
				}
			}
		})
	}
}

var errBlocked = errors.New("test: reader would block")

// TestReaderDoesNotWait checks that complete lines are acted on without
// another read: the reader fails the next read, so an event shows up only
// when the parser did not ask for more input before dispatching it.
func TestReaderDoesNotWait(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   []sse.Event
	}{
		{"cr cr", []string{"data: x\r\r"}, []sse.Event{{Type: "message", Data: "x"}}},
		{"cr then cr", []string{"data: x\r", "\r"}, []sse.Event{{Type: "message", Data: "x"}}},
		{"crlf cr", []string{"data: x\r\n\r"}, []sse.Event{{Type: "message", Data: "x"}}},
		{"lf lf", []string{"data: x\n\n"}, []sse.Event{{Type: "message", Data: "x"}}},
		{"cr then lf cr", []string{"data: x\r", "\n\r"}, []sse.Event{{Type: "message", Data: "x"}}},
		{"bom split", []string{"\xEF", "\xBB", "\xBF", "data: y\n", "\n"}, []sse.Event{{Type: "message", Data: "y"}}},
		{"two events", []string{"id: 1\rdata: a\r\rdata: b\r\r"}, []sse.Event{
			{Type: "message", ID: "1", Data: "a"}, {Type: "message", ID: "1", Data: "b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &chunkReader{err: errBlocked}
			for _, c := range tt.chunks {
				in.chunks = append(in.chunks, []byte(c))
			}
			rd := sse.NewReader(in)
			for i, want := range tt.want {
				got, err := rd.Next()
				if err != nil {
					t.Fatalf("event %d: error %v, want %+v", i, err, want)
				}
				if got != want {
					t.Errorf("event %d: got %+v, want %+v", i, got, want)
				}
			}
			if _, err := rd.Next(); err != errBlocked {
				t.Errorf("final Next error = %v, want %v", err, errBlocked)
			}
		})
	}
}

func TestReaderLargeEvent(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 1<<18) // 4 MiB on one line
	tests := []struct {
		name   string
		stream string
		want   sse.Event
	}{
		{"one line", "data: " + big + "\n\n", sse.Event{Type: "message", Data: big}},
		{"long type", "event: " + big + "\ndata: x\n\n", sse.Event{Type: big, Data: "x"}},
		{"long id", "id: " + big + "\ndata: x\n\n", sse.Event{Type: "message", ID: big, Data: "x"}},
		{"many lines", strings.Repeat("data: "+big[:1000]+"\n", 5000) + "\n",
			sse.Event{Type: "message", Data: strings.TrimSuffix(strings.Repeat(big[:1000]+"\n", 5000), "\n")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []sse.Event
			for ev, err := range sse.Read(iotest.HalfReader(strings.NewReader(tt.stream + "data: after\n\n"))) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, ev)
			}
			if len(got) != 2 {
				t.Fatalf("got %d events, want 2", len(got))
			}
			if got[0] != tt.want {
				t.Errorf("got event with Type %d bytes, ID %d bytes, Data %d bytes; want %d, %d, %d",
					len(got[0].Type), len(got[0].ID), len(got[0].Data), len(tt.want.Type), len(tt.want.ID), len(tt.want.Data))
			}
			if want := (sse.Event{Type: "message", ID: tt.want.ID, Data: "after"}); got[1] != want {
				t.Errorf("second event = %+v, want %+v", got[1], want)
			}
		})
	}
}

func TestReaderMaxEventSize(t *testing.T) {
	ev := func(data string) sse.Event { return sse.Event{Type: "message", Data: data} }
	tests := []struct {
		name    string
		max     int
		stream  string
		oneByte bool
		want    []sse.Event // events before the error, or all of them
		tooBig  bool
	}{
		{"fits exactly", 16, "data: 0123456789\n\n", false, []sse.Event{ev("0123456789")}, false},
		{"over by one", 15, "data: 0123456789\n\n", false, nil, true},
		{"over by one split", 15, "data: 0123456789\n\n", true, nil, true},
		{"long data line", 10, "data: a\n\ndata: 0123456789abcdef\n\n", false, []sse.Event{ev("a")}, true},
		{"long line split", 10, "data: a\n\ndata: 0123456789abcdef\n\n", true, []sse.Event{ev("a")}, true},
		{"many data lines", 16, "data: 1234\ndata: 1234\ndata: 1\n\n", true, nil, true},
		{"many data lines fit", 17, "data: 1234\ndata: 1234\ndata: 1\n\n", true, []sse.Event{ev("1234\n1234\n1")}, false},
		{"type counts", 15, "event: 12345\ndata: 12345\n\n", false, nil, true},
		{"replacement growth", 20, "data: \xff\xff\xff\xff\xff\xff\xff\n\n", false, nil, true},
		{"replacement fits", 22, "data: \xff\xff\xff\xff\xff\xff\xff\n\n", false, []sse.Event{ev(strings.Repeat("\uFFFD", 7))}, false},
		{"long comment", 10, ": " + strings.Repeat("x", 100) + "\n\n", true, nil, true},
		{"endless line", 64, "data: " + strings.Repeat("x", 1<<20), false, nil, true},
		{"reset per event", 20, strings.Repeat("data: 12345678\n\n", 5), true,
			[]sse.Event{ev("12345678"), ev("12345678"), ev("12345678"), ev("12345678"), ev("12345678")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in io.Reader = strings.NewReader(tt.stream)
			if tt.oneByte {
				in = iotest.OneByteReader(in)
			}
			rd := sse.NewReader(in)
			rd.MaxEventSize = tt.max
			var got []sse.Event
			var err error
			for {
				var ev sse.Event
				ev, err = rd.Next()
				if err != nil {
					break
				}
				got = append(got, ev)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("events = %+v, want %+v", got, tt.want)
			}
			if tt.tooBig {
				if !errors.Is(err, sse.ErrEventTooLarge) {
					t.Fatalf("error = %v, want ErrEventTooLarge", err)
				}
				if !strings.HasPrefix(err.Error(), "sse: event too large: ") {
					t.Errorf("error text = %q, want it to start with %q", err, "sse: event too large: ")
				}
				if _, again := rd.Next(); again != err {
					t.Errorf("Next after error = %v, want the same error %v", again, err)
				}
			} else if err != io.EOF {
				t.Errorf("error = %v, want io.EOF", err)
			}
		})
	}
}

// TestReaderMaxEventSizeMemory checks that an endless line does not make
// the reader buffer much more than the limit.
func TestReaderMaxEventSizeMemory(t *testing.T) {
	const limit = 1 << 16
	endless := io.MultiReader(strings.NewReader("data: "), infiniteReader{})
	rd := sse.NewReader(endless)
	rd.MaxEventSize = limit
	_, err := rd.Next()
	if !errors.Is(err, sse.ErrEventTooLarge) {
		t.Fatalf("error = %v, want ErrEventTooLarge", err)
	}
}

type infiniteReader struct{}

func (infiniteReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

var errBroken = errors.New("test: connection broken")

func TestReaderErrors(t *testing.T) {
	tests := []struct {
		name    string
		r       io.Reader
		want    []sse.Event
		wantErr error
	}{
		{"error after events", &chunkReader{chunks: [][]byte{[]byte("data: a\n\ndata: b\n")}, err: errBroken},
			[]sse.Event{{Type: "message", Data: "a"}}, errBroken},
		{"timeout mid event", iotest.TimeoutReader(iotest.OneByteReader(strings.NewReader("data: a\n\n"))),
			nil, iotest.ErrTimeout},
		{"immediate error", iotest.ErrReader(errBroken), nil, errBroken},
		{"no progress", zeroReader{}, nil, io.ErrNoProgress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []sse.Event
			var errs []error
			for ev, err := range sse.Read(tt.r) {
				if err != nil {
					errs = append(errs, err)
					if ev != (sse.Event{}) {
						t.Errorf("event with error = %+v, want zero", ev)
					}
					continue
				}
				got = append(got, ev)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("events = %+v, want %+v", got, tt.want)
			}
			if len(errs) != 1 || errs[0] != tt.wantErr {
				t.Errorf("errors = %v, want exactly [%v]", errs, tt.wantErr)
			}
		})
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestReadBreak(t *testing.T) {
	rd := sse.NewReader(strings.NewReader("data: 1\n\ndata: 2\n\ndata: 3\n\n"))
	for ev, err := range rd.All() {
		if err != nil || ev.Data != "1" {
			t.Fatalf("first = %+v, %v; want data 1", ev, err)
		}
		break
	}
	var rest []string
	for ev, err := range rd.All() {
		if err != nil {
			t.Fatal(err)
		}
		rest = append(rest, ev.Data)
	}
	if got, want := strings.Join(rest, ","), "2,3"; got != want {
		t.Errorf("after break got %q, want %q", got, want)
	}
}

func TestReaderRetry(t *testing.T) {
	tests := []struct {
		name      string
		stream    string
		wantRetry time.Duration
		wantOK    bool
		wantEvent int
	}{
		{"none", "data: x\n\n", 0, false, 0},
		{"zero", "retry: 0\ndata: x\n\n", 0, true, 0},
		{"ms", "retry: 1500\ndata: x\n\n", 1500 * time.Millisecond, true, 1500},
		{"huge", "retry: 99999999999999999999999999999\ndata: x\n\n", math.MaxInt64, true, math.MaxInt},
		{"before blank only", "data: x\n\nretry: 7\n", 7 * time.Millisecond, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd := sse.NewReader(strings.NewReader(tt.stream))
			ev, err := rd.Next()
			if err != nil {
				t.Fatal(err)
			}
			if ev.Retry != tt.wantEvent {
				t.Errorf("Event.Retry = %d, want %d", ev.Retry, tt.wantEvent)
			}
			if _, err := rd.Next(); err != io.EOF {
				t.Fatalf("second Next error = %v, want io.EOF", err)
			}
			d, ok := rd.Retry()
			if d != tt.wantRetry || ok != tt.wantOK {
				t.Errorf("Retry() = %v, %v; want %v, %v", d, ok, tt.wantRetry, tt.wantOK)
			}
		})
	}
}

func TestReaderAllocs(t *testing.T) {
	stream := []byte(strings.Repeat("event: tick\nid: 42\ndata: some payload here\n\n", 1000))
	allocs := testing.AllocsPerRun(10, func() {
		rd := sse.NewReader(bytes.NewReader(stream))
		for {
			if _, err := rd.Next(); err != nil {
				break
			}
		}
	})
	// One string per event for Data, plus a few for the reader itself.
	if allocs > 1000+10 {
		t.Errorf("allocations per 1000 events = %v, want at most %d", allocs, 1010)
	}
}

func BenchmarkReader(b *testing.B) {
	stream := []byte(strings.Repeat("event: token\nid: 12345\ndata: {\"choices\":[{\"delta\":{\"content\":\"hello\"}}]}\n\n", 1000))
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		rd := sse.NewReader(bytes.NewReader(stream))
		for {
			if _, err := rd.Next(); err != nil {
				break
			}
		}
	}
}

// TestReaderDefaultMaxEventSize checks that a zero MaxEventSize means
// 16 MiB and a negative one no limit.
func TestReaderDefaultMaxEventSize(t *testing.T) {
	fits := "data: " + strings.Repeat("x", defaultMaxEventSize-len("data: ")) + "\n\n"
	over := "data: " + strings.Repeat("x", defaultMaxEventSize-len("data: ")+1) + "\n\n"
	tests := []struct {
		name   string
		max    int
		stream string
		tooBig bool
	}{
		{"default fits", 0, fits, false},
		{"default over by one", 0, over, true},
		{"no limit", -1, over, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd := sse.NewReader(strings.NewReader(tt.stream))
			rd.MaxEventSize = tt.max
			ev, err := rd.Next()
			if tt.tooBig {
				if !errors.Is(err, sse.ErrEventTooLarge) {
					t.Errorf("error = %v, want ErrEventTooLarge", err)
				}
				return
			}
			if err != nil || len(ev.Data) != len(tt.stream)-len("data: \n\n") {
				t.Errorf("got %d bytes of data, error %v; want %d bytes", len(ev.Data), err, len(tt.stream)-len("data: \n\n"))
			}
		})
	}
}
