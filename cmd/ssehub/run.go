package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coregx/stream/cmd/ssehub/internal/auth"
	"github.com/coregx/stream/cmd/ssehub/internal/mercure"
	"github.com/coregx/stream/sse"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

//go:embed demo.html
var demoHTML string

var demoPage = template.Must(template.New("demo").Parse(demoHTML))

// devTokenLifetime is how long the development token printed at start-up
// stays valid.
const devTokenLifetime = 24 * time.Hour

// run starts the hub and serves until ctx ends, then shuts it down
// gracefully. Logs go to stderr.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.help {
		return nil
	}
	if cfg.version {
		fmt.Fprintln(stderr, "ssehub", version)
		return nil
	}
	var handler slog.Handler = slog.NewTextHandler(stderr, nil)
	if cfg.logFormat == "json" {
		handler = slog.NewJSONHandler(stderr, nil)
	}
	log := slog.New(handler)

	var tlsConfig *tls.Config
	scheme := "http"
	if cfg.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
		if err != nil {
			return configErrorf("-tls-cert/-tls-key: %v", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
		scheme = "https"
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return configErrorf("-addr %s: %v", cfg.addr, err)
	}
	defer ln.Close()
	hubURL := scheme + "://" + ln.Addr().String() + mercure.Path
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok {
		host, _, _ := net.SplitHostPort(cfg.addr)
		if host == "localhost" || tcp.IP.IsUnspecified() {
			hubURL = scheme + "://" + net.JoinHostPort("localhost", strconv.Itoa(tcp.Port)) + mercure.Path
		}
	}
	resource := cfg.resource
	if resource == "" {
		resource = hubURL
		if cfg.jwtKey != "" || cfg.jwksURL != "" {
			log.Warn("ssehub: no -resource-identifier: tokens must have the hub's local URL as aud", "aud", resource)
		}
	}

	if cfg.issuer == "" && (cfg.jwtKey != "" || cfg.jwksURL != "") {
		log.Warn("ssehub: no -issuer: tokens of any iss are accepted; set the trusted issuer")
	}

	keysCtx, stopKeys := context.WithCancel(context.Background())
	defer stopKeys()
	validator := &auth.Validator{Audience: resource, Issuer: cfg.issuer, ValidateTopic: mercure.CheckMatcher,
		Legacy: cfg.compat, ValidateSelector: mercure.CheckSelector}
	var devToken string
	switch {
	case cfg.jwksURL != "":
		validator.Algorithms = auth.JWKSAlgorithms
		if validator.Keyfunc, err = auth.JWKSKeyfunc(keysCtx, cfg.jwksURL); err != nil {
			return configErrorf("%v", err)
		}
		if cfg.jwtAlgs != "" {
			validator.Algorithms = list(cfg.jwtAlgs)
			for _, a := range validator.Algorithms {
				if a == "none" || strings.HasPrefix(a, "HS") || jwt.GetSigningMethod(a) == nil {
					return configErrorf("-jwt-alg: %q cannot verify keys of a JWK Set", a)
				}
			}
		}
	case cfg.jwtKey != "":
		key, algs, err := auth.LoadKey(cfg.jwtKey)
		if err != nil {
			return configErrorf("%v", err)
		}
		validator.Keyfunc, validator.Algorithms = auth.StaticKeyfunc(key), algs[:1]
		if cfg.jwtAlgs != "" {
			validator.Algorithms = list(cfg.jwtAlgs)
			if err := auth.CheckAlgorithms(validator.Algorithms, algs); err != nil {
				return configErrorf("%v", err)
			}
		}
	default:
		secret := make([]byte, 32)
		rand.Read(secret)
		key := []byte(hex.EncodeToString(secret))
		validator.Keyfunc, validator.Algorithms = auth.StaticKeyfunc(key), []string{"HS256"}
		issuer := cfg.issuer
		if issuer == "" {
			issuer = strings.TrimSuffix(hubURL, mercure.Path)
		}
		if devToken, err = newDevToken(key, resource, issuer, time.Now().Add(devTokenLifetime)); err != nil {
			return err
		}
		log.Warn("ssehub: DEVELOPMENT MODE: no -jwt-key or -jwks-url, tokens are signed with a random key made for this run; never expose this hub")
		fmt.Fprintf(stderr, "Development token (publish and subscribe on every topic, valid %s):\n%s\n", devTokenLifetime, devToken)
	}

	limits := sse.HistoryLimits{MaxEvents: cfg.historyEvents, MaxBytes: cfg.historyBytes, MaxAge: cfg.historyAge}
	broker, releaseBroker, err := openBroker(ctx, cfg.broker, limits, log)
	if err != nil {
		return err
	}
	defer releaseBroker() // after the engine closed the broker
	engine := mercure.NewEngine(mercure.EngineConfig{
		Broker:       broker,
		History:      limits,
		Heartbeat:    cfg.heartbeat,
		WriteTimeout: cfg.writeTimeout,
		Logger:       log,
	})
	met := newMetrics()
	met.attach(engine)
	// The hub's URL, base of relative topics and patterns: the resource
	// identifier when it is one, else the URL it listens on.
	publicURL := hubURL
	if u, err := url.Parse(resource); err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Path == mercure.Path {
		publicURL = resource
	}
	var subsTTL time.Duration // a hub alone on its broker has no peer to expire
	if cfg.broker != "memory" {
		subsTTL = cfg.subsTTL
	}
	var authServers []string
	if cfg.jwksURL != "" && cfg.issuer != "" {
		authServers = []string{cfg.issuer}
	}
	hub := mercure.NewHub(mercure.Config{
		URL:                     publicURL,
		Engine:                  engine,
		Validator:               validator,
		Anonymous:               cfg.anonymous,
		AuthorizationServers:    authServers,
		CookieName:              cfg.cookieName,
		PublishOrigins:          list(cfg.publishOrigins),
		MaxBody:                 cfg.maxBody,
		MaxConnections:          cfg.maxConns,
		MaxConnectionsPerClient: cfg.maxConnsClient,
		Subscriptions:           cfg.subscriptions,
		SubscriptionsTTL:        subsTTL,
		Compat:                  cfg.compat,
		MaxLifetime:             cfg.maxLifetime,
		ObservePublish:          met.observePublish,
		Logger:                  log,
	})

	mux := http.NewServeMux()
	hub.Register(mux)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
		demoPage.Execute(w, map[string]any{"Token": devToken, "Cookie": cfg.cookieName})
	})
	mux.Handle("GET /metrics", met.handler)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := engine.Ready(ctx); err != nil {
			http.Error(w, "broker unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})

	srv := &http.Server{
		Handler:           withCORS(list(cfg.corsOrigins), mux),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(handler, slog.LevelWarn),
		// No WriteTimeout: streams are long-lived; the engine bounds
		// each write instead.
	}
	served := make(chan error, 1)
	if tlsConfig != nil {
		srv.TLSConfig = tlsConfig
		go func() { served <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { served <- srv.Serve(ln) }()
	}
	log.Info("ssehub: listening", "url", hubURL, "demo", strings.TrimSuffix(hubURL, mercure.Path)+"/", "resource", resource, "version", version)

	select {
	case err = <-served:
		engine.Shutdown(context.Background())
		return err
	case <-ctx.Done():
	}
	log.Info("ssehub: shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	engineDone := make(chan error, 1)
	go func() { engineDone <- engine.Shutdown(shutCtx) }()
	err = srv.Shutdown(shutCtx)
	if e := <-engineDone; err == nil {
		err = e
	}
	if errors.Is(err, context.DeadlineExceeded) {
		srv.Close()
		err = nil
	}
	if e := <-served; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}

// newDevToken signs a development token granting publish and subscribe
// on every topic.
func newDevToken(key []byte, audience, issuer string, exp time.Time) (string, error) {
	claims := jwt.MapClaims{
		"iss":       issuer,
		"aud":       audience,
		"exp":       exp.Unix(),
		"iat":       time.Now().Unix(),
		"sub":       "urn:ssehub:dev",
		"client_id": "urn:ssehub:dev",
		"jti":       "urn:uuid:" + uuid.NewString(),
		"authorization_details": []any{map[string]any{
			"type":    auth.DetailType,
			"actions": []string{"publish", "subscribe"},
			"topics":  []any{map[string]string{"match": "*"}},
		}},
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	t.Header["typ"] = "at+jwt"
	return t.SignedString(key)
}
