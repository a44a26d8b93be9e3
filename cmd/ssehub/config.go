package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "devel"

// configError is a mistake in the flags or environment: one line, exit 2.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func configErrorf(format string, args ...any) error {
	return &configError{msg: fmt.Sprintf(format, args...)}
}

// config is the command line, after the environment.
type config struct {
	addr           string
	issuer         string
	jwtKey         string
	jwtAlgs        string
	jwksURL        string
	resource       string
	anonymous      bool
	corsOrigins    string
	publishOrigins string
	cookieName     string
	broker         string
	subscriptions  bool
	subsTTL        time.Duration
	compat         bool
	historyEvents  int
	historyBytes   int64
	historyAge     time.Duration
	heartbeat      time.Duration
	writeTimeout   time.Duration
	maxConns       int
	maxConnsClient int
	maxBody        int64
	maxLifetime    time.Duration
	tlsCert        string
	tlsKey         string
	logFormat      string
	version        bool
	help           bool
}

// parseConfig reads args, each flag falling back to its SSEHUB_*
// variable. It prints the usage to stderr for -h.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("ssehub", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.addr, "addr", "localhost:3000", "address to listen on")
	fs.StringVar(&c.issuer, "issuer", "", "the trusted issuer, required in iss (default: any iss; with -jwks-url, advertised as authorization server)")
	fs.StringVar(&c.jwtKey, "jwt-key", "", "token verification key: an HMAC secret or a PEM file (none: development mode)")
	fs.StringVar(&c.jwtAlgs, "jwt-alg", "", "accepted signature algorithms, comma-separated (default: the key's)")
	fs.StringVar(&c.jwksURL, "jwks-url", "", "URL of a JWK Set holding the verification keys")
	fs.StringVar(&c.resource, "resource-identifier", "", "the hub's resource identifier, required in aud (default: the hub URL)")
	fs.BoolVar(&c.anonymous, "anonymous", false, "let subscribers without a token receive public updates")
	fs.StringVar(&c.corsOrigins, "cors-origins", "", "origins allowed by CORS, comma-separated (* for any, without credentials)")
	fs.StringVar(&c.publishOrigins, "publish-origins", "", "origins allowed to publish with a cookie, comma-separated")
	fs.StringVar(&c.cookieName, "cookie-name", "__Secure-mercure_access_token", "name of the cookie carrying a browser's token")
	fs.StringVar(&c.broker, "broker", "memory", "where updates are stored: memory, redis://HOST:PORT[/DB][?prefix=P] or nats://HOST:PORT[?stream=S&subject=T]")
	fs.BoolVar(&c.subscriptions, "subscriptions", false, "publish subscription events and serve the subscription API")
	fs.DurationVar(&c.subsTTL, "subscriptions-ttl", time.Minute, "with a shared -broker, how long another hub's subscriptions stay listed after the last event from it (its heartbeat comes every third of it)")
	fs.BoolVar(&c.compat, "compat", false, "also accept Mercure 0.x clients: topic= selectors, mercure claim tokens, mercureAuthorization cookie")
	fs.IntVar(&c.historyEvents, "history-events", 10000, "updates retained for replay (negative: no bound)")
	fs.Int64Var(&c.historyBytes, "history-bytes", 64<<20, "bytes retained for replay (negative: no bound)")
	fs.DurationVar(&c.historyAge, "history-age", time.Hour, "how long updates are retained (negative: no bound)")
	fs.DurationVar(&c.heartbeat, "heartbeat", 15*time.Second, "idle time before a keep-alive comment (negative: none)")
	fs.DurationVar(&c.writeTimeout, "write-timeout", 10*time.Second, "bound on each write to a subscriber")
	fs.IntVar(&c.maxConns, "max-connections", 0, "bound on open streams (0: none)")
	fs.IntVar(&c.maxConnsClient, "max-connections-per-client", 0, "bound on open streams per IP address (0: none)")
	fs.DurationVar(&c.maxLifetime, "max-lifetime", 0, "end streams after this long so that subscribers re-authenticate (0: only at token exp)")
	fs.Int64Var(&c.maxBody, "max-body", 1<<20, "bound on a publish request's body in bytes")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "certificate file (PEM) to serve HTTPS and HTTP/2; with -tls-key")
	fs.StringVar(&c.tlsKey, "tls-key", "", "private key file (PEM) of -tls-cert")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := "SSEHUB_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" && err == nil {
			if e := f.Value.Set(v); e != nil {
				err = configErrorf("%s=%q: %v", env, v, e)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fs.SetOutput(stderr)
			fmt.Fprintln(stderr, "Usage: ssehub [flags]; each flag also reads SSEHUB_<NAME> (e.g. SSEHUB_JWT_KEY).")
			fs.PrintDefaults()
			c.help = true
			return c, nil
		}
		return nil, configErrorf("%v", err)
	}
	if fs.NArg() > 0 {
		return nil, configErrorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case c.broker == "memory":
	case strings.HasPrefix(c.broker, "redis://"), strings.HasPrefix(c.broker, "rediss://"), strings.HasPrefix(c.broker, "nats://"):
	default:
		return nil, configErrorf("-broker %q: want memory, redis://HOST:PORT[/DB] or nats://HOST:PORT", c.broker)
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		return nil, configErrorf("-log-format %q: want text or json", c.logFormat)
	}
	if c.jwtKey != "" && c.jwksURL != "" {
		return nil, configErrorf("-jwt-key and -jwks-url exclude each other")
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return nil, configErrorf("-tls-cert and -tls-key go together")
	}
	if c.subsTTL <= 0 {
		return nil, configErrorf("-subscriptions-ttl must be positive")
	}
	if c.maxBody <= 0 {
		return nil, configErrorf("-max-body must be positive")
	}
	return c, nil
}

// list splits a comma-separated flag value.
func list(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
