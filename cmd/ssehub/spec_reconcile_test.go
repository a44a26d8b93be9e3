package main

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestSpecReconciliation(t *testing.T) {
	h := startHub(t, nil, "-anonymous")
	tp := "https://example.com/rec/1"
	ids := make([]string, 3)
	for i := range ids {
		ids[i] = h.mustPublish(t, form("topic", tp, "data", "d"+strconv.Itoa(i)))
	}

	t.Run("Reconciliation/LastEventIDQuery", func(t *testing.T) {
		s := h.subscribe(t, "match="+tp+"&lastEventID="+ids[0], nil)
		if got := s.res.Header.Get("Last-Event-ID"); got != ids[0] {
			t.Errorf("got Last-Event-ID %q, want %q", got, ids[0])
		}
		live := h.mustPublish(t, form("topic", tp, "data", "live"))
		for i, want := range []string{ev(ids[1], "d1"), ev(ids[2], "d2"), ev(live, "live")} {
			if got := s.next(); got != want {
				t.Errorf("event %d: got %q, want %q", i, got, want)
			}
		}
	})

	t.Run("Reconciliation/HeaderTakesPrecedence", func(t *testing.T) {
		s := h.subscribe(t, "match="+tp+"&lastEventID="+ids[0], http.Header{"Last-Event-Id": {ids[1]}})
		if got := s.res.Header.Get("Last-Event-ID"); got != ids[1] {
			t.Errorf("got Last-Event-ID %q, want %q", got, ids[1])
		}
		if got, want := s.next(), ev(ids[2], "d2"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("Reconciliation/Earliest", func(t *testing.T) {
		s := h.subscribe(t, "match="+tp+"&lastEventID=earliest", nil)
		if got := s.res.Header.Get("Last-Event-ID"); got != "earliest" {
			t.Errorf("got Last-Event-ID %q, want earliest", got)
		}
		for i, want := range []string{ev(ids[0], "d0"), ev(ids[1], "d1"), ev(ids[2], "d2")} {
			if got := s.next(); got != want {
				t.Errorf("event %d: got %q, want %q", i, got, want)
			}
		}
	})

	t.Run("Reconciliation/UnknownID", func(t *testing.T) {
		s := h.subscribe(t, "match="+tp, http.Header{"Last-Event-Id": {"urn:uuid:unknown"}})
		if got := s.res.Header.Get("Last-Event-ID"); got != "earliest" {
			t.Errorf("got Last-Event-ID %q, want earliest", got)
		}
		if got, want := s.next(), ev(ids[0], "d0"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("Reconciliation/NoHeaderWithoutRequest", func(t *testing.T) {
		s := h.subscribe(t, "match="+tp, nil)
		if got, ok := s.res.Header["Last-Event-Id"]; ok {
			t.Errorf("got Last-Event-ID %q, want none", got)
		}
	})

	t.Run("Reconciliation/ReplayAuthorization", func(t *testing.T) {
		ptp := "https://example.com/rec/private"
		pub1 := h.mustPublish(t, form("topic", ptp, "data", "pub1"))
		priv := h.mustPublish(t, form("topic", ptp, "data", "priv", "private", "on"))
		pub2 := h.mustPublish(t, form("topic", ptp, "data", "pub2"))
		// Anonymous: the private update is not replayed and its ID is
		// not disclosed; the header names the visible predecessor.
		s := h.subscribe(t, "match="+ptp+"&lastEventID="+priv, nil)
		if got := s.res.Header.Get("Last-Event-ID"); got != pub1 {
			t.Errorf("anonymous: got Last-Event-ID %q, want %q", got, pub1)
		}
		if got, want := s.next(), ev(pub2, "pub2"); got != want {
			t.Errorf("anonymous: got %q, want %q", got, want)
		}
		s = h.subscribe(t, "match="+ptp+"&lastEventID="+pub1, nil)
		if got, want := s.next(), ev(pub2, "pub2"); got != want {
			t.Errorf("anonymous replay: got %q, want %q", got, want)
		}
		reader := sign(t, h.claims(detail("subscribe", ptp)))
		s = h.subscribe(t, "match="+ptp+"&lastEventID="+pub1, http.Header{"Authorization": {"Bearer " + reader}})
		for i, want := range []string{ev(priv, "priv"), ev(pub2, "pub2")} {
			if got := s.next(); got != want {
				t.Errorf("authorized replay %d: got %q, want %q", i, got, want)
			}
		}
		s = h.subscribe(t, "match="+ptp+"&lastEventID="+priv, http.Header{"Authorization": {"Bearer " + reader}})
		if got := s.res.Header.Get("Last-Event-ID"); got != priv {
			t.Errorf("authorized: got Last-Event-ID %q, want %q", got, priv)
		}
	})

	t.Run("Reconciliation/NoGapNoDuplicate", func(t *testing.T) {
		ctp := "https://example.com/rec/concurrent"
		const total = 300
		first := h.mustPublish(t, form("topic", ctp, "data", "0"))
		admin := h.admin(t)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i < total; i++ {
				if code, body, _ := h.publish(t, admin, form("topic", ctp, "data", strconv.Itoa(i))); code != http.StatusOK {
					t.Errorf("publish %d: got %d %q", i, code, body)
					return
				}
			}
		}()
		s := h.subscribe(t, "match="+ctp+"&lastEventID="+first, nil)
		for want := 1; want < total; want++ {
			got := s.next()
			if !strings.HasSuffix(got, "\ndata: "+strconv.Itoa(want)+"\n\n") {
				t.Fatalf("got %q, want data %d (in order, once each)", got, want)
			}
		}
		wg.Wait()
	})
}

func TestSpecDiscovery(t *testing.T) {
	h := startHub(t, nil, "-issuer", "https://auth.example")
	t.Run("Discovery/ProtectedResourceMetadata", func(t *testing.T) {
		res, err := http.Get(h.base + "/.well-known/oauth-protected-resource/.well-known/mercure")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var md map[string]any
		if err := json.NewDecoder(res.Body).Decode(&md); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"resource":                 h.resource,
			"authorization_servers":    []any{"https://auth.example"},
			"bearer_methods_supported": []any{"header", "query"},
			"mercure_cookie":           true,
			"mercure_version":          float64(8),
		}
		got, _ := json.Marshal(md)
		w, _ := json.Marshal(want)
		if string(got) != string(w) {
			t.Errorf("got %s, want %s", got, w)
		}
	})
}

func TestKeepAlive(t *testing.T) {
	h := startHub(t, nil, "-anonymous", "-heartbeat", "50ms")
	s := h.subscribe(t, "match=x", nil)
	if got, want := s.block(true), ": keep-alive\n\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestSpecReconciliationPrunedHistory(t *testing.T) {
	h := startHub(t, nil, "-anonymous", "-history-events", "2")
	t.Run("Reconciliation/EarliestOnEmptyHistory", func(t *testing.T) {
		s := h.subscribe(t, "match=urn:pruned&lastEventID=earliest", nil)
		if got := s.res.Header.Get("Last-Event-ID"); got != "earliest" {
			t.Errorf("got Last-Event-ID %q, want earliest", got)
		}
		id := h.mustPublish(t, form("topic", "urn:pruned", "data", "first live"))
		if got, want := s.next(), ev(id, "first live"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("Reconciliation/DiscardedEvent", func(t *testing.T) {
		old := h.mustPublish(t, form("topic", "urn:pruned", "data", "a"))
		b := h.mustPublish(t, form("topic", "urn:pruned", "data", "b"))
		c := h.mustPublish(t, form("topic", "urn:pruned", "data", "c"))
		s := h.subscribe(t, "match=urn:pruned&lastEventID="+old, nil)
		if got := s.res.Header.Get("Last-Event-ID"); got != "earliest" {
			t.Errorf("got Last-Event-ID %q, want earliest (the event was discarded)", got)
		}
		for i, want := range []string{ev(b, "b"), ev(c, "c")} {
			if got := s.next(); got != want {
				t.Errorf("event %d: got %q, want %q", i, got, want)
			}
		}
	})
}
