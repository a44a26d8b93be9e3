package sse_test

import (
	"errors"
	"testing"

	"github.com/coregx/stream/sse"
)

func TestEventString(t *testing.T) {
	tests := []struct {
		name string
		ev   *sse.Event
		want string
	}{
		{"data only", sse.NewEvent("hi"), "data: hi\n\n"},
		{"empty data", sse.NewEvent(""), "data: \n\n"},
		{"all fields", sse.NewEvent("Hello, World!").WithType("greeting").WithID("msg-1").WithRetry(3000),
			"event: greeting\nid: msg-1\nretry: 3000\ndata: Hello, World!\n\n"},
		{"lf lines", sse.NewEvent("line1\nline2\nline3"), "data: line1\ndata: line2\ndata: line3\n\n"},
		{"mixed breaks", sse.NewEvent("a\r\nb\rc"), "data: a\ndata: b\ndata: c\n\n"},
		{"cr lf cr", sse.NewEvent("a\r\n\rb"), "data: a\ndata: \ndata: b\n\n"},
		{"trailing lf", sse.NewEvent("a\n"), "data: a\ndata: \n\n"},
		{"leading space kept", sse.NewEvent(" a").WithType(" t"), "event:  t\ndata:  a\n\n"},
		{"zero retry omitted", sse.NewEvent("x").WithRetry(0), "data: x\n\n"},
		{"injected id dropped", sse.NewEvent("x").WithID("1\nevent: evil"), "data: x\n\n"},
		{"injected type dropped", sse.NewEvent("x").WithType("a\rb"), "data: x\n\n"},
		{"negative retry dropped", sse.NewEvent("x").WithRetry(-1), "data: x\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ev.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEventAppendTextRejects(t *testing.T) {
	tests := []struct {
		name string
		ev   *sse.Event
	}{
		{"lf in id", sse.NewEvent("x").WithID("1\n")},
		{"cr in id", sse.NewEvent("x").WithID("1\r")},
		{"nul in id", sse.NewEvent("x").WithID("1\x00")},
		{"lf in type", sse.NewEvent("x").WithType("a\nb")},
		{"nul in type", sse.NewEvent("x").WithType("\x00")},
		{"negative retry", sse.NewEvent("x").WithRetry(-5)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("keep")
			got, err := tt.ev.AppendText(prefix)
			if !errors.Is(err, sse.ErrInvalidEvent) {
				t.Fatalf("err = %v, want ErrInvalidEvent", err)
			}
			if string(got) != "keep" {
				t.Errorf("AppendText wrote %q, want nothing appended", got)
			}
			if _, err := tt.ev.MarshalText(); !errors.Is(err, sse.ErrInvalidEvent) {
				t.Errorf("MarshalText err = %v, want ErrInvalidEvent", err)
			}
		})
	}
}

func TestComment(t *testing.T) {
	tests := []struct{ in, want string }{
		{"keep-alive", ": keep-alive\n\n"},
		{"", ": \n\n"},
		{"a\nb\r\nc", ": a\n: b\n: c\n\n"},
	}
	for _, tt := range tests {
		if got := sse.Comment(tt.in); got != tt.want {
			t.Errorf("Comment(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEventAppendTextAllocs(t *testing.T) {
	ev := sse.NewEvent("line1\nline2").WithType("t").WithID("42").WithRetry(1000)
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		buf, err = ev.AppendText(buf[:0])
		if err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("AppendText allocs = %v, want 0", allocs)
	}
}
