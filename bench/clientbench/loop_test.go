package clientbench

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkClientLoopback runs each client against a loopback server
// that writes the recording one event per write and flush, as a live
// server does, so that events arrive in separate reads.
func BenchmarkClientLoopback(b *testing.B) {
	for _, rec := range recordings {
		events := splitEvents(rec.Stream)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			f := w.(http.Flusher)
			for _, ev := range events {
				if _, err := w.Write(ev); err != nil {
					return
				}
				f.Flush()
			}
			<-r.Context().Done()
		}))
		for _, c := range Clients {
			if c.Name == "stream-nofloor" {
				continue
			}
			b.Run(fmt.Sprintf("size=%s/impl=%s", rec.Name, c.Name), func(b *testing.B) {
				benchClient(b, rec, c, srv.Client(), srv.URL)
			})
		}
		srv.Close()
	}
}

// splitEvents cuts a stream after each blank line.
func splitEvents(b []byte) [][]byte {
	var out [][]byte
	start := 0
	for i := 1; i < len(b); i++ {
		if b[i] == '\n' && b[i-1] == '\n' {
			out = append(out, b[start:i+1])
			start = i + 1
		}
	}
	return out
}
