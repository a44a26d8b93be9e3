package clientbench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// Recording is an event stream held in memory.
type Recording struct {
	Name   string
	Stream []byte
	Events int    // events in Stream
	Last   string // data of the last event
	LastID string // ID of the last event
}

// NewRecording returns a stream of n events carrying size bytes of data
// each, with a fixed type and an ID that changes every event, as a
// typical server sends them.
func NewRecording(name string, n, size int) *Recording {
	var b bytes.Buffer
	var last string
	for i := 1; i <= n; i++ {
		data := fmt.Sprintf("%08d", i) + strings.Repeat("x", size-8)
		fmt.Fprintf(&b, "event: update\nid: %d\ndata: %s\n\n", i, data)
		last = data
	}
	return &Recording{Name: name, Stream: b.Bytes(), Events: n, Last: last, LastID: fmt.Sprint(n)}
}

// Transport is an http.RoundTripper that answers every request with the
// recording as an event stream, then keeps the response open until the
// request ends or the body is closed, so that no client reconnects.
type Transport struct{ Rec *Recording }

// RoundTrip implements http.RoundTripper.
func (t Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{
		Status:     "200 OK",
		StatusCode: http.StatusOK,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{"Content-Type": {"text/event-stream"}},
		Body:       newBody(req.Context(), t.Rec.Stream),
		Request:    req,
	}, nil
}

// body reads a byte slice, then blocks until closed or its context ends.
type body struct {
	r      *bytes.Reader
	ctx    context.Context
	closed chan struct{}
	once   sync.Once
}

func newBody(ctx context.Context, b []byte) *body {
	return &body{r: bytes.NewReader(b), ctx: ctx, closed: make(chan struct{})}
}

func (b *body) Read(p []byte) (int, error) {
	if b.r.Len() > 0 {
		return b.r.Read(p)
	}
	select {
	case <-b.ctx.Done():
		return 0, b.ctx.Err()
	case <-b.closed:
		return 0, io.ErrClosedPipe
	}
}

func (b *body) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}
