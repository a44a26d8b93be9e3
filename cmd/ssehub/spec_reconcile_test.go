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
		s := h.subscribe(t, "match="+tp+"&last_event_id="+ids[0], nil)
		if got := s.res.Header.Get("Mercure-Last-Event-ID"); got != ids[0] {
			t.Errorf("got Mercure-Last-Event-ID %q, want %q", got, ids[0])
		}
		live := h.mustPublish(t, form("topic", tp, "data", "live"))
		for i, want := range []string{ev(ids[1], "d1"), ev(ids[2], "d2"), ev(live, "live")} {
			if got := s.next(); got != want {
				t.Errorf("event %d: got %q, want %q", i, got, want)
			}
		}
	})

	t.Run("Reconciliation/HeaderTakesPrecedence", func(t *testing.T) {
		s := h.subscribe(t, "match="+tp+"&last_event_id="+ids[0], http.Header{"Last-Event-Id": {ids[1]}})
		if got := s.res.Header.Get("Mercure-Last-Event-ID"); got != ids[1] {
			t.Errorf("got Mercure-Last-Event-ID %q, want %q", got, ids[1])
		}
		if got, want := s.next(), ev(ids[2], "d2"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("Reconciliation/LastEventIDInQUERYBody", func(t *testing.T) {
		s := h.subscribeQuery(t, "", "match="+tp+"&last_event_id="+ids[1], nil)
		if got := s.res.Header.Get("Mercure-Last-Event-ID"); got != ids[1] {
			t.Errorf("got Mercure-Last-Event-ID %q, want %q", got, ids[1])
		}
		if got, want := s.next(), ev(ids[2], "d2"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("Reconciliation/QueryComponentOverBody", func(t *testing.T) {
		s := h.subscribeQuery(t, "last_event_id="+ids[1], "match="+tp+"&last_event_id="+ids[0], nil)
		if got := s.res.Header.Get("Mercure-Last-Event-ID"); got != ids[1] {
			t.Errorf("got Mercure-Last-Event-ID %q, want %q", got, ids[1])
		}
		if got, want := s.next(), ev(ids[2], "d2"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("Reconciliation/HeaderOverBody", func(t *testing.T) {
		s := h.subscribeQuery(t, "", "match="+tp+"&last_event_id="+ids[0], http.Header{"Last-Event-Id": {ids[1]}})
		if got := s.res.Header.Get("Mercure-Last-Event-ID"); got != ids[1] {
			t.Errorf("got Mercure-Last-Event-ID %q, want %q", got, ids[1])
		}
		if got, want := s.next(), ev(ids[2], "d2"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("Reconciliation/OnlyTheDraftNames", func(t *testing.T) {
		// lastEventID is Mercure 0.x's (compatibility mode only), and
		// Last-Event-ID is not a response field of the draft.
		s := h.subscribe(t, "match="+tp+"&lastEventID="+ids[0], nil)
		for _, k := range []string{"Mercure-Last-Event-Id", "Last-Event-Id"} {
			if got, ok := s.res.Header[k]; ok {
				t.Errorf("got %s %q, want none", k, got)
			}
		}
		live := h.mustPublish(t, form("topic", tp, "data", "live2"))
		if got, want := s.next(), ev(live, "live2"); got != want {
			t.Errorf("got %q, want %q (no replay)", got, want)
		}
	})

	t.Run("Reconciliation/Earliest", func(t *testing.T) {
		s := h.subscribe(t, "match="+tp+"&last_event_id=earliest", nil)
		if got := s.res.Header.Get("Mercure-Last-Event-ID"); got != "earliest" {
			t.Errorf("got Mercure-Last-Event-ID %q, want earliest", got)
		}
		for i, want := range []string{ev(ids[0], "d0"), ev(ids[1], "d1"), ev(ids[2], "d2")} {
			if got := s.next(); got != want {
				t.Errorf("event %d: got %q, want %q", i, got, want)
			}
		}
	})

	t.Run("Reconciliation/UnknownID", func(t *testing.T) {
		s := h.subscribe(t, "match="+tp, http.Header{"Last-Event-Id": {"urn:uuid:unknown"}})
		if got := s.res.Header.Get("Mercure-Last-Event-ID"); got != "earliest" {
			t.Errorf("got Mercure-Last-Event-ID %q, want earliest", got)
		}
		if got, want := s.next(), ev(ids[0], "d0"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("Reconciliation/NoHeaderWithoutRequest", func(t *testing.T) {
		s := h.subscribe(t, "match="+tp, nil)
		if got, ok := s.res.Header["Mercure-Last-Event-Id"]; ok {
			t.Errorf("got Mercure-Last-Event-ID %q, want none", got)
		}
	})

	t.Run("Reconciliation/ReplayAuthorization", func(t *testing.T) {
		ptp := "https://example.com/rec/private"
		pub1 := h.mustPublish(t, form("topic", ptp, "data", "pub1"))
		priv := h.mustPublish(t, form("topic", ptp, "data", "priv", "private", "on"))
		pub2 := h.mustPublish(t, form("topic", ptp, "data", "pub2"))
		// Anonymous: the private update is not replayed; the header is
		// the cursor asked for, which the history holds (the draft lets
		// it name an update the subscriber may not read).
		s := h.subscribe(t, "match="+ptp+"&last_event_id="+priv, nil)
		if got := s.res.Header.Get("Mercure-Last-Event-ID"); got != priv {
			t.Errorf("anonymous: got Mercure-Last-Event-ID %q, want %q", got, priv)
		}
		if got, want := s.next(), ev(pub2, "pub2"); got != want {
			t.Errorf("anonymous: got %q, want %q", got, want)
		}
		s = h.subscribe(t, "match="+ptp+"&last_event_id="+pub1, nil)
		if got, want := s.next(), ev(pub2, "pub2"); got != want {
			t.Errorf("anonymous replay: got %q, want %q", got, want)
		}
		reader := sign(t, h.claims(detail("subscribe", ptp)))
		s = h.subscribe(t, "match="+ptp+"&last_event_id="+pub1, http.Header{"Authorization": {"Bearer " + reader}})
		for i, want := range []string{ev(priv, "priv"), ev(pub2, "pub2")} {
			if got := s.next(); got != want {
				t.Errorf("authorized replay %d: got %q, want %q", i, got, want)
			}
		}
		s = h.subscribe(t, "match="+ptp+"&last_event_id="+priv, http.Header{"Authorization": {"Bearer " + reader}})
		if got := s.res.Header.Get("Mercure-Last-Event-ID"); got != priv {
			t.Errorf("authorized: got Mercure-Last-Event-ID %q, want %q", got, priv)
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
		s := h.subscribe(t, "match="+ctp+"&last_event_id="+first, nil)
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
		if got := res.Header.Get("Content-Type"); got != "application/json" {
			t.Errorf("got Content-Type %q, want application/json", got)
		}
		// Self-issued tokens (a static key): no authorization server.
		want := map[string]any{
			"resource":                              h.resource,
			"authorization_details_types_supported": []any{"https://mercure.rocks/authorization-detail"},
			"bearer_methods_supported":              []any{"header"},
			"mercure_cookie":                        "__Secure-mercure_access_token",
		}
		got, _ := json.Marshal(md)
		w, _ := json.Marshal(want)
		if string(got) != string(w) {
			t.Errorf("got %s, want %s", got, w)
		}
	})
}

func TestSpecDiscoveryOptions(t *testing.T) {
	h := startHub(t, nil, "-subscriptions", "-cookie-name", "hub1_token")
	t.Run("Discovery/ProtectedResourceMetadata/Options", func(t *testing.T) {
		code, body, _ := do(t, mustRequest("GET", h.base+"/.well-known/oauth-protected-resource/.well-known/mercure", ""))
		want := `{"authorization_details_types_supported":["https://mercure.rocks/authorization-detail"],"bearer_methods_supported":["header"],"mercure_cookie":"hub1_token","mercure_subscriptions":true,"resource":"` + h.resource + `"}` + "\n"
		if code != http.StatusOK || body != want {
			t.Errorf("got %d %s, want 200 %s", code, body, want)
		}
	})
	t.Run("Authorization/Cookie/ConfiguredName", func(t *testing.T) {
		reader := sign(t, h.claims(detail("subscribe", "*")))
		h.subscribe(t, "match=x", http.Header{"Cookie": {"hub1_token=" + reader}})
		code, _, res := h.get(t, "match=x", http.Header{"Cookie": {"__Secure-mercure_access_token=" + reader}})
		checkStatus(t, "default name", code, res, http.StatusUnauthorized, challengeNoToken)
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
		s := h.subscribe(t, "match=urn:pruned&last_event_id=earliest", nil)
		if got := s.res.Header.Get("Mercure-Last-Event-ID"); got != "earliest" {
			t.Errorf("got Mercure-Last-Event-ID %q, want earliest", got)
		}
		id := h.mustPublish(t, form("topic", "urn:pruned", "data", "first live"))
		if got, want := s.next(), ev(id, "first live"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("Reconciliation/DiscardedEvent", func(t *testing.T) {
		// Two retained of a, b, c, d: after a, b was discarded.
		old := h.mustPublish(t, form("topic", "urn:pruned", "data", "a"))
		h.mustPublish(t, form("topic", "urn:pruned", "data", "b"))
		c := h.mustPublish(t, form("topic", "urn:pruned", "data", "c"))
		d := h.mustPublish(t, form("topic", "urn:pruned", "data", "d"))
		s := h.subscribe(t, "match=urn:pruned&last_event_id="+old, nil)
		if got := s.res.Header.Get("Mercure-Last-Event-ID"); got != "earliest" {
			t.Errorf("got Mercure-Last-Event-ID %q, want earliest (the event after it was discarded)", got)
		}
		for i, want := range []string{ev(c, "c"), ev(d, "d")} {
			if got := s.next(); got != want {
				t.Errorf("event %d: got %q, want %q", i, got, want)
			}
		}
	})
}
