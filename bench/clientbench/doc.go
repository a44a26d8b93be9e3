// Package clientbench compares event-stream parsers and clients: this
// module's sse.Reader and sse.Client, tmaxmax/go-sse, r3labs/sse v2 and
// launchdarkly/eventsource. It holds only benchmarks:
//
//	go test -run '^$' -bench . -benchtime 2x ./clientbench
//
// BenchmarkParse parses a recorded stream held in memory (64-byte events
// and 64 KiB events). BenchmarkClient runs each client over an in-memory
// HTTP transport that serves the same recording, so that it measures the
// client's own work: its parser plus how it hands events over.
// BenchmarkReconnectStorm runs each client against a loopback server that
// ends every response after one event and asks for a given retry, and
// reports the reconnections per second and the events lost or repeated.
//
// Each benchmark reports events/s, ns/event, allocs/event and B/event;
// allocations per event include the strings of the event itself (a
// changing ID and the data: two per event for this recording).
package clientbench
