package main

import (
	"context"
	"time"

	gosse "github.com/tmaxmax/go-sse"
)

func init() { newBroadcaster[implGoSSE] = newGoSSE }

// goSSE is github.com/tmaxmax/go-sse: a Server with its default provider,
// Joe, which writes every published message to each subscriber in turn.
type goSSE struct{ *gosse.Server }

func newGoSSE() broadcaster { return goSSE{&gosse.Server{}} }

func (g goSSE) Publish(data string) error {
	m := &gosse.Message{}
	m.AppendData(data)
	return g.Server.Publish(m)
}

func (g goSSE) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = g.Shutdown(ctx)
}
