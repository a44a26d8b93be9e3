package mercure

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coregx/stream/cmd/ssehub/internal/auth"
	"github.com/google/uuid"
)

// Default limits, used when the matching [Config] field is zero.
const (
	DefaultCookieName     = "mercureAccessToken"
	DefaultMaxBody        = 1 << 20
	DefaultMaxTopicLength = 2048
	DefaultMaxMatchers    = 32
	DefaultScanLimit      = 1000
)

// Config configures a [Hub]. Its zero value, with an Engine and a
// Validator, is usable.
type Config struct {
	// Engine delivers the updates; required.
	Engine *Engine

	// URL is the hub's URL, the base against which relative topics and
	// URL patterns (of subscriptions and of tokens) are resolved, and
	// the target of its links. Empty means the URL each request reached,
	// from its Host header, which a client chooses: only for tests and
	// trusted networks.
	URL string

	// Validator checks access tokens; required.
	Validator *auth.Validator

	// Anonymous lets subscribers without a token receive public updates.
	Anonymous bool

	// CookieName is the cookie carrying a browser's token; empty means
	// DefaultCookieName ("mercureAccessToken").
	CookieName string

	// NoQueryToken refuses the access_token query parameter, which the
	// draft lets hubs accept; by default it is accepted.
	NoQueryToken bool

	// PublishOrigins are the origins (scheme://host[:port]) allowed to
	// publish with a cookie, besides the hub's own; "*" allows any.
	PublishOrigins []string

	// MaxBody bounds a publish request's body in bytes; zero means
	// DefaultMaxBody (1 MiB).
	MaxBody int64

	// MaxTopicLength bounds a published topic and a subscription's
	// matcher in bytes; zero means DefaultMaxTopicLength (2048).
	MaxTopicLength int

	// MaxMatchers bounds the matchers of one subscription request; zero
	// means DefaultMaxMatchers (32).
	MaxMatchers int

	// MaxConnections bounds the open streams; zero means no bound.
	MaxConnections int

	// MaxConnectionsPerClient bounds the open streams per remote IP
	// address; zero means no bound.
	MaxConnectionsPerClient int

	// MaxLifetime, when positive, ends every stream after that long, so
	// that subscribers reconnect and present their token again; zero
	// means no bound besides the token's exp.
	MaxLifetime time.Duration

	// ScanLimit bounds the updates examined, backwards from a resume
	// position, for the Last-Event-ID response header; zero means
	// DefaultScanLimit (1000).
	ScanLimit int

	// Subscriptions enables the active subscriptions feature:
	// subscription events and the subscription API.
	Subscriptions bool

	// Compat accepts Mercure 0.x clients besides draft-08 ones: topic=
	// selectors (URI templates), several topics per update, tokens with
	// the mercure claim (see auth.Validator.Legacy), the
	// mercureAuthorization cookie and the Last-Event-ID query parameter.
	Compat bool

	// ObservePublish, when set, is called after each publish request
	// with the status answered and the time taken.
	ObservePublish func(status int, d time.Duration)

	// Logger receives the hub's records; nil discards them.
	Logger *slog.Logger
}

// Hub serves the Mercure endpoints.
//
// Lock order: registry.mu (held while a subscription event is
// published), then the engine's; Hub.mu, matcherCache.mu and
// metaCache.mu are leaves, never held while taking another lock.
type Hub struct {
	cfg Config

	subs     *registry // nil unless cfg.Subscriptions
	matchers *matcherCache

	mu       sync.Mutex
	streams  int
	byClient map[string]int
}

