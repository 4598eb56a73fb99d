// Package telemetry gives every Levqor process the same logging setup and
// the same health, readiness and metrics endpoints.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/httpjson"
)

// NewLogger returns a logger writing to out in format "json" (production)
// or "text" (dev) at level.
func NewLogger(out io.Writer, format, level string) (*logrus.Logger, error) {
	l := logrus.New()
	l.Out = out
	lv, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("LEVQOR_LOG_LEVEL: %w", err)
	}
	l.Level = lv
	switch format {
	case "json":
		l.Formatter = &logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano}
	case "text", "":
		l.Formatter = &logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000"}
	default:
		return nil, fmt.Errorf("LEVQOR_LOG_FORMAT: %q: want text or json", format)
	}
	return l, nil
}

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors, so every process exports memory and goroutine figures.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Check is one readiness condition: nil when the dependency is reachable.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
	// Degrades marks a condition the process can work without: failing,
	// it reports the process degraded on /readyz (still 200, so nothing
	// restarts it for another component's fault) and as 0 in
	// levqor_check_up, for alerts.
	Degrades bool
}

// CheckTimeout bounds one readiness check, for /readyz and for the
// levqor_check_up gauge.
const CheckTimeout = 2 * time.Second

// checksCollector exports every readiness check as levqor_check_up{check}:
// 1 when it passes, 0 when it fails, evaluated at scrape time, so that an
// alert sees what /readyz would answer (NATS or the database down).
type checksCollector struct {
	checks []Check
	desc   *prometheus.Desc
}

func newChecksCollector(checks []Check) *checksCollector {
	return &checksCollector{checks: checks, desc: prometheus.NewDesc("levqor_check_up",
		"Readiness checks of the process (nats, database): 1 passing, 0 failing, evaluated at scrape time.", []string{"check"}, nil)}
}

func (c *checksCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *checksCollector) Collect(ch chan<- prometheus.Metric) {
	for _, chk := range c.checks {
		ctx, cancel := context.WithTimeout(context.Background(), CheckTimeout)
		up := 1.0
		if chk.Fn(ctx) != nil {
			up = 0
		}
		cancel()
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, up, chk.Name)
	}
}

// Mount adds GET /healthz (the process is alive), /readyz (every check
// passes, or only degrading ones fail: "degraded": true) and /metrics to
// mux. When reg is also a Registerer, the checks
// are exported as levqor_check_up (registered once per registry).
func Mount(mux *http.ServeMux, reg prometheus.Gatherer, checks ...Check) {
	if r, ok := reg.(prometheus.Registerer); ok && len(checks) > 0 {
		var are prometheus.AlreadyRegisteredError
		if err := r.Register(newChecksCollector(checks)); err != nil && !errors.As(err, &are) {
			panic(fmt.Sprintf("telemetry: registering the readiness checks: %v", err))
		}
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		httpjson.Write(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /readyz", ReadyHandler(checks, nil))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
}

// ReadyHandler answers readiness: 200 when every check passes or only
// degrading ones fail, 503 otherwise. The body names each check's result
// only for requests details approves (nil: all, as on the internal admin
// listeners); others get {"ready": bool} alone, since the checks' errors
// describe the internals (hosts, ports, what is down) and a public
// listener's load balancer needs only the status.
func ReadyHandler(checks []Check, details func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), CheckTimeout)
		defer cancel()
		status := http.StatusOK
		degraded := false
		res := map[string]string{}
		for _, c := range checks {
			err := c.Fn(ctx)
			switch {
			case err == nil:
				res[c.Name] = "ok"
			case c.Degrades:
				degraded = true
				res[c.Name] = "degraded: " + err.Error()
			default:
				status = http.StatusServiceUnavailable
				res[c.Name] = err.Error()
			}
		}
		body := map[string]any{"ready": status == http.StatusOK}
		if details == nil || details(r) {
			body["checks"] = res
			if degraded {
				body["degraded"] = true
			}
		}
		httpjson.Write(w, status, body)
	})
}

// NewServer returns an http.Server with timeouts suitable for an API that
// faces the internet.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

// Serve listens on srv.Addr and serves until ctx ends, then shuts down
// gracefully within timeout. A port already in use is an error at once.
func Serve(ctx context.Context, srv *http.Server, timeout time.Duration, log logrus.FieldLogger) error {
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", srv.Addr, err)
	}
	return ServeListener(ctx, srv, ln, timeout, log)
}

// ServeListener is Serve on an existing listener.
func ServeListener(ctx context.Context, srv *http.Server, ln net.Listener, timeout time.Duration, log logrus.FieldLogger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.WithError(err).Warn("http shutdown did not finish in time")
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
