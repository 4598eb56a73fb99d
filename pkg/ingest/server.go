package ingest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/levqor/levqor/pkg/api"
	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/ops"
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
	// MaxBodyBytes limits webhook bodies; larger ones get 413.
	MaxBodyBytes int64
	// API, when set, is the product API served beside the webhook, and
	// its authorizer guards the operator endpoints (service builds it);
	// nil serves only the webhook and the health endpoints.
	API *api.Server
	// Ops, when set (with API), serves the operator API (/admin/consumers, /admin/dlq,
	// …) behind the operator-only guard.
	Ops *ops.Ops
	// Console, when set (with API), builds the web console from the
	// handler of the API's routes, which it calls in process; it is served
	// under /app/.
	Console func(api http.Handler) (http.Handler, error)
}

// Server serves ingest's HTTP API.
type Server struct {
	cfg    Config
	pub    *bus.Publisher
	store  *store.Store
	log    logrus.FieldLogger
	mux    *http.ServeMux
	api    *api.Server
	routes []string
	m      metrics
}

type metrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	stripe     *prometheus.CounterVec
	apiVersion *prometheus.CounterVec

	// The webhook's results, resolved once: a label lookup per request is
	// a hash and a lock the hot path does not need.
	stripeAccepted, stripeDuplicate, stripeRejected, stripeUnavailable prometheus.Counter
	// routes holds each route's resolved children, filled by handle
	// before serving starts and only read afterwards.
	routes map[string]*routeMetrics
}

// routeMetrics are one route's resolved metric children.
type routeMetrics struct {
	duration prometheus.Observer
	// codes maps a status code to its counter, resolved on first use.
	codes sync.Map // int → prometheus.Counter
}

func (m *metrics) route(route string) *routeMetrics {
	if rm := m.routes[route]; rm != nil {
		return rm
	}
	return &routeMetrics{duration: m.duration.WithLabelValues(route)}
}

func (rm *routeMetrics) count(m *metrics, route string, code int) {
	if c, ok := rm.codes.Load(code); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c := m.requests.WithLabelValues(route, strconv.Itoa(code))
	rm.codes.Store(code, c)
	c.Inc()
}

// Defaults of Config.
const (
	// MaxBodyBytesDefault is LEVQOR_MAX_BODY_BYTES: the largest webhook
	// body accepted; Stripe's events are far smaller.
	MaxBodyBytesDefault = 1 << 20
	// ToleranceDefault is LEVQOR_WEBHOOK_TOLERANCE: the accepted age of a
	// signature's timestamp, Stripe's own default.
	ToleranceDefault = 5 * time.Minute
)

// New builds the server. reg receives ingest's metrics and is served on
// /metrics together with the given readiness checks. Without a store (st
// nil, for tests of the webhook alone) only the webhook and the health
// endpoints are served.
func New(cfg Config, pub *bus.Publisher, st *store.Store, log logrus.FieldLogger, reg *prometheus.Registry, checks ...telemetry.Check) (*Server, error) {
	if len(cfg.WebhookSecrets) == 0 {
		return nil, errors.New("ingest: at least one webhook secret is required (STRIPE_WEBHOOK_SECRET)")
	}
	cfg.MaxBodyBytes = cmp.Or(max(cfg.MaxBodyBytes, 0), MaxBodyBytesDefault)
	cfg.Tolerance = cmp.Or(max(cfg.Tolerance, 0), ToleranceDefault)
	s := &Server{
		cfg:   cfg,
		pub:   pub,
		store: st,
		log:   log,
		mux:   http.NewServeMux(),
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
	s.m.stripeAccepted = s.m.stripe.WithLabelValues("accepted")
	s.m.stripeDuplicate = s.m.stripe.WithLabelValues("duplicate")
	s.m.stripeRejected = s.m.stripe.WithLabelValues("rejected")
	s.m.stripeUnavailable = s.m.stripe.WithLabelValues("unavailable")
	s.m.routes = map[string]*routeMetrics{"unmatched": {duration: s.m.duration.WithLabelValues("unmatched")}}

	s.handle("POST /webhooks/stripe", http.HandlerFunc(s.stripeWebhook))
	if cfg.API != nil {
		if st == nil {
			return nil, errors.New("ingest: the product API needs the store")
		}
		s.api = cfg.API
		// Operators only, through the same authorizer as the product API.
		s.handle("GET /admin/stripe-events/{id}", s.api.Guard(auth.OperatorOnly, http.HandlerFunc(s.getStripeEvent)))
		s.api.Register(s.handle)
		if cfg.Ops != nil {
			ops.NewAPI(cfg.Ops, func(r *http.Request) string {
				p, _ := auth.FromContext(r.Context())
				return p.Actor()
			}).Register(s.handle, func(h http.Handler) http.Handler { return s.api.Guard(auth.OperatorOnly, h) })
		}
		if cfg.Console != nil {
			// Not through handle: the console's pages are not API routes
			// (the OpenAPI document is checked against those).
			con, err := cfg.Console(s.mux)
			if err != nil {
				return nil, err
			}
			s.mux.Handle("/app/", con)
			s.mux.Handle("GET /app", http.RedirectHandler("/app/", http.StatusMovedPermanently))
		}
	}
	tele := http.NewServeMux()
	telemetry.Mount(tele, reg, checks...)
	s.handle("GET /healthz", tele)
	// Readiness stays open for load balancers, but says what is down only
	// to operators: the checks' errors describe the internals.
	operator := func(*http.Request) bool { return false }
	if s.api != nil {
		operator = s.api.IsOperator
	}
	s.handle("GET /readyz", telemetry.ReadyHandler(checks, operator))
	// Metrics name every route and count every account's traffic: on the
	// public listener they are for operators (Prometheus sends the key as
	// a bearer token).
	var metrics http.Handler = tele
	if s.api != nil {
		metrics = s.api.Guard(auth.OperatorOnly, tele)
	}
	s.handle("GET /metrics", metrics)
	s.mux.HandleFunc("/", s.unmatched)
	return s, nil
}

// handle mounts h on pattern and records the route, so that Routes can
// list it (the OpenAPI document is checked against that list).
func (s *Server) handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
	s.routes = append(s.routes, pattern)
	if s.m.routes[pattern] == nil {
		s.m.routes[pattern] = &routeMetrics{duration: s.m.duration.WithLabelValues(pattern)}
	}
}

