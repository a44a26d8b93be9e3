package main

import (
	r3 "github.com/r3labs/sse/v2"
)

func init() { newBroadcaster[implR3labs] = newR3labs }

// r3labsStream is the stream every client subscribes to.
const r3labsStream = "bench"

// r3labs is github.com/r3labs/sse/v2: one stream created up front,
// events published to it. AutoReplay is off: left on, every event stays in
// the stream's log for ever and is replayed to each new subscriber, so
// memory would grow with every run.
type r3labs struct{ *r3.Server }

func newR3labs() broadcaster {
	s := r3.New()
	s.AutoReplay = false
	s.CreateStream(r3labsStream)
	return r3labs{s}
}

func (r r3labs) Publish(data string) error {
	r.Server.Publish(r3labsStream, &r3.Event{Data: []byte(data)})
	return nil
}

func (r r3labs) Close() { r.Server.Close() }