// NewHub returns a hub with cfg.
func NewHub(cfg Config) *Hub {
	if cfg.CookieName == "" {
		cfg.CookieName = DefaultCookieName
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.MaxTopicLength == 0 {
		cfg.MaxTopicLength = DefaultMaxTopicLength
	}
	if cfg.MaxMatchers == 0 {
		cfg.MaxMatchers = DefaultMaxMatchers
	}
	if cfg.ScanLimit == 0 {
		cfg.ScanLimit = DefaultScanLimit
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Hub{cfg: cfg, byClient: make(map[string]int), matchers: newMatcherCache(maxSharedMatchers)}
	if cfg.Subscriptions {
		h.subs = &registry{engine: cfg.Engine, active: make(map[string]*subscription)}
	}
	return h
}

// maxSharedMatchers bounds the matchers a hub shares between streams.
const maxSharedMatchers = 10000

// legacyCookie is the cookie of Mercure 0.x, read in compatibility mode.
const legacyCookie = "mercureAuthorization"

// Path is the hub's URL path.
const Path = hubPath

// MetadataPath is the path of the hub's protected resource metadata.
const MetadataPath = "/.well-known/oauth-protected-resource" + hubPath

// Register adds the hub's routes to mux.
func (h *Hub) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+Path, h.subscribe)
	// A GET pattern also serves HEAD, which would open a stream whose
	// body nobody reads.
	mux.HandleFunc("HEAD "+Path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET, POST")
		w.WriteHeader(http.StatusMethodNotAllowed)
	})
	mux.HandleFunc("POST "+Path, h.publish)
	mux.HandleFunc("GET "+MetadataPath, h.metadata)
	if h.subs != nil {
		mux.HandleFunc("GET "+subscriptionsPath, h.serveSubscriptions)
		mux.HandleFunc("GET "+subscriptionsPath+"/{matchType}/{match}", h.serveSubscriptions)
		mux.HandleFunc("GET "+subscriptionsPath+"/{matchType}/{match}/{subscriber}", h.serveSubscriptions)
	}
}

// hubURL returns the hub's URL as r reached it.
func hubURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + hubPath
}

// base returns the hub's URL: the configured one, else the one r reached.
func (h *Hub) base(r *http.Request) string {
	if h.cfg.URL != "" {
		return h.cfg.URL
	}
	return hubURL(r)
}

func (h *Hub) metadataURL(r *http.Request) string {
	return strings.TrimSuffix(h.base(r), hubPath) + MetadataPath
}

