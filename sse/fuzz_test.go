package sse_test

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"

	"github.com/coregx/stream/sse"
)

// decodeUTF8 decodes b the way the Encoding Standard's UTF-8 decoder does,
// with its byte-at-a-time state machine: an ill-formed sequence yields one
// U+FFFD and the byte that broke it is looked at again. It is written
// independently of the package's decoder, to check it.
func decodeUTF8(b []byte) string {
	var out strings.Builder
	var cp rune
	needed, seen := 0, 0
	lower, upper := byte(0x80), byte(0xBF)
	for i := 0; i < len(b); {
		c := b[i]
		if needed == 0 {
			switch {
			case c <= 0x7F:
				out.WriteByte(c)
			case c >= 0xC2 && c <= 0xDF:
				needed, cp = 1, rune(c&0x1F)
			case c >= 0xE0 && c <= 0xEF:
				if c == 0xE0 {
					lower = 0xA0
				}
				if c == 0xED {
					upper = 0x9F
				}
				needed, cp = 2, rune(c&0xF)
			case c >= 0xF0 && c <= 0xF4:
				if c == 0xF0 {
					lower = 0x90
				}
				if c == 0xF4 {
					upper = 0x8F
				}
				needed, cp = 3, rune(c&0x7)
			default:
				out.WriteRune(utf8.RuneError)
			}
			i++
			continue
		}
		if c < lower || c > upper {
			cp, needed, seen = 0, 0, 0
			lower, upper = 0x80, 0xBF
			out.WriteRune(utf8.RuneError)
			continue // look at c again
		}
		lower, upper = 0x80, 0xBF
		cp = cp<<6 | rune(c&0x3F)
		seen++
		i++
		if seen == needed {
			out.WriteRune(cp)
			cp, needed, seen = 0, 0, 0
		}
	}
	if needed != 0 {
		out.WriteRune(utf8.RuneError)
	}
	return out.String()
}

// referenceParse interprets a whole stream the plain way the standard
// words it: decode, drop one BOM, split into lines, process each line.
func referenceParse(stream []byte) []string {
	text := strings.TrimPrefix(decodeUTF8(stream), "\uFEFF")
	var out []string
	var data, typ, idBuf, lastID string
	retry, evRetry := -1, 0
	for {
		i := strings.IndexAny(text, "\r\n")
		if i < 0 {
			break // an unterminated line is discarded
		}
		line := text[:i]
		if strings.HasPrefix(text[i:], "\r\n") {
			i++
		}
		text = text[i+1:]
		switch {
		case line == "":
			lastID = idBuf
			if data == "" {
				typ, evRetry = "", 0
				continue
			}
			ev := plainEvent{Type: "message", ID: lastID, Data: strings.TrimSuffix(data, "\n"), Retry: evRetry}
			if typ != "" {
				ev.Type = typ
			}
			out = append(out, record{Event: &ev}.String())
			data, typ, evRetry = "", "", 0
		case line[0] == ':':
			c := strings.TrimPrefix(line[1:], " ")
			out = append(out, record{Comment: &c}.String())
		default:
			name, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch name {
			case "event":
				typ = value
			case "data":
				data += value + "\n"
			case "id":
				if !strings.Contains(value, "\x00") {
					idBuf = value
				}
			case "retry":
				if value != "" && strings.Trim(value, "0123456789") == "" {
					n, err := strconv.Atoi(value)
					if err != nil {
						n = math.MaxInt
					}
					retry, evRetry = n, n
				}
			}
		}
	}
	end := endState{LastEventID: lastID, RetryMs: int64(retry)}
	const maxMs = math.MaxInt64 / int64(time.Millisecond)
	if end.RetryMs > maxMs {
		end.RetryMs = maxMs
	}
	return append(out, record{End: &end}.String())
}