// Routes returns the patterns of every route, e.g. "GET /healthz", sorted.
func (s *Server) Routes() []string {
	out := append([]string(nil), s.routes...)
	sort.Strings(out)
	return out
}

// unmatched answers requests no route takes: 405 with Allow when the path
// exists under other methods, 404 otherwise, in the one error shape.
func (s *Server) unmatched(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		httpjson.Error(w, http.StatusMethodNotAllowed, "method_not_allowed",
			r.Method+" is not allowed on "+r.URL.Path+"; use "+strings.Join(allow, " or "), "")
		return
	}
	httpjson.Error(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path, "")
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

// HeaderTraceID answers, while tracing is on, the id of the request's
// trace (when it is sampled).
const HeaderTraceID = "Levqor-Trace-Id"

// untraced are the paths probes and scrapers call every few seconds: a
// trace of each would drown the others.
var untraced = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// Security headers on every answer. The slices are shared by all
// responses: net/http only reads them, and Set or Add on a response replace
// or copy them (len == cap).
var securityHeaders = [...]struct {
	name  string
	value []string
}{
	{"X-Content-Type-Options", []string{"nosniff"}},
	{"X-Frame-Options", []string{"DENY"}},
	{"Content-Security-Policy", []string{"default-src 'none'; frame-ancestors 'none'"}},
	{"Referrer-Policy", []string{"no-referrer"}},
	{"Cache-Control", []string{"no-store"}},
}

func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h := w.Header()
		for _, sh := range securityHeaders {
			h[sh.name] = sh.value
		}
		// The correlation id travels on the response header, where the
		// handlers (and api's correlationID) read it.
		corr := r.Header.Get(bus.HeaderCorrelationID)
		if !validCorrelationID(corr) {
			corr = newID()
		}
		h[bus.HeaderCorrelationID] = []string{corr}
		var span trace.Span
		if telemetry.Tracing() && !untraced[r.URL.Path] {
			// The request's span, the root of its trace: a caller's
			// traceparent is not taken (before authentication, it would
			// let anyone force sampling or bloat every message with
			// tracestate). Its id is answered, so that a caller can find
			// the trace.
			var ctx context.Context
			ctx, span = telemetry.StartSpan(r.Context(), "ingest "+r.Method, trace.SpanKindServer,
				attribute.String("http.request.method", r.Method), attribute.String("levqor.correlation_id", corr))
			r = r.WithContext(ctx)
			if span.SpanContext().IsSampled() {
				h[HeaderTraceID] = []string{span.SpanContext().TraceID().String()}
			}
		}
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" || route == "/" {
			route = "unmatched"
		}
		if span != nil {
			span.SetName(route)
			span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", sw.code))
			if sw.code >= 500 {
				span.SetStatus(codes.Error, http.StatusText(sw.code))
			}
			span.End()
		}
		d := time.Since(start)
		rm := s.m.route(route)
		rm.count(&s.m, route, sw.code)
		rm.duration.Observe(d.Seconds())
		// A refused key or a rate limit is counted
		// (levqor_ingest_requests_total{code="401"|"429"}), not logged:
		// a client guessing keys would otherwise write the log.
		quiet := sw.code == http.StatusUnauthorized || sw.code == http.StatusTooManyRequests
		if sw.code >= 500 || (sw.code >= 400 && route != "unmatched" && !quiet) {
			s.log.WithFields(logrus.Fields{
				"method": r.Method, "route": route, "status": sw.code,
				"duration_ms": d.Milliseconds(), "correlation_id": corr,
			}).Info("request refused")
		}
	})
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
