package api

import (
	"cmp"
	"errors"
	"net/http"
	"net/netip"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"

	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/notify"
	"github.com/levqor/levqor/pkg/store"
)

// Defaults of Config.
const (
	// RateDefault is the sustained requests per second allowed per key.
	RateDefault = 10
	// BurstDefault is how many requests a key may send at once.
	BurstDefault = 20
	// MaxBodyBytesDefault bounds request bodies: API bodies are small.
	MaxBodyBytesDefault = 64 << 10
	// WaitMax is the longest ?wait= a request may ask for.
	WaitMax = 30 * time.Second
	// IdempotencyKeyMaxLength bounds the Idempotency-Key header.
	IdempotencyKeyMaxLength = 255
)

// Config configures the API.
type Config struct {
	// Store is where accounts and commands live; required.
	Store *store.Store
	// Publisher publishes commands to JetStream; required.
	Publisher *bus.Publisher
	// NC receives command notifications for ?wait=; nil answers at once.
	NC *nats.Conn
	// Authorizer authenticates every request; required.
	Authorizer *auth.Authorizer
	// Logger receives the API's logs; required.
	Logger logrus.FieldLogger
	// Rate is the requests per second each key may make on average, Burst
	// how many at once (token bucket). Zero takes the defaults.
	Rate  float64
	Burst int
	// MaxBodyBytes bounds request bodies (413 beyond); zero takes the
	// default.
	MaxBodyBytes int64
	// AuthFailures is how many failed authentications one client address
	// may make before it is answered 429 (refilled at AuthFailureRate a
	// second); zero takes AuthFailureBurst.
	AuthFailures int
	// Catalog checks the product keys of billing requests before they
	// become commands, and names them in billing reads; nil leaves the
	// keys to the billing worker, which checks them again in any case.
	Catalog *catalog.Catalog
	// Retention holds the sweep limits (LEVQOR_SWEEP_MAX_SHARE,
	// LEVQOR_TRASH_GRACE) that the retention dry-run applies, so that it
	// answers what the sweep will do; zero fields take the defaults.
	Retention backups.Settings
	// Webhooks gives customer webhook endpoints their secrets and checks
	// their URLs; nil answers their routes 503 (no
	// LEVQOR_WEBHOOK_SECRET_KEY).
	Webhooks *notify.Webhooks
	// TrustedProxies are the proxies whose X-Forwarded-For names the
	// client, for the per-address limits (LEVQOR_TRUSTED_PROXIES); empty
	// keys the limits to the connection's peer.
	TrustedProxies []netip.Prefix
	// Sealer seals the DSNs of sources and restores before they become
	// commands (LEVQOR_MASTER_KEYS), so that the commands table, the
	// COMMANDS stream and the DLQ hold none readable. Processes always
	// set it; nil leaves them in clear.
	Sealer *keys.Sealer
	// Browser reads snapshots for browsing and downloads; nil (no blob
	// store configured for ingest) answers those routes 503.
	Browser *backups.Browser
}

// Server serves the product API.
type Server struct {
	cfg     Config
	store   *store.Store
	pub     *bus.Publisher
	nc      *nats.Conn
	authz   *auth.Authorizer
	log     logrus.FieldLogger
	limiter *limiter
	// failures counts failed authentications per client address.
	failures *limiter
	catalog  *catalog.Catalog
	sweep    backups.Settings
	now      func() time.Time
}

// New returns the API server.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("api: a store is required")
	case cfg.Publisher == nil:
		return nil, errors.New("api: a publisher is required")
	case cfg.Authorizer == nil:
		return nil, errors.New("api: an authorizer is required")
	case cfg.Logger == nil:
		return nil, errors.New("api: a logger is required")
	}
	if cfg.Rate <= 0 {
		cfg.Rate = RateDefault
	}
	if cfg.Burst <= 0 {
		cfg.Burst = BurstDefault
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = MaxBodyBytesDefault
	}
	return &Server{
		cfg:      cfg,
		store:    cfg.Store,
		pub:      cfg.Publisher,
		nc:       cfg.NC,
		authz:    cfg.Authorizer,
		log:      cfg.Logger,
		limiter:  newLimiter(rate.Limit(cfg.Rate), cfg.Burst),
		failures: newLimiter(AuthFailureRate, cmp.Or(cfg.AuthFailures, AuthFailureBurst)),
		catalog:  cfg.Catalog,
		sweep:    cfg.Retention.WithDefaults(),
		now:      time.Now,
	}, nil
}

