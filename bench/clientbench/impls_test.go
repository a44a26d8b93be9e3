package clientbench

import (
	"net/http"
	"testing"
)

// TestImplementations checks that every parser and client reads a short
// recording whole, so that the benchmarks compare equal work.
func TestImplementations(t *testing.T) {
	rec := NewRecording("small", 50, 100)
	for _, p := range Parsers {
		res, err := p.Parse(rec.Stream)
		if err != nil || res.Events != rec.Events || res.Last != rec.Last || res.LastID != rec.LastID {
			t.Errorf("parser %s: got %d events, last ID %q, error %v; want %d, %q", p.Name, res.Events, res.LastID, err, rec.Events, rec.LastID)
		}
	}
	hc := &http.Client{Transport: Transport{rec}}
	for _, c := range Clients {
		res, err := c.Subscribe(t.Context(), hc, "http://recording.test/", rec.Events, nil)
		if err != nil || res.Events != rec.Events || res.Last != rec.Last || res.LastID != rec.LastID {
			t.Errorf("client %s: got %d events, last ID %q, error %v; want %d, %q", c.Name, res.Events, res.LastID, err, rec.Events, rec.LastID)
		}
	}
}
