// Package auth validates Mercure access tokens: JWT access tokens
// (RFC 9068, "typ" at+jwt) whose authorization_details claim (RFC 9396)
// carries details of type [DetailType] granting publish and subscribe on
// topic matchers.
package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DetailType is the type of a Mercure authorization detail.
const DetailType = "https://mercure.rocks/authorization-detail"

// Limits on the authorization details of one token, beyond which the
// token is invalid.
const (
	MaxDetails       = 64   // mercure details per token
	MaxDetailTopics  = 128  // topic matchers per detail
	MaxPatternLength = 2048 // bytes per matcher
)

// Errors of [Validator.Validate]. The hub answers every one of them with
// the same invalid_token error, so as not to tell which check failed.
var (
	ErrNoToken      = errors.New("auth: no access token")
	ErrInvalidToken = errors.New("auth: invalid access token")
)

// Action is what a grant allows.
type Action string

// The actions of the draft.
const (
	Publish   Action = "publish"
	Subscribe Action = "subscribe"
)

// TopicMatcher is one entry of a detail's topics: a matcher and its type
// ("exact" when the token names none).
type TopicMatcher struct {
	Match     string
	MatchType string
}

// Detail is a validated authorization detail of type "mercure".
type Detail struct {
	Actions []Action
	Topics  []TopicMatcher
	Payload json.RawMessage // a JSON object, or nil
}

// Allows reports whether d grants a.
func (d *Detail) Allows(a Action) bool {
	for _, x := range d.Actions {
		if x == a {
			return true
		}
	}
	return false
}

// Token is a validated access token.
type Token struct {
	Subject string    // the sub claim, "" when absent
	Expires time.Time // the exp claim
	Details []Detail  // its mercure authorization details, in order
}

// Validator checks access tokens. Its fields must not change once it is
// in use.
type Validator struct {
	// Keyfunc returns the key verifying a token; see [jwt.Keyfunc]. It
	// must not choose a key the token's issuer is not entitled to.
	Keyfunc jwt.Keyfunc

	// Algorithms is the allowlist of accepted "alg" values; required.
	Algorithms []string

	// Audience is the hub's resource identifier, required in "aud".
	Audience string

	// Issuer, when set, is the trusted issuer, required in "iss". When
	// empty, "iss" must still be present, with any value: the key is
	// then trusted for every issuer.
	Issuer string

	// ValidateTopic checks a matcher of the given type; nil accepts
	// every one.
	ValidateTopic func(matchType, match string) error

	// Legacy also accepts the tokens of Mercure 0.x, whose "mercure"
	// claim lists topic selectors, {"publish": [...], "subscribe":
	// [...], "payload": ...}, instead of authorization_details. Such
	// tokens carry no typ, aud or exp, so none is required of them; exp
	// and nbf are enforced when present, and the signature, algorithm
	// allowlist and Issuer are checked as for every token. Their
	// selectors become topics of matchType LegacySelector.
	Legacy bool

	// ValidateSelector checks a legacy topic selector; nil accepts all.
	ValidateSelector func(selector string) error

	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// LegacySelector is the matchType given to the selectors of a legacy
// token's mercure claim.
const LegacySelector = "uritemplate"

// Validate parses and checks raw as a Mercure access token. Every
// failure matches [ErrInvalidToken].
func (v *Validator) Validate(raw string) (*Token, error) {
	tok, err := v.validate(raw)
	if err != nil && v.Legacy {
		if lt, lerr := v.validateLegacy(raw); lerr == nil {
			return lt, nil
		}
	}
	return tok, err
}

func (v *Validator) validate(raw string) (*Token, error) {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(v.Algorithms),
		jwt.WithExpirationRequired(),
		jwt.WithAudience(v.Audience),
	}
	if v.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.Issuer))
	}
	if v.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(v.Now))
	}
	var claims claims
	tok, err := jwt.NewParser(opts...).ParseWithClaims(raw, &claims, v.Keyfunc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if !isATJWT(tok.Header["typ"]) {
		return nil, fmt.Errorf("%w: typ is not at+jwt", ErrInvalidToken)
	}
	if _, ok := tok.Header["crit"]; ok {
		// RFC 7515 section 4.1.11: a token needing an extension
		// the recipient does not support (this one supports none)
		// is invalid.
		return nil, fmt.Errorf("%w: crit names extensions this hub does not support", ErrInvalidToken)
	}
	if claims.Issuer == "" {
		return nil, fmt.Errorf("%w: no iss", ErrInvalidToken)
	}
	details, err := parseDetails(claims.Details, v.ValidateTopic)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return &Token{Subject: claims.Subject, Expires: claims.ExpiresAt.Time, Details: details}, nil
}