// TestDecodeUTF8 pins the reference decoder to known answers, so that the
// differential fuzzing below compares against something trustworthy.
func TestDecodeUTF8(t *testing.T) {
	tests := []struct{ in, want string }{
		{"abc", "abc"},
		{"caf\xC3\xA9", "café"},
		{"\xF0\x9F\x98\x80", "😀"},
		{"\xF0\x9F\x98", "\uFFFD"},
		{"\xF0\x9F\x98a", "\uFFFDa"},
		{"\xC0\xAF", "\uFFFD\uFFFD"},
		{"\xED\xA0\x80", "\uFFFD\uFFFD\uFFFD"},
		{"\xE0\x80\x80", "\uFFFD\uFFFD\uFFFD"},
		{"\xF4\x90\x80\x80", "\uFFFD\uFFFD\uFFFD\uFFFD"},
		{"\xE1\x80\xC0", "\uFFFD\uFFFD"},
		{"\xF1\x80\x80\xE1\x80\xC0", "\uFFFD\uFFFD\uFFFD"},
		{"\x80\xBF", "\uFFFD\uFFFD"},
		{"\xFE\xFF", "\uFFFD\uFFFD"},
		{"\xEF\xBB\xBF", "\uFEFF"},
	}
	for _, tt := range tests {
		if got := decodeUTF8([]byte(tt.in)); got != tt.want {
			t.Errorf("decodeUTF8(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestReferenceGolden checks the reference parser against the golden
// files too, so both implementations answer to the same expectations.
func TestReferenceGolden(t *testing.T) {
	for _, tc := range loadGolden(t) {
		t.Run(tc.name, func(t *testing.T) {
			if got := referenceParse(tc.stream); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				compareRecords(t, got, tc.want)
			}
		})
	}
}

func FuzzRead(f *testing.F) {
	streams, _ := filepath.Glob(filepath.Join("testdata", "*.stream"))
	for _, name := range streams {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("data: \xF0\x9F\r\n\r"))
	f.Add([]byte("\xEF\xBB\xBF\xEF\xBB\r\n:\xC0\n\n"))
	f.Add([]byte("retry: 18446744073709551616\nid: \x00\ndata\r\r"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		want := referenceParse(stream)
		split := 0
		if len(stream) > 0 {
			split = int(stream[0]) % (len(stream) + 1)
		}
		inputs := []struct {
			name string
			r    io.Reader
		}{
			{"whole", bytes.NewReader(stream)},
			{"one byte", iotest.OneByteReader(bytes.NewReader(stream))},
			{"split", &chunkReader{chunks: [][]byte{stream[:split:split], stream[split:]}}},
		}
		for _, in := range inputs {
			got, err := parseAll(in.r)
			if err != nil {
				t.Fatalf("%s: error %v", in.name, err)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s reader differs from the reference:", in.name)
				compareRecords(t, got, want)
			}
		}

		var all []sse.Event
		for ev, err := range sse.Read(bytes.NewReader(stream)) {
			if err != nil {
				t.Fatalf("Read yielded %v", err)
			}
			checkEvent(t, ev)
			all = append(all, ev)
		}

		// With a limit, the reader either agrees or stops with
		// ErrEventTooLarge after a prefix of the events.
		rd := sse.NewReader(iotest.HalfReader(bytes.NewReader(stream)))
		rd.MaxEventSize = 32
		for i := 0; ; i++ {
			ev, err := rd.Next()
			if err == io.EOF {
				if i != len(all) {
					t.Fatalf("limited reader ended after %d events, want %d", i, len(all))
				}
				break
			}
			if err != nil {
				if !errors.Is(err, sse.ErrEventTooLarge) {
					t.Fatalf("limited reader error %v, want ErrEventTooLarge", err)
				}
				break
			}
			if i >= len(all) || ev != all[i] {
				t.Fatalf("limited reader event %d = %+v, want a prefix of %+v", i, ev, all)
			}
			// The data buffer held Data and a final LF.
			if len(ev.Data)+1 > 32 || len(ev.Type) > 32 {
				t.Fatalf("limited reader returned Data of %d bytes and Type of %d", len(ev.Data), len(ev.Type))
			}
		}
	})
}

// checkEvent asserts what holds for every parsed event.
func checkEvent(t *testing.T, ev sse.Event) {
	t.Helper()
	if ev.Type == "" || strings.ContainsAny(ev.Type, "\r\n") {
		t.Errorf("bad Type %q", ev.Type)
	}
	if strings.ContainsAny(ev.ID, "\r\n\x00") {
		t.Errorf("bad ID %q", ev.ID)
	}
	if strings.Contains(ev.Data, "\r") {
		t.Errorf("CR in Data %q", ev.Data)
	}
	if ev.Retry < 0 {
		t.Errorf("negative Retry %d", ev.Retry)
	}
	for _, s := range []string{ev.Type, ev.ID, ev.Data} {
		if !utf8.ValidString(s) {
			t.Errorf("invalid UTF-8 in %q", s)
		}
	}
	// The standard lets an event type hold NUL (only an id with NUL is
	// ignored), so a parsed event need not pass Validate; it must not
	// fail it for any other reason.
	v := ev
	v.Type = strings.ReplaceAll(v.Type, "\x00", "")
	if err := v.Validate(); err != nil {
		t.Errorf("parsed event does not validate: %v", err)
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add("", "", "hello", 0)
	f.Add("greeting", "msg-1", "Hello, World!", 3000)
	f.Add("update", "42", "line1\nline2\r\nline3\rline4", 1)
	f.Add(" spaced ", " id ", " data ", 0)
	f.Add("a:b", "c:d", "e:f\n:g", 0)
	f.Add("", "", "", 0)
	f.Add("", "", "\n", 0)
	f.Add("\xEF\xBB\xBF", "\xEF\xBB\xBF", "\xEF\xBB\xBF", 0)
	f.Add("\xF0\x9F\x98", "\xC0\xAF", "a\xED\xA0\x80b\r", 7)
	f.Add("message", "", "{\"json\": true}", math.MaxInt)
	f.Add("evil\nevent: x", "", "x", 0)
	f.Fuzz(func(t *testing.T, typ, id, data string, retry int) {
		ev := sse.Event{Type: typ, ID: id, Data: data, Retry: retry}
		wire, err := ev.AppendText(nil)
		if errors.Is(err, sse.ErrInvalidEvent) {
			return
		}
		if err != nil {
			t.Fatalf("AppendText: %v", err)
		}
		want := sse.Event{
			Type: decodeUTF8([]byte(typ)),
			ID:   decodeUTF8([]byte(id)),
			Data: decodeUTF8([]byte(strings.ReplaceAll(strings.ReplaceAll(data, "\r\n", "\n"), "\r", "\n"))),
		}
		if want.Type == "" {
			want.Type = "message"
		}
		if retry > 0 {
			want.Retry = retry
		}
		rd := sse.NewReader(bytes.NewReader(wire))
		got, err := rd.Next()
		if err != nil {
			t.Fatalf("Next on %q: %v", wire, err)
		}
		if got != want {
			t.Errorf("round trip of %q:\n got %+v\nwant %+v", wire, got, want)
		}
		if _, err := rd.Next(); err != io.EOF {
			t.Errorf("second Next on %q: %v, want io.EOF", wire, err)
		}
		if rd.LastEventID() != want.ID {
			t.Errorf("LastEventID() = %q, want %q", rd.LastEventID(), want.ID)
		}
	})
}

// FuzzReadLimited checks the size limit: whatever the limit and however
// the input is split into reads, the reader reports the same comments
// and events, a prefix of what the reference parser finds, and stops
// with ErrEventTooLarge at the same place or not at all.
func FuzzReadLimited(f *testing.F) {
	f.Add([]byte("data: 0123456789\n\n: comment\n\n"), uint8(16))
	f.Add([]byte("data: 0123456789\n\n"), uint8(15))
	f.Add([]byte(":"+strings.Repeat("x", 300)+"\r\ndata: a\r\n\r\n"), uint8(200))
	f.Add([]byte("\xEF\xBB\xBFdata: \xff\xff\xff\xff\n\n"), uint8(10))
	f.Add([]byte("event: 12345\ndata: 12345\r\r"), uint8(14))
	f.Fuzz(func(t *testing.T, stream []byte, limit uint8) {
		max := int(limit) + 1
		ref := referenceParse(stream)
		ref = ref[:len(ref)-1] // without the end state
		var first []string
		var firstTooBig bool
		readers := []struct {
			name string
			r    io.Reader
		}{
			{"whole", bytes.NewReader(stream)},
			{"one byte", iotest.OneByteReader(bytes.NewReader(stream))},
			{"half", iotest.HalfReader(bytes.NewReader(stream))},
		}
		for i, in := range readers {
			var got []string
			rd := sse.NewReader(in.r)
			rd.MaxEventSize = max
			rd.OnComment = func(text string) {
				got = append(got, record{Comment: &text}.String())
			}
			tooBig := false
			for {
				ev, err := rd.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					if !errors.Is(err, sse.ErrEventTooLarge) {
						t.Fatalf("%s: error %v, want ErrEventTooLarge", in.name, err)
					}
					tooBig = true
					break
				}
				if len(ev.Data)+1 > max { // the data buffer held Data and a final LF
					t.Fatalf("%s: Data of %d bytes over the limit of %d", in.name, len(ev.Data), max)
				}
				got = append(got, record{Event: (*plainEvent)(&ev)}.String())
			}
			if len(got) > len(ref) || strings.Join(got, "\n") != strings.Join(ref[:len(got)], "\n") {
				t.Errorf("%s: not a prefix of the reference:", in.name)
				compareRecords(t, got, ref)
			}
			if !tooBig && len(got) != len(ref) {
				t.Errorf("%s: ended without error after %d of %d records", in.name, len(got), len(ref))
			}
			if i == 0 {
				first, firstTooBig = got, tooBig
				continue
			}
			if tooBig != firstTooBig || strings.Join(got, "\n") != strings.Join(first, "\n") {
				t.Errorf("%s reader: %d records, too big %v; whole reader: %d records, too big %v",
					in.name, len(got), tooBig, len(first), firstTooBig)
			}
		}
	})
}
