package mercure

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/coregx/stream/sse"
)

// recordingBroker records the subscription updates stored through it.
type recordingBroker struct {
	*sse.MemoryBroker
	mu     sync.Mutex
	states []bool
}

func (b *recordingBroker) Publish(ctx context.Context, topic string, ev *sse.Event, meta *sse.Meta) (sse.Message, error) {
	m, err := b.MemoryBroker.Publish(ctx, topic, ev, meta)
	if err == nil && ev.Type == subscriptionEventType {
		var d struct {
			Active bool `json:"active"`
		}
		if jerr := json.Unmarshal([]byte(ev.Data), &d); jerr == nil {
			b.mu.Lock()
			b.states = append(b.states, d.Active)
			b.mu.Unlock()
		}
	}
	return m, err
}

// TestShutdownPublishesSubscriptionEnds checks that a hub shutting down
// stores the end of each subscription it held before its broker closes:
// the draft asks for an update each time a subscription ends, and other
// hubs sharing the broker list subscriptions from them.
func TestShutdownPublishesSubscriptionEnds(t *testing.T) {
	b := &recordingBroker{MemoryBroker: sse.NewMemoryBroker(sse.HistoryLimits{})}
	e := NewEngine(EngineConfig{Broker: b})
	h := NewHub(Config{Engine: e, Anonymous: true, Subscriptions: true})
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	openStream(t, srv.URL+Path+"?match=urn:a&match=urn:b")
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := e.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if got := b.states; len(got) != 4 || !got[0] || !got[1] || got[2] || got[3] {
		t.Errorf("subscription updates stored: got %v, want [true true false false]", got)
	}
}
