package mercure

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coregx/stream/cmd/ssehub/internal/auth"
)

// Default limits, used when the matching [Config] field is zero.
const (
	DefaultCookieName     = "__Secure-mercure_access_token"
	DefaultMaxBody        = 1 << 20
	DefaultMaxTopicLength = 2048
	DefaultMaxMatchers    = 32
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
	// DefaultCookieName ("__Secure-mercure_access_token").
	CookieName string

	// AuthorizationServers are advertised in the protected resource
	// metadata; nil for self-issued tokens.
	AuthorizationServers []string

	// PublishOrigins are the origins (scheme://host[:port]) allowed to
	// publish with a cookie, besides the hub's own; "*" allows any.
	PublishOrigins []string

	// MaxBody bounds the body of a publish or QUERY request in bytes;
	// zero means DefaultMaxBody (1 MiB).
	MaxBody int64

	// MaxTopicLength bounds a published topic, ID or type and a
	// subscription's matcher in bytes; zero means DefaultMaxTopicLength
	// (2048).
	MaxTopicLength int

	// MaxMatchers bounds the matchers of one subscription request and
	// the topics of one update; zero means DefaultMaxMatchers (32).
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

	// Subscriptions enables the active subscriptions feature:
	// subscription events and the subscription API, which lists the
	// subscriptions of every hub sharing the Engine's broker.
	Subscriptions bool

	// SubscriptionsTTL, for hubs sharing a broker, is how long the
	// subscriptions of another hub stay listed after the last event
	// from it: each hub holding subscriptions publishes a heartbeat
	// every SubscriptionsTTL/3, so that those of a hub that died
	// without ending them go away. Zero, for a hub alone on its broker,
	// means no heartbeat and no expiry.
	SubscriptionsTTL time.Duration

	// Compat accepts Mercure 0.x clients besides draft-08 ones: topic=
	// selectors (URI templates), tokens with the mercure claim (see
	// auth.Validator.Legacy), the mercureAuthorization cookie, the
	// lastEventID query parameter, and the Last-Event-ID response header
	// besides Mercure-Last-Event-ID.
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
// published), then the engine's, then registry.fmu (taken by the
// follower the in-memory broker calls while publishing); Hub.mu and
// matcherCache.mu are leaves, never held while taking another lock.
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
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Hub{cfg: cfg, byClient: make(map[string]int), matchers: newMatcherCache(maxSharedMatchers)}
	if cfg.Subscriptions {
		h.subs = newRegistry(cfg.Engine, cfg.SubscriptionsTTL)
	}
	return h
}

// maxSharedMatchers bounds the matchers a hub shares between streams.
const maxSharedMatchers = 10000

// legacyCookie is the cookie of Mercure 0.x, read in compatibility mode.
const legacyCookie = "mercureAuthorization"

// Path is the hub's URL path.
const Path = hubPath

// MetadataPath is the path of the hub's protected resource metadata
// (RFC 9728): the well-known prefix, then the hub's path.
const MetadataPath = "/.well-known/oauth-protected-resource" + hubPath

// QUERY is the safe HTTP method carrying a subscription's parameters in
// a form body.
const QUERY = "QUERY"

// Register adds the hub's routes to mux.
func (h *Hub) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+Path, h.subscribe)
	mux.HandleFunc(QUERY+" "+Path, h.subscribe)
	// A GET pattern also serves HEAD, which would open a stream whose
	// body nobody reads.
	mux.HandleFunc("HEAD "+Path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET, POST, QUERY")
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

// badRequest answers a request malformed independently of its token:
// 400, without a Bearer challenge.
func badRequest(w http.ResponseWriter, msg string) {
	fail(w, http.StatusBadRequest, "", msg)
}

// challenge returns the Bearer challenge with the error code (none when
// empty) and the resource_metadata parameter.
func (h *Hub) challenge(r *http.Request, code string) string {
	c := "Bearer "
	if code != "" {
		c += `error="` + code + `", `
	}
	return c + `resource_metadata="` + h.metadataURL(r) + `"`
}

// badPresentation answers a request whose token presentation is
// malformed: 400 with the invalid_request challenge.
func (h *Hub) badPresentation(w http.ResponseWriter, r *http.Request, msg string) {
	fail(w, http.StatusBadRequest, h.challenge(r, "invalid_request"), msg)
}

func (h *Hub) noToken(w http.ResponseWriter, r *http.Request) {
	fail(w, http.StatusUnauthorized, h.challenge(r, ""), "an access token is required")
}

func (h *Hub) invalidToken(w http.ResponseWriter, r *http.Request) {
	fail(w, http.StatusUnauthorized, h.challenge(r, "invalid_token"), "invalid access token")
}

func (h *Hub) insufficientScope(w http.ResponseWriter, r *http.Request, msg string) {
	fail(w, http.StatusForbidden, h.challenge(r, "insufficient_scope"), msg)
}

// authenticate returns the grants of r's token, nil for none, and its
// source; it answers w itself and returns ok false on failure.
func (h *Hub) authenticate(w http.ResponseWriter, r *http.Request, required bool) (g *grants, tok *auth.Token, src auth.Source, ok bool) {
	cookies := []string{h.cfg.CookieName}
	if h.cfg.Compat {
		cookies = append(cookies, legacyCookie)
	}
	raw, src, err := auth.Extract(r, cookies...)
	if err != nil {
		h.badPresentation(w, r, err.Error())
		return nil, nil, src, false
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
		h.invalidToken(w, r)
		return nil, nil, src, false
	}
	g, err = compileGrants(h.matchers, tok, h.base(r))
	if err != nil {
		h.invalidToken(w, r)
		return nil, nil, src, false
	}
	return g, tok, src, true
}

// metadata serves the protected resource metadata (RFC 9728).
func (h *Hub) metadata(w http.ResponseWriter, r *http.Request) {
	md := map[string]any{
		"resource":                              h.cfg.Validator.Audience,
		"authorization_details_types_supported": []string{auth.DetailType},
		"bearer_methods_supported":              []string{"header"},
		"mercure_cookie":                        h.cfg.CookieName,
	}
	if len(h.cfg.AuthorizationServers) > 0 {
		md["authorization_servers"] = h.cfg.AuthorizationServers
	}
	if h.subs != nil {
		md["mercure_subscriptions"] = true
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(md)
}
