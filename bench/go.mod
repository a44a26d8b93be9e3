module github.com/coregx/stream/bench

go 1.26.0

require (
	github.com/coregx/stream v0.0.0
	github.com/golang-jwt/jwt/v5 v5.3.1
	github.com/launchdarkly/eventsource v1.11.0
	github.com/r3labs/sse/v2 v2.10.0
	github.com/tmaxmax/go-sse v0.12.0
	golang.org/x/sys v0.50.0
	gopkg.in/cenkalti/backoff.v1 v1.1.0
)

require golang.org/x/net v0.0.0-20191116160921-f9c825593386 // indirect

replace github.com/coregx/stream => ../
