// Command ssehub is a Mercure hub (draft-dunglas-mercure-08) built on the
// sse engine: publishers POST updates, browsers subscribe with
// EventSource.
//
//	go -C cmd/ssehub run .
//
// starts it on localhost:3000 in development mode, with a demo page at /.
// Run it with -h for the flags; each has an SSEHUB_* environment variable.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ssehub:", err)
		if errors.As(err, new(*configError)) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