// Register adds the API's routes through handle, which a server uses to
// mount and record them (ServeMux patterns, e.g. "GET /v1/accounts/{id}").
func (s *Server) Register(handle func(pattern string, h http.Handler)) {
	handle("POST /v1/accounts", s.Guard(auth.OperatorOnly, http.HandlerFunc(s.createAccount)))
	handle("GET /v1/accounts", s.Guard(auth.OperatorOnly, http.HandlerFunc(s.listAccounts)))
	handle("GET /v1/accounts/{id}", s.Guard(auth.AnyKey, http.HandlerFunc(s.getAccount)))
	handle("PATCH /v1/accounts/{id}", s.Guard(auth.AnyKey, http.HandlerFunc(s.updateAccount)))
	handle("GET /v1/commands/{id}", s.Guard(auth.AnyKey, http.HandlerFunc(s.getCommand)))
	s.registerBilling(handle)
	s.registerRetention(handle)
	s.registerTickets(handle)
	handle("GET /v1/notifications", s.Guard(auth.AnyKey, http.HandlerFunc(s.listNotifications)))
	s.registerWebhooks(handle)
	s.registerErasure(handle)
	s.registerSuspension(handle)
	s.registerPreferences(handle)
	s.registerUnsubscribe(handle)
	handle("GET /openapi.json", http.HandlerFunc(serveOpenAPI))
}

// Guard is the one way into a non-public route: it authenticates the
// request and checks scope (package auth), then applies the caller's rate
// limit. Routes outside this package, such as /admin, use it too.
func (s *Server) Guard(scope auth.Scope, next http.Handler) http.Handler {
	return s.failGate(s.authz.Require(scope, s.rateLimit(next)))
}

// IsOperator reports whether r carries an operator's key, without
// answering anything: for routes that are public but tell operators more.
func (s *Server) IsOperator(r *http.Request) bool {
	if r.Header.Get("Authorization") == "" {
		return false
	}
	addr := s.clientAddr(r)
	if spent, _ := s.failures.spent(addr, s.now()); spent {
		return false // no lookup for an address that keeps failing
	}
	p, err := s.authz.Authenticate(r.Context(), r.Header.Get("Authorization"))
	if errors.Is(err, auth.ErrInvalidKey) {
		s.failures.allow(addr, s.now())
	}
	return err == nil && p.Operator
}

// principal is the caller Guard admitted.
func principal(r *http.Request) auth.Principal {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		// Guard runs before every handler that calls this: reaching here
		// is a wiring bug, and failing closed is the only safe answer.
		panic("api: handler reached without Guard")
	}
	return p
}

// writeError answers err in the error shape: its own status for the API's
// typed errors, 500 otherwise.
func writeError(w http.ResponseWriter, err error) {
	var de *DecodeError
	var ce *command.Error
	switch {
	case errors.As(err, &de):
		httpjson.Error(w, de.Status, de.Code, de.Message, de.Field)
	case errors.As(err, &ce):
		httpjson.Error(w, ce.Status, ce.Code, ce.Message, ce.Field)
	default:
		httpjson.Error(w, http.StatusInternalServerError, "internal", "internal error", "")
	}
}

// unavailable answers 503 for a dependency that failed, logging why.
func (s *Server) unavailable(w http.ResponseWriter, r *http.Request, err error, what string) {
	s.log.WithFields(logrus.Fields{"error": err.Error(), "correlation_id": correlationID(w, r)}).Error(what)
	w.Header().Set("Retry-After", "5")
	httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", what+"; retry later", "")
}

// correlationID is the id ingest put on the response, or the caller's.
func correlationID(w http.ResponseWriter, r *http.Request) string {
	if c := w.Header().Get(bus.HeaderCorrelationID); c != "" {
		return c
	}
	return r.Header.Get(bus.HeaderCorrelationID)
}

// checkQuery refuses query parameters the route does not know, so that a
// typo (?wiat=10s) is an error instead of being silently ignored.
func checkQuery(w http.ResponseWriter, r *http.Request, known ...string) bool {
	for name := range r.URL.Query() {
		ok := false
		for _, k := range known {
			if name == k {
				ok = true
				break
			}
		}
		if !ok {
			httpjson.Error(w, http.StatusBadRequest, "unknown_parameter", "unknown query parameter "+quote(name), shorten(name))
			return false
		}
	}
	return true
}

// quote quotes s for a message, shortened.
func quote(s string) string { return `"` + shorten(s) + `"` }

// shorten cuts s so that a hostile parameter name cannot fill a response.
func shorten(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
