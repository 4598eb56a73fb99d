package bus

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the worker runtime's Prometheus collectors.
type Metrics struct {
	messages *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight *prometheus.GaugeVec
	fetchErr *prometheus.CounterVec
}

// Outcomes of one delivery, the values of the "outcome" label.
const (
	OutcomeAcked   = "acked"
	OutcomeRetried = "retried"
	// OutcomeDeferred is a message handed back by a handler that is not
	// ready for it yet (DeferError).
	OutcomeDeferred     = "deferred"
	OutcomeDeadLettered = "dead_lettered"
	OutcomeReleased     = "released"
	OutcomeDLQFailed    = "dlq_failed"
	// OutcomeSkipped is a replay meant for another consumer, acknowledged
	// without running the handler.
	OutcomeSkipped = "skipped"
)

// NewMetrics creates the collectors and registers them on reg (nil: not
// registered, for tests that build many routers).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levqor_worker_messages_total",
			Help: "Deliveries handled, by consumer and outcome (acked, retried, deferred, dead_lettered, released, dlq_failed, skipped).",
		}, []string{"consumer", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "levqor_worker_handler_duration_seconds",
			Help:    "Time spent in handlers per delivery, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"consumer"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "levqor_worker_inflight_messages",
			Help: "Messages being handled now.",
		}, []string{"consumer"}),
		fetchErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levqor_worker_fetch_errors_total",
			Help: "Failed fetches from JetStream (server unreachable, consumer missing).",
		}, []string{"consumer"}),
	}
	if reg != nil {
		reg.MustRegister(m.messages, m.duration, m.inflight, m.fetchErr)
	}
	return m
}