// fail answers an error: code, the WWW-Authenticate challenge when not
// empty (RFC 6750 section 3), and msg as a line of text.
func fail(w http.ResponseWriter, code int, challenge, msg string) {
	if challenge != "" {
		w.Header().Set("WWW-Authenticate", challenge)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}

func badRequest(w http.ResponseWriter, msg string) {
	fail(w, http.StatusBadRequest, `Bearer error="invalid_request"`, msg)
}

func (h *Hub) noToken(w http.ResponseWriter, r *http.Request) {
	fail(w, http.StatusUnauthorized, `Bearer resource_metadata="`+h.metadataURL(r)+`"`, "an access token is required")
}

func invalidToken(w http.ResponseWriter) {
	fail(w, http.StatusUnauthorized, `Bearer error="invalid_token"`, "invalid access token")
}

func insufficientScope(w http.ResponseWriter, msg string) {
	fail(w, http.StatusForbidden, `Bearer error="insufficient_scope"`, msg)
}

// authenticate returns the grants of r's token, nil for none, and its
// source; it answers w itself and returns ok false on failure.
func (h *Hub) authenticate(w http.ResponseWriter, r *http.Request, required bool) (g *grants, tok *auth.Token, src auth.Source, ok bool) {
	raw, src, err := auth.Extract(r, h.cfg.CookieName, !h.cfg.NoQueryToken)
	if err != nil {
		badRequest(w, err.Error())
		return nil, nil, src, false
	}
	if raw == "" && h.cfg.Compat {
		raw, src, _ = auth.Extract(r, legacyCookie, false)
	}
	if raw == "" {
		if required {
			h.noToken(w, r)
			return nil, nil, src, false
		}
		return nil, nil, src, true
	}
	tok, err = h.cfg.Validator.Validate(raw)
	if err != nil {
		h.cfg.Logger.Debug("ssehub: token refused", "err", err)
		invalidToken(w)
		return nil, nil, src, false
	}
	g, err = compileGrants(h.matchers, tok, h.base(r))
	if err != nil {
		invalidToken(w)
		return nil, nil, src, false
	}
	return g, tok, src, true
}

// statusWriter records the status of a response.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// publish handles a POST of an update.
func (h *Hub) publish(w http.ResponseWriter, r *http.Request) {
	if h.cfg.ObservePublish != nil {
		start, sw := time.Now(), &statusWriter{ResponseWriter: w, code: http.StatusOK}
		defer func() { h.cfg.ObservePublish(sw.code, time.Since(start)) }()
		w = sw
	}
	g, _, src, ok := h.authenticate(w, r, true)
	if !ok {
		return
	}
	if src == auth.Cookie && !h.originAllowed(r) {
		fail(w, http.StatusForbidden, "", "a publish authorized by cookie must come from an allowed origin")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		fail(w, http.StatusUnsupportedMediaType, "", "the body must be application/x-www-form-urlencoded")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(w, http.StatusRequestEntityTooLarge, "", "the body is larger than "+strconv.FormatInt(h.cfg.MaxBody, 10)+" bytes")
			return
		}
		badRequest(w, "reading the body: "+err.Error())
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		badRequest(w, "malformed form: "+err.Error())
		return
	}
	u, code, msg := h.parseUpdate(form)
	if code != 0 {
		if code == http.StatusBadRequest {
			badRequest(w, msg)
		} else {
			fail(w, code, "", msg)
		}
		return
	}
	for _, t := range u.Topics {
		if ReservedTopic(t, h.base(r)) {
			fail(w, http.StatusForbidden, "", "the topic addresses the hub's reserved namespace "+hubPath)
			return
		}
		if !g.canPublish(t) {
			insufficientScope(w, "the token does not grant publish on this topic")
			return
		}
	}
	if err := h.cfg.Engine.Publish(r.Context(), u); err != nil {
		h.cfg.Logger.Error("ssehub: publish failed", "err", err)
		fail(w, http.StatusServiceUnavailable, "", "the update could not be stored")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	io.WriteString(w, u.ID)
}

// parseUpdate reads an update from a publish form; code is 0 when it is
// valid, else the status to answer with msg.
func (h *Hub) parseUpdate(form url.Values) (u *Update, code int, msg string) {
	for k, vs := range form {
		if !utf8.ValidString(k) {
			return nil, http.StatusBadRequest, "field names must be UTF-8"
		}
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return nil, http.StatusBadRequest, "field " + strconv.Quote(k) + " is not UTF-8"
			}
		}
	}
	topics := form["topic"]
	switch {
	case len(topics) == 0:
		return nil, http.StatusBadRequest, "a topic field is required"
	case len(topics) > 1 && !h.cfg.Compat:
		return nil, http.StatusBadRequest, "exactly one topic field is allowed, got " + strconv.Itoa(len(topics))
	case len(topics) > h.cfg.MaxMatchers:
		return nil, http.StatusRequestEntityTooLarge, "more than " + strconv.Itoa(h.cfg.MaxMatchers) + " topics"
	}
	u = &Update{Topics: topics}
	for _, t := range topics {
		if len(t) > h.cfg.MaxTopicLength {
			return nil, http.StatusRequestEntityTooLarge, "the topic is longer than " + strconv.Itoa(h.cfg.MaxTopicLength) + " bytes"
		}
		if err := ValidTopic(t); err != nil {
			return nil, http.StatusBadRequest, err.Error()
		}
	}
	single := func(name string) (string, bool, string) {
		vs, ok := form[name]
		if len(vs) > 1 {
			return "", true, "the " + name + " field must appear at most once"
		}
		if !ok {
			return "", false, ""
		}
		return vs[0], true, ""
	}
	var present bool
	var bad string
	if u.Data, _, bad = single("data"); bad != "" {
		return nil, http.StatusBadRequest, bad
	}
	_, u.Private = form["private"]
	if u.ID, present, bad = single("id"); bad != "" {
		return nil, http.StatusBadRequest, bad
	}
	switch {
	case !present || u.ID == "":
		u.ID = newID()
	case u.ID[0] == '#':
		return nil, http.StatusBadRequest, "the id must not start with #"
	case strings.ContainsAny(u.ID, "\r\n\x00"):
		return nil, http.StatusBadRequest, "the id must not contain CR, LF or NUL"
	case u.ID == Earliest:
		return nil, http.StatusBadRequest, "the id \"earliest\" is reserved"
	}
	if u.Type, _, bad = single("type"); bad != "" {
		return nil, http.StatusBadRequest, bad
	}
	if strings.ContainsAny(u.Type, "\r\n\x00") {
		return nil, http.StatusBadRequest, "the type must not contain CR, LF or NUL"
	}
	retry, present, bad := single("retry")
	if bad != "" {
		return nil, http.StatusBadRequest, bad
	}
	if present {
		if retry == "" || strings.Trim(retry, "0123456789") != "" {
			return nil, http.StatusBadRequest, "the retry must consist of ASCII digits"
		}
		n, err := strconv.ParseInt(retry, 10, 32)
		if err != nil {
			return nil, http.StatusBadRequest, "the retry is too large"
		}
		u.Retry = int(n)
	}
	return u, 0, ""
}

