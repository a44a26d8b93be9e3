package sse

import (
	"fmt"
	"strconv"
	"strings"
)

// Event is one server-sent event.
//
// On the wire its fields appear in the order event, id, retry, data. Type
// and ID are written only when non-empty, Retry only when positive, and
// Data always, as one "data:" line per line of text (CR, LF and CRLF all
// end a line), so an empty Data still yields one empty "data:" line.
type Event struct {
	Type  string // event type, the "event" field; empty means "message"
	ID    string // event ID, the "id" field; must not contain CR, LF or NUL
	Data  string // payload; may span several lines
	Retry int    // reconnection time in milliseconds; 0 leaves it unset
}

// NewEvent returns an event carrying data.
func NewEvent(data string) *Event {
	return &Event{Data: data}
}

// WithType sets the event type and returns e.
func (e *Event) WithType(t string) *Event {
	e.Type = t
	return e
}

// WithID sets the event ID and returns e.
func (e *Event) WithID(id string) *Event {
	e.ID = id
	return e
}

// WithRetry sets the reconnection time in milliseconds and returns e.
func (e *Event) WithRetry(ms int) *Event {
	e.Retry = ms
	return e
}

// Validate reports whether e can be written without corrupting the
// stream. It returns an error matching [ErrInvalidEvent] when Type or ID
// contains a CR, LF or NUL, or when Retry is negative.
func (e *Event) Validate() error {
	if i := strings.IndexAny(e.Type, "\r\n\x00"); i >= 0 {
		return fmt.Errorf("%w: event type contains %q at byte %d", ErrInvalidEvent, e.Type[i], i)
	}
	if i := strings.IndexAny(e.ID, "\r\n\x00"); i >= 0 {
		return fmt.Errorf("%w: event id contains %q at byte %d", ErrInvalidEvent, e.ID[i], i)
	}
	if e.Retry < 0 {
		return fmt.Errorf("%w: negative retry %d", ErrInvalidEvent, e.Retry)
	}
	return nil
}

// AppendText appends the wire form of e, including the blank line that
// ends it, to b. It returns b unchanged and an error matching
// [ErrInvalidEvent] when e is not valid (see [Event.Validate]).
// It implements [encoding.TextAppender] and allocates only to grow b.
func (e *Event) AppendText(b []byte) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return b, err
	}
	return e.appendWire(b), nil
}

// MarshalText returns the wire form of e, or an error matching
// [ErrInvalidEvent].
func (e *Event) MarshalText() ([]byte, error) {
	return e.AppendText(make([]byte, 0, e.wireSize()))
}

// String returns the wire form of e, ending with the blank line. A field
// that fails validation is left out (a Type or ID with a line break or
// NUL, a negative Retry) so that the text never injects other fields; use
// [Event.AppendText] to get an error instead.
func (e *Event) String() string {
	v := *e
	if strings.ContainsAny(v.Type, "\r\n\x00") {
		v.Type = ""
	}
	if strings.ContainsAny(v.ID, "\r\n\x00") {
		v.ID = ""
	}
	if v.Retry < 0 {
		v.Retry = 0
	}
	return string(v.appendWire(make([]byte, 0, v.wireSize())))
}

// wireSize is an upper bound of the encoded length, for preallocation.
func (e *Event) wireSize() int {
	n := len(e.Data) + 7 + 2
	if e.Type != "" {
		n += len(e.Type) + 8
	}
	if e.ID != "" {
		n += len(e.ID) + 5
	}
	if e.Retry > 0 {
		n += 8 + 20
	}
	// Every extra line costs "data: " and one byte more than its break.
	n += 6 * (strings.Count(e.Data, "\n") + strings.Count(e.Data, "\r"))
	return n
}

// appendWire encodes e without validating it.
func (e *Event) appendWire(b []byte) []byte {
	if e.Type != "" {
		b = append(b, "event: "...)
		b = append(b, e.Type...)
		b = append(b, '\n')
	}
	if e.ID != "" {
		b = append(b, "id: "...)
		b = append(b, e.ID...)
		b = append(b, '\n')
	}
	if e.Retry > 0 {
		b = append(b, "retry: "...)
		b = strconv.AppendInt(b, int64(e.Retry), 10)
		b = append(b, '\n')
	}
	b = appendLines(b, "data: ", e.Data)
	return append(b, '\n')
}

// appendLines appends text as one prefix-led line per line of text,
// treating CR, LF and CRLF alike as line ends.
func appendLines(b []byte, prefix, text string) []byte {
	for {
		i := strings.IndexAny(text, "\r\n")
		b = append(b, prefix...)
		if i < 0 {
			b = append(b, text...)
			return append(b, '\n')
		}
		b = append(b, text[:i]...)
		b = append(b, '\n')
		if text[i] == '\r' && i+1 < len(text) && text[i+1] == '\n' {
			i++
		}
		text = text[i+1:]
	}
}

// Comment returns the wire form of a comment: one ": " line per line of
// text, then a blank line. Clients ignore comments; they keep idle
// connections from timing out.
//
//	sse.Comment("keep-alive") == ": keep-alive\n\n"
func Comment(text string) string {
	return string(AppendComment(make([]byte, 0, len(text)+4), text))
}

// AppendComment appends the wire form of [Comment](text) to b.
func AppendComment(b []byte, text string) []byte {
	b = appendLines(b, ": ", text)
	return append(b, '\n')
}