// validateLegacy checks raw as a Mercure 0.x token; see Legacy.
func (v *Validator) validateLegacy(raw string) (*Token, error) {
	opts := []jwt.ParserOption{jwt.WithValidMethods(v.Algorithms)}
	if v.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.Issuer))
	}
	if v.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(v.Now))
	}
	var c struct {
		jwt.RegisteredClaims
		Details json.RawMessage `json:"authorization_details"`
		Mercure *struct {
			Publish   []string        `json:"publish"`
			Subscribe []string        `json:"subscribe"`
			Payload   json.RawMessage `json:"payload"`
		} `json:"mercure"`
	}
	tok, err := jwt.NewParser(opts...).ParseWithClaims(raw, &c, v.Keyfunc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if _, ok := tok.Header["crit"]; ok {
		return nil, fmt.Errorf("%w: crit names extensions this hub does not support", ErrInvalidToken)
	}
	if c.Mercure == nil || c.Details != nil {
		return nil, fmt.Errorf("%w: not a legacy token", ErrInvalidToken)
	}
	t := &Token{Subject: c.Subject}
	if c.ExpiresAt != nil {
		t.Expires = c.ExpiresAt.Time
	}
	for _, part := range []struct {
		action    Action
		selectors []string
	}{{Publish, c.Mercure.Publish}, {Subscribe, c.Mercure.Subscribe}} {
		if len(part.selectors) == 0 {
			continue
		}
		if len(part.selectors) > MaxDetailTopics {
			return nil, fmt.Errorf("%w: more than %d selectors", ErrInvalidToken, MaxDetailTopics)
		}
		d := Detail{Actions: []Action{part.action}}
		for _, sel := range part.selectors {
			if len(sel) > MaxPatternLength {
				return nil, fmt.Errorf("%w: selector longer than %d bytes", ErrInvalidToken, MaxPatternLength)
			}
			if v.ValidateSelector != nil {
				if err := v.ValidateSelector(sel); err != nil {
					return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
				}
			}
			d.Topics = append(d.Topics, TopicMatcher{Match: sel, MatchType: LegacySelector})
		}
		if part.action == Subscribe {
			if p := strings.TrimSpace(string(c.Mercure.Payload)); p != "" && p != "null" {
				d.Payload = c.Mercure.Payload
			}
		}
		t.Details = append(t.Details, d)
	}
	return t, nil
}

type claims struct {
	jwt.RegisteredClaims
	Details json.RawMessage `json:"authorization_details"`
}

// isATJWT reports whether the typ header names the JWT access token
// media type (RFC 9068 section 2.1), with or without its "application/"
// prefix.
func isATJWT(typ any) bool {
	s, ok := typ.(string)
	if !ok {
		return false
	}
	s = strings.ToLower(s)
	return s == "at+jwt" || s == "application/at+jwt"
}

