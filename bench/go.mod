module github.com/coregx/stream/bench

go 1.26.0

require (
	github.com/coregx/stream v0.0.0
	github.com/golang-jwt/jwt/v5 v5.3.1
	github.com/launchdarkly/eventsource v1.11.0
	github.com/nats-io/nats.go v1.55.0
	github.com/r3labs/sse/v2 v2.10.0
	github.com/redis/go-redis/v9 v9.23.0
	github.com/tmaxmax/go-sse v0.12.0
	golang.org/x/sys v0.50.0
	gopkg.in/cenkalti/backoff.v1 v1.1.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/nats-io/nkeys v0.4.17 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/crypto v0.58.0 // indirect
)

require (
	github.com/coregx/stream/natsbroker v0.0.0
	github.com/coregx/stream/redisbroker v0.0.0
	golang.org/x/net v0.60.0 // indirect
)

replace github.com/coregx/stream => ../

replace github.com/coregx/stream/redisbroker => ../redisbroker

replace github.com/coregx/stream/natsbroker => ../natsbroker
