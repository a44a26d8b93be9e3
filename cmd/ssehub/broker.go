package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/coregx/stream/natsbroker"
	"github.com/coregx/stream/redisbroker"
	"github.com/coregx/stream/sse"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

// openBroker connects to the broker that spec names: "memory" (nil: the
// engine makes one), redis://HOST:PORT[/DB][?prefix=P] or
// nats://HOST:PORT[?stream=S&subject=T]. release closes the connection
// once the engine has closed the broker.
func openBroker(ctx context.Context, spec string, limits sse.HistoryLimits, log *slog.Logger) (b sse.Broker, release func(), err error) {
	if spec == "memory" {
		return nil, func() {}, nil
	}
	u, err := url.Parse(spec)
	if err != nil {
		return nil, nil, configErrorf("-broker: %v", err)
	}
	q := u.Query()
	u.RawQuery = ""
	switch u.Scheme {
	case "redis", "rediss":
		opts, err := redis.ParseURL(u.String())
		if err != nil {
			return nil, nil, configErrorf("-broker: %v", err)
		}
		rdb := redis.NewClient(opts)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := rdb.Ping(pctx).Err(); err != nil {
			rdb.Close()
			return nil, nil, fmt.Errorf("-broker: Redis at %s: %w", u.Host, err)
		}
		rb := redisbroker.New(rdb, &redisbroker.Options{Prefix: q.Get("prefix"), Limits: limits, Logger: log})
		return rb, func() { rdb.Close() }, nil
	case "nats":
		nc, err := nats.Connect(u.String(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.Timeout(5*time.Second))
		if err != nil {
			return nil, nil, fmt.Errorf("-broker: NATS at %s: %w", u.Host, err)
		}
		nb, err := natsbroker.New(ctx, nc, &natsbroker.Options{Stream: q.Get("stream"), Subject: q.Get("subject"), Limits: limits, Logger: log})
		if err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("-broker: NATS at %s: %w", u.Host, err)
		}
		return nb, nc.Close, nil
	}
	return nil, nil, configErrorf("-broker %q: want memory, redis://HOST:PORT[/DB] or nats://HOST:PORT", spec)
}