// parseDetails reads the authorization_details claim. Details of other
// types are skipped; one Mercure detail that fails to parse or validate
// invalidates the whole token.
func parseDetails(raw json.RawMessage, check func(matchType, match string) error) ([]Detail, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, errors.New("authorization_details is not an array")
	}
	var out []Detail
	for i, e := range entries {
		var head struct {
			Type *string `json:"type"`
		}
		if err := json.Unmarshal(e, &head); err != nil || head.Type == nil {
			return nil, fmt.Errorf("authorization detail %d is not an object with a type", i)
		}
		if *head.Type != DetailType {
			continue
		}
		if len(out) == MaxDetails {
			return nil, fmt.Errorf("more than %d mercure authorization details", MaxDetails)
		}
		d, err := parseDetail(e, check)
		if err != nil {
			return nil, fmt.Errorf("authorization detail %d: %w", i, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func parseDetail(raw json.RawMessage, check func(matchType, match string) error) (Detail, error) {
	var d struct {
		Actions []json.RawMessage `json:"actions"`
		Topics  []json.RawMessage `json:"topics"`
		Payload json.RawMessage   `json:"payload"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return Detail{}, err
	}
	if len(d.Actions) == 0 {
		return Detail{}, errors.New("actions must be a non-empty array")
	}
	out := Detail{}
	for _, ra := range d.Actions {
		var a *string // null is no string either
		if err := json.Unmarshal(ra, &a); err != nil || a == nil {
			return Detail{}, errors.New("actions must be strings")
		}
		// An action this hub does not know grants nothing.
		if Action(*a) == Publish || Action(*a) == Subscribe {
			out.Actions = append(out.Actions, Action(*a))
		}
	}
	if len(d.Topics) == 0 {
		return Detail{}, errors.New("topics must be a non-empty array")
	}
	if len(d.Topics) > MaxDetailTopics {
		return Detail{}, fmt.Errorf("more than %d topics", MaxDetailTopics)
	}
	for _, t := range d.Topics {
		var tm struct {
			Match     *string         `json:"match"`
			MatchType json.RawMessage `json:"match_type"` // absent means exact, null is no type
		}
		if len(t) == 0 || t[0] != '{' || json.Unmarshal(t, &tm) != nil || tm.Match == nil {
			return Detail{}, errors.New("each topic must be an object with a string match")
		}
		m := TopicMatcher{Match: *tm.Match, MatchType: "exact"}
		if tm.MatchType != nil {
			if tm.MatchType[0] != '"' || json.Unmarshal(tm.MatchType, &m.MatchType) != nil {
				return Detail{}, errors.New("match_type must be a string")
			}
		}
		if len(m.Match) > MaxPatternLength {
			return Detail{}, fmt.Errorf("match longer than %d bytes", MaxPatternLength)
		}
		if check != nil {
			if err := check(m.MatchType, m.Match); err != nil {
				return Detail{}, err
			}
		}
		out.Topics = append(out.Topics, m)
	}
	if p := strings.TrimSpace(string(d.Payload)); p != "" {
		if p[0] != '{' {
			return Detail{}, errors.New("payload must be a JSON object")
		}
		out.Payload = d.Payload
	}
	return out, nil
}

// Source says where a request's token came from.
type Source int

// The token sources.
const (
	None Source = iota
	Header
	Cookie
)

// Extract returns the token r presents: that of the Authorization
// header when there is one (a cookie is then ignored), else that of the
// first of the cookies named that has a value. A malformed Authorization
// header is an error. The access_token query parameter is never read.
func Extract(r *http.Request, cookies ...string) (string, Source, error) {
	if h, ok := r.Header["Authorization"]; ok {
		if len(h) != 1 {
			return "", Header, errors.New("more than one Authorization header")
		}
		scheme, tok, ok := strings.Cut(h[0], " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t") {
			return "", Header, errors.New("the Authorization header must be \"Bearer <token>\"")
		}
		return tok, Header, nil
	}
	for _, name := range cookies {
		if c, err := r.Cookie(name); err == nil && c.Value != "" {
			return c.Value, Cookie, nil
		}
	}
	return "", None, nil
}
