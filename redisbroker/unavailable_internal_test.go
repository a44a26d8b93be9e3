package redisbroker

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/coregx/stream/sse"
)

// replyError is a reply of Redis, as the client reports one.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

func TestUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		down bool
	}{
		{"connection", io.EOF, true},
		{"loading", replyError("LOADING Redis is loading the dataset in memory"), true},
		{"busy", replyError("BUSY Redis is busy running a script"), true},
		{"script error", replyError("ERR Error running script"), false},
		{"wrong type", replyError("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := unavailable(context.Background(), tc.err)
			if got := errors.Is(err, sse.ErrBrokerUnavailable); got != tc.down || !errors.Is(err, tc.err) {
				t.Errorf("unavailable(%v): got %v (ErrBrokerUnavailable %v), want ErrBrokerUnavailable %v, wrapping the cause", tc.err, err, got, tc.down)
			}
		})
	}
}
