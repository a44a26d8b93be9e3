package clientbench

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"

	ld "github.com/launchdarkly/eventsource"
	r3 "github.com/r3labs/sse/v2"
	gosse "github.com/tmaxmax/go-sse"
	"gopkg.in/cenkalti/backoff.v1"

	"github.com/coregx/stream/sse"
)

// maxEvent is the event size limit given to every implementation that
// has one, large enough for the 64 KiB recording.
const maxEvent = 1 << 20

// Result is what one run saw.
type Result struct {
	Events int
	Last   string // data of the last event
	LastID string // its ID
}

// Parser parses a whole stream.
type Parser struct {
	Name  string
	Parse func(b []byte) (Result, error)
}

// Parsers lists the parsers compared. r3labs/sse has none of its own: its
// event parsing is reachable only through its client.
var Parsers = []Parser{
	{"stream", func(b []byte) (Result, error) {
		var res Result
		rd := sse.NewReader(bytes.NewReader(b))
		rd.MaxEventSize = maxEvent
		for {
			ev, err := rd.Next()
			if err == io.EOF {
				return res, nil
			}
			if err != nil {
				return res, err
			}
			res.Events++
			res.Last, res.LastID = ev.Data, ev.ID
		}
	}},
	{"gosse", func(b []byte) (Result, error) {
		var res Result
		for ev, err := range gosse.Read(bytes.NewReader(b), &gosse.ReadConfig{MaxEventSize: maxEvent}) {
			if err != nil {
				return res, err
			}
			res.Events++
			res.Last, res.LastID = ev.Data, ev.LastEventID
		}
		return res, nil
	}},
	{"launchdarkly", func(b []byte) (Result, error) {
		var res Result
		dec := ld.NewDecoder(bytes.NewReader(b))
		for {
			ev, err := dec.Decode()
			if err == io.EOF {
				return res, nil
			}
			if err != nil {
				return res, err
			}
			res.Events++
			res.Last, res.LastID = ev.Data(), ev.Id()
		}
	}},
}

// Client subscribes to url through hc until it has seen want events (or
// ctx ends) and returns what it saw.
type Client struct {
	Name      string
	Subscribe func(ctx context.Context, hc *http.Client, url string, want int, see func(id, data string)) (Result, error)
}

// Clients lists the clients compared, each with its defaults except the
// event size limit.
var Clients = []Client{
	{"stream", func(ctx context.Context, hc *http.Client, url string, want int, see func(id, data string)) (Result, error) {
		c := &sse.Client{HTTPClient: hc, MaxEventSize: maxEvent}
		return streamSubscribe(ctx, c, url, want, see)
	}},
	{"stream-nofloor", func(ctx context.Context, hc *http.Client, url string, want int, see func(id, data string)) (Result, error) {
		c := &sse.Client{HTTPClient: hc, MaxEventSize: maxEvent, RetryFloor: -1}
		return streamSubscribe(ctx, c, url, want, see)
	}},
	{"gosse", func(ctx context.Context, hc *http.Client, url string, want int, see func(id, data string)) (Result, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return Result{}, err
		}
		c := &gosse.Client{HTTPClient: hc}
		conn := c.NewConnection(req)
		conn.Buffer(nil, maxEvent)
		var res Result
		conn.SubscribeToAll(func(ev gosse.Event) {
			res.Events++
			res.Last, res.LastID = ev.Data, ev.LastEventID
			if see != nil {
				see(res.LastID, res.Last)
			}
			if res.Events == want {
				cancel()
			}
		})
		err = conn.Connect()
		if errors.Is(err, context.Canceled) && res.Events == want {
			err = nil
		}
		return res, err
	}},
	{"r3labs", func(ctx context.Context, hc *http.Client, url string, want int, see func(id, data string)) (Result, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		c := r3.NewClient(url, r3.ClientMaxBufferSize(maxEvent))
		c.Connection = hc
		// Its default retries for 15 minutes after the context ends.
		c.ReconnectStrategy = backoff.WithContext(backoff.NewExponentialBackOff(), ctx)
		var res Result
		err := c.SubscribeRawWithContext(ctx, func(ev *r3.Event) {
			res.Events++
			res.Last, res.LastID = string(ev.Data), string(ev.ID)
			if see != nil {
				see(res.LastID, res.Last)
			}
			if res.Events == want {
				cancel()
			}
		})
		if res.Events == want {
			err = nil
		}
		return res, err
	}},
	{"launchdarkly", func(ctx context.Context, hc *http.Client, url string, want int, see func(id, data string)) (Result, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return Result{}, err
		}
		s, err := ld.SubscribeWithRequestAndOptions(req, ld.StreamOptionHTTPClient(hc),
			ld.StreamOptionErrorHandler(func(error) ld.StreamErrorHandlerResult { return ld.StreamErrorHandlerResult{} }))
		if err != nil {
			return Result{}, err
		}
		defer s.Close()
		var res Result
		for res.Events < want {
			select {
			case ev := <-s.Events:
				res.Events++
				res.Last, res.LastID = ev.Data(), ev.Id()
				if see != nil {
					see(res.LastID, res.Last)
				}
			case <-ctx.Done():
				return res, ctx.Err()
			}
		}
		return res, nil
	}},
}

func streamSubscribe(ctx context.Context, c *sse.Client, url string, want int, see func(id, data string)) (Result, error) {
	var res Result
	if want == 0 {
		return res, nil
	}
	for ev, err := range c.Events(ctx, url) {
		if err != nil {
			return res, err
		}
		res.Events++
		res.Last, res.LastID = ev.Data, ev.ID
		if see != nil {
			see(res.LastID, res.Last)
		}
		if res.Events == want {
			break
		}
	}
	return res, nil
}
