package main

import (
	"net/http"
	"slices"

	"github.com/rs/cors"
)

// The CORS answer the hub gives an allowed origin, beyond what
// github.com/rs/cors writes itself: the subscription API's Link and
// the reconciliation fields must be readable cross-origin (rs/cors
// would canonicalise these names to "…-Id" and sends them on actual
// requests only), and a preflight lists every method the hub serves
// cross-origin rather than echoing the one requested.
const (
	corsExposeHeaders = "Link, Mercure-Last-Event-ID, Last-Event-ID"
	corsAllowMethods  = "GET, POST, QUERY"
)

// withCORS answers CORS for the allowed origins with github.com/rs/cors:
// a listed origin gets credentials (the cookie authorization needs
// them), "*" lets any other origin in without them. No origins leaves
// next as it is.
func withCORS(origins []string, next http.Handler) http.Handler {
	if len(origins) == 0 {
		return next
	}
	listed := slices.DeleteFunc(slices.Clone(origins), func(o string) bool { return o == "*" })
	star := len(listed) < len(origins)
	inner := corsExtra(next)
	// rs/cors allows credentials per instance, and "*" with
	// credentials would reflect any origin: so one instance for the
	// listed origins, with credentials, and one for "*", without.
	// An empty AllowedOrigins means any origin to rs/cors, so the
	// listed instance exists only if some origin is listed.
	var withCred *cors.Cors
	var credH, anyH http.Handler
	if len(listed) > 0 {
		withCred = cors.New(corsOptions(listed, true))
		credH = withCred.Handler(inner)
	}
	if !star {
		return credH
	}
	anyH = cors.New(corsOptions([]string{"*"}, false)).Handler(inner)
	if withCred == nil {
		return anyH
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if withCred.OriginAllowed(r) {
			credH.ServeHTTP(w, r)
		} else {
			anyH.ServeHTTP(w, r)
		}
	})
}

func corsOptions(origins []string, credentials bool) cors.Options {
	return cors.Options{
		AllowedOrigins: origins,
		// HEAD is served wherever GET is (and is CORS-safelisted,
		// so it needs no mention in a preflight answer).
		AllowedMethods:   []string{http.MethodGet, http.MethodHead, http.MethodPost, "QUERY"},
		AllowedHeaders:   []string{"Authorization", "Content-Type", "Last-Event-ID", "Cache-Control"},
		AllowCredentials: credentials,
		MaxAge:           600,
		// A preflight reaches corsExtra, which completes and ends it
		// when rs/cors allowed it; a refused one goes on to the mux
		// (405, as without CORS).
		OptionsPassthrough: true,
	}
}

// corsExtra adds corsExposeHeaders to every request rs/cors allowed
// (it then set Access-Control-Allow-Origin) and answers an allowed
// preflight itself, with corsAllowMethods.
func corsExtra(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if h.Get("Access-Control-Allow-Origin") == "" {
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}
