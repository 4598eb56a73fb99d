package ingest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/telemetry"
)

// Config is what ingest needs beyond its dependencies.
type Config struct {
	// WebhookSecrets are the Stripe endpoint signing secrets; a signature
	// valid for any of them is accepted, so a secret can be rotated.
	WebhookSecrets []string
	// Tolerance is the accepted age of a signature's timestamp.
	Tolerance time.Duration
	// AdminToken authenticates operators on /admin.
	AdminToken string
	// MaxBodyBytes limits request bodies; larger ones get 413.
	MaxBodyBytes int64
}

// Server serves ingest's HTTP API.
type Server struct {
	cfg       Config
	pub       *bus.Publisher
	store     *store.Store
	log       logrus.FieldLogger
	mux       *http.ServeMux
	adminHash [sha256.Size]byte
	m         metrics
}

type metrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	stripe     *prometheus.CounterVec
	apiVersion *prometheus.CounterVec
}

// New builds the server. reg receives ingest's metrics and is served on
// /metrics together with the given readiness checks.
func New(cfg Config, pub *bus.Publisher, st *store.Store, log logrus.FieldLogger, reg *prometheus.Registry, checks ...telemetry.Check) (*Server, error) {
	if len(cfg.WebhookSecrets) == 0 {
		return nil, errors.New("ingest: at least one webhook secret is required (STRIPE_WEBHOOK_SECRET)")
	}
	if cfg.AdminToken == "" {
		return nil, errors.New("ingest: an admin token is required (LEVQOR_ADMIN_TOKEN)")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.Tolerance <= 0 {
		cfg.Tolerance = 5 * time.Minute
	}
	s := &Server{
		cfg:       cfg,
		pub:       pub,
		store:     st,
		log:       log,
		mux:       http.NewServeMux(),
		adminHash: sha256.Sum256([]byte(cfg.AdminToken)),
		m: metrics{
			requests: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "levqor_ingest_requests_total",
				Help: "HTTP requests by route and status code.",
			}, []string{"route", "code"}),
			duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Name:    "levqor_ingest_request_duration_seconds",
				Help:    "HTTP request latency by route.",
				Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
			}, []string{"route"}),
			stripe: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "levqor_ingest_stripe_events_total",
				Help: "Stripe webhooks by result: accepted, duplicate, rejected, unavailable.",
			}, []string{"result"}),
			apiVersion: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "levqor_ingest_stripe_api_version_mismatch_total",
				Help: "Stripe events whose api_version differs from the one Levqor is built for.",
			}, []string{"api_version"}),
		},
	}
	reg.MustRegister(s.m.requests, s.m.duration, s.m.stripe, s.m.apiVersion)

	s.mux.HandleFunc("POST /webhooks/stripe", s.stripeWebhook)
	s.mux.Handle("GET /admin/stripe-events/{id}", s.operator(http.HandlerFunc(s.getStripeEvent)))
	telemetry.Mount(s.mux, reg, checks...)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpjson.Error(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path, "")
	})
	return s, nil
}

// Handler returns the HTTP handler with security headers, metrics and
// access logs around every route.
func (s *Server) Handler() http.Handler { return s.instrument(s.mux) }

// statusWriter remembers the status code for metrics and logs.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		corr := r.Header.Get(bus.HeaderCorrelationID)
		if !validCorrelationID(corr) {
			corr = newID()
		}
		h.Set(bus.HeaderCorrelationID, corr)
		r = r.WithContext(context.WithValue(r.Context(), corrKey{}, corr))
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" || route == "/" {
			route = "unmatched"
		}
		d := time.Since(start)
		s.m.requests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
		s.m.duration.WithLabelValues(route).Observe(d.Seconds())
		if sw.code >= 500 || (sw.code >= 400 && route != "unmatched") {
			s.log.WithFields(logrus.Fields{
				"method": r.Method, "route": route, "status": sw.code,
				"duration_ms": d.Milliseconds(), "correlation_id": corr,
			}).Info("request refused")
		}
	})
}

type corrKey struct{}

func correlationID(ctx context.Context) string {
	s, _ := ctx.Value(corrKey{}).(string)
	return s
}

// validCorrelationID accepts a caller's id only if it is short and
// header-safe; anything else is replaced rather than propagated.
func validCorrelationID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// operator admits only requests bearing the admin token. Tokens are compared
// as SHA-256 digests in constant time, so neither content nor length leaks.
func (s *Server) operator(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="levqor"`)
			httpjson.Error(w, http.StatusUnauthorized, "unauthenticated", "send Authorization: Bearer <operator token>", "")
			return
		}
		got := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(got[:], s.adminHash[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="levqor", error="invalid_token"`)
			httpjson.Error(w, http.StatusUnauthorized, "unauthenticated", "invalid token", "")
			return
		}
		next.ServeHTTP(w, r)
	})
}