// newID returns a hub-generated update ID: a UUID version 7 URN, which
// sorts by time.
func newID() string {
	return "urn:uuid:" + uuid.Must(uuid.NewV7()).String()
}

// originAllowed is the CSRF check for publishes authorized by cookie: the
// Origin (or else the Referer's origin) must be the hub's own or one of
// PublishOrigins; a request with neither is refused.
func (h *Hub) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		ref, err := url.Parse(r.Header.Get("Referer"))
		if err != nil || ref.Scheme == "" || ref.Host == "" {
			return false
		}
		origin = ref.Scheme + "://" + ref.Host
	}
	self := strings.TrimSuffix(hubURL(r), hubPath)
	if strings.EqualFold(origin, self) {
		return true
	}
	for _, o := range h.cfg.PublishOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// subscribe handles a GET opening a stream.
func (h *Hub) subscribe(w http.ResponseWriter, r *http.Request) {
	base := h.base(r)
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		badRequest(w, "malformed query: "+err.Error())
		return
	}
	matchers, msg := h.parseMatchers(query, base)
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
	defer release()

	lastID, resume := r.Header.Get("Last-Event-ID"), false
	if _, ok := r.Header["Last-Event-Id"]; ok {
		resume = true
	} else if v, ok := query["lastEventID"]; ok {
		lastID, resume = v[0], true
	} else if v, ok := query["Last-Event-ID"]; ok && h.cfg.Compat {
		lastID, resume = v[0], true // Mercure 0.x spelling
	}
	visible := func(u *updateMeta) bool { return !u.Private || g.canReadAny(u.Topics) }
	pass := func(u *updateMeta) bool {
		for _, t := range u.Topics {
			if anyMatch(matchers, t) {
				return visible(u)
			}
		}
		return false
	}
	if resume && lastID != "" {
		w.Header().Set("Last-Event-ID", h.cfg.Engine.Predecessor(r.Context(), lastID, h.cfg.ScanLimit, visible))
	} else if resume {
		w.Header().Set("Last-Event-ID", Earliest)
	}
	if h.subs != nil {
		subject := ""
		if tok != nil {
			subject = tok.Subject
		}
		subs := h.subs.open(r.Context(), matchers, subject, g)
		defer h.subs.close(subs)
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
	if !end.IsZero() {
		ctx, cancel := context.WithDeadline(r.Context(), end)
		defer cancel()
		r = r.WithContext(ctx)
	}
	h.cfg.Engine.Serve(w, r, lastID, pass)
}

// parseMatchers reads the topic matchers of a subscription query; msg
// says what is wrong when it is not empty.
func (h *Hub) parseMatchers(query url.Values, base string) ([]*Matcher, string) {
	names := make([]string, 0, len(query))
	for name := range query {
		names = append(names, name)
	}
	slices.Sort(names)
	var out []*Matcher
	for _, name := range names {
		var t MatchType
		switch {
		case name == "match" || name == "matchExact":
			t = Exact
		case name == "matchURLPattern":
			t = URLPattern
		case name == "topic" && h.cfg.Compat:
			t = URITemplate
		case strings.HasPrefix(strings.ToLower(name), "match"):
			// The whole match namespace is reserved.
			return nil, "unknown matcher type parameter " + strconv.Quote(name) + " (use match, matchExact or matchURLPattern)"
		default:
			continue
		}
		for _, v := range query[name] {
			if len(out) == h.cfg.MaxMatchers {
				return nil, "more than " + strconv.Itoa(h.cfg.MaxMatchers) + " topic matchers"
			}
			if len(v) > h.cfg.MaxTopicLength {
				return nil, "a topic matcher is longer than " + strconv.Itoa(h.cfg.MaxTopicLength) + " bytes"
			}
			m, err := h.matchers.get(t, v, base)
			if err != nil {
				return nil, name + ": " + err.Error()
			}
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return nil, "at least one topic matcher (match, matchExact or matchURLPattern) is required"
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

// metadata serves the protected resource metadata (RFC 9728).
func (h *Hub) metadata(w http.ResponseWriter, r *http.Request) {
	md := map[string]any{
		"resource":        h.cfg.Validator.Audience,
		"mercure_cookie":  true,
		"mercure_version": 8,
	}
	methods := []string{"header"}
	if !h.cfg.NoQueryToken {
		methods = append(methods, "query")
	}
	md["bearer_methods_supported"] = methods
	if iss := h.cfg.Validator.Issuer; iss != "" {
		md["authorization_servers"] = []string{iss}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(md)
}
