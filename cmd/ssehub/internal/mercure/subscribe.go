package mercure

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// lastEventIDParam is the subscribe parameter naming the cursor to
// resume after.
const lastEventIDParam = "last_event_id"

// legacyLastEventIDParams are the names Mercure 0.x gave it, read in
// compatibility mode.
var legacyLastEventIDParams = []string{"lastEventID", "Last-Event-ID"}

// subscribe handles a GET or a QUERY opening a stream.
func (h *Hub) subscribe(w http.ResponseWriter, r *http.Request) {
	base := h.base(r)
	params := parseForm(r.URL.RawQuery)
	query := len(params) // the pairs from the query component come first
	if r.Method == QUERY && (r.ContentLength != 0 || len(r.TransferEncoding) > 0) {
		body, ok := readForm(w, r, h.cfg.MaxBody)
		if !ok {
			return
		}
		params = append(params, body...)
	}
	matchers, msg := h.parseMatchers(params, base)
	if msg != "" {
		badRequest(w, msg)
		return
	}
	g, tok, _, ok := h.authenticate(w, r, !h.cfg.Anonymous)
	if !ok {
		return
	}
	release, ok := h.admit(r)
	if !ok {
		fail(w, http.StatusTooManyRequests, "", "too many connections")
		return
	}

	lastID, resume := h.cursor(r, params, query)
	pass := func(topics []string, private bool) bool {
		for _, t := range topics {
			if anyMatch(matchers, t) {
				return !private || g.canReadAny(topics)
			}
		}
		return false
	}
	if resume {
		anchor := h.cfg.Engine.Anchor(r.Context(), lastID)
		w.Header().Set("Mercure-Last-Event-ID", anchor)
		if h.cfg.Compat {
			w.Header().Set("Last-Event-ID", anchor) // Mercure 0.x
		}
	}
	var subs []*subscription
	if h.subs != nil {
		subs = h.subs.open(r.Context(), matchers, g)
	}
	var end time.Time
	if tok != nil && !tok.Expires.IsZero() {
		end = tok.Expires // a stream never outlives the token that opened it
	}
	if h.cfg.MaxLifetime > 0 {
		if limit := time.Now().Add(h.cfg.MaxLifetime); end.IsZero() || limit.Before(end) {
			end = limit
		}
	}
	cancel := context.CancelFunc(func() {})
	if !end.IsZero() {
		// The deadline ends the stream, even once Serve returned
		// (the core keeps a detached stream until its request's
		// deadline): cancel only releases the context's timer.
		var ctx context.Context
		ctx, cancel = context.WithDeadline(r.Context(), end)
		r = r.WithContext(ctx)
	}
	// Serve may return while the stream goes on: what the stream holds
	// is released when it ends, by ended, which the engine calls once.
	h.cfg.Engine.Serve(w, r, lastID, pass, func() {
		cancel()
		if h.subs != nil {
			h.subs.close(subs)
		}
		release()
	})
}

// cursor returns the last event ID a subscription resumes after and
// whether it asked for one: the Last-Event-ID header wins, then the
// last_event_id parameter of the query component (params[:query]), then
// that of the body.
func (h *Hub) cursor(r *http.Request, params []pair, query int) (string, bool) {
	if v, ok := r.Header["Last-Event-Id"]; ok {
		return v[0], true
	}
	names := []string{lastEventIDParam}
	if h.cfg.Compat {
		names = append(names, legacyLastEventIDParams...)
	}
	for _, part := range [][]pair{params[:query], params[query:]} {
		for _, name := range names {
			if v, ok := first(part, name); ok {
				return v, true
			}
		}
	}
	return "", false
}

// matcherParams maps the subscribe parameters to their matcher types.
var matcherParams = map[string]MatchType{
	"match":                       Exact,
	"match_" + string(Exact):      Exact,
	"match_" + string(URLPattern): URLPattern,
}

// parseMatchers reads the topic matchers of a subscription's parameters,
// in order; msg says what is wrong when it is not empty.
func (h *Hub) parseMatchers(params []pair, base string) ([]*Matcher, string) {
	var out []*Matcher
	for _, p := range params {
		t, ok := matcherParams[p.name]
		switch {
		case ok:
		case p.name == "topic" && h.cfg.Compat:
			t = URITemplate
		case len(p.name) >= 5 && strings.EqualFold(p.name[:5], "match"):
			// The whole match namespace is reserved.
			return nil, "unknown matcher parameter " + strconv.Quote(p.name) + " (use match, match_exact or match_urlpattern)"
		default:
			continue
		}
		if len(out) == h.cfg.MaxMatchers {
			return nil, "more than " + strconv.Itoa(h.cfg.MaxMatchers) + " topic matchers"
		}
		if len(p.value) > h.cfg.MaxTopicLength {
			return nil, "a topic matcher is longer than " + strconv.Itoa(h.cfg.MaxTopicLength) + " bytes"
		}
		if !utf8.ValidString(p.value) {
			return nil, p.name + ": not valid UTF-8"
		}
		m, err := h.matchers.get(t, p.value, base)
		if err != nil {
			return nil, p.name + ": " + err.Error()
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, "at least one topic matcher (match, match_exact or match_urlpattern) is required"
	}
	return out, ""
}

// admit counts a new stream against the connection limits; release
// undoes it.
func (h *Hub) admit(r *http.Request) (release func(), ok bool) {
	client, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		client = r.RemoteAddr
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cfg.MaxConnections > 0 && h.streams >= h.cfg.MaxConnections ||
		h.cfg.MaxConnectionsPerClient > 0 && h.byClient[client] >= h.cfg.MaxConnectionsPerClient {
		return nil, false
	}
	h.streams++
	h.byClient[client]++
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.streams--
		if h.byClient[client]--; h.byClient[client] == 0 {
			delete(h.byClient, client)
		}
	}, true
}
