// Package outbox relays the transactional outbox to the EVENTS stream. A
// worker that changes state and must tell other domains writes the event to
// the outbox table in the same transaction; the relay publishes committed
// rows with Nats-Msg-Id = "outbox-<row id>" and marks them published.
// Delivery is at-least-once (a crash between publish and mark republishes),
// and JetStream's dedupe window plus consumers' inboxes make it once.
package outbox

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/store"
)

// Relay defaults.
const (
	IntervalDefault  = 200 * time.Millisecond
	BatchSizeDefault = 100
)

// Relay publishes outbox rows. Several relays (one per worker process) may
// run at once: duplicates are dropped by JetStream's dedupe.
type Relay struct {
	Store     *store.Store
	Publisher *bus.Publisher
	Log       logrus.FieldLogger
	// Interval between polls when the outbox is empty.
	Interval time.Duration
	// BatchSize is rows read per poll.
	BatchSize int

	published prometheus.Counter
	failures  prometheus.Counter
	events    *prometheus.CounterVec
}

// MsgID is the dedupe id of outbox row id.
func MsgID(id int64) string { return "outbox-" + strconv.FormatInt(id, 10) }

// Register adds the relay's metrics to reg.
func (r *Relay) Register(reg prometheus.Registerer) {
	r.metrics()
	reg.MustRegister(r.published, r.failures, r.events)
}

func (r *Relay) metrics() {
	if r.published == nil {
		r.published = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levqor_outbox_published_total", Help: "Outbox rows published to EVENTS.",
		})
		r.failures = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levqor_outbox_errors_total", Help: "Failed outbox polls or publishes.",
		})
		r.events = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levqor_events_published_total",
			Help: "Events published to EVENTS, by name (e.g. backup.corrupt): what the alert rules watch.",
		}, []string{"event"})
	}
}

// Run relays until ctx ends.
func (r *Relay) Run(ctx context.Context) error {
	r.metrics()
	interval := r.Interval
	if interval <= 0 {
		interval = IntervalDefault
	}
	for {
		n, err := r.RelayOnce(ctx)
		if err != nil && ctx.Err() == nil {
			r.failures.Inc()
			r.Log.WithError(err).Warn("outbox relay failed; retrying")
		}
		wait := interval
		if err == nil && n > 0 {
			wait = 0 // more may be waiting
		} else if err != nil {
			wait = 5 * interval
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// RelayOnce publishes one batch and returns how many rows it published.
func (r *Relay) RelayOnce(ctx context.Context) (int, error) {
	r.metrics()
	size := r.BatchSize
	if size <= 0 {
		size = BatchSizeDefault
	}
	rows, err := r.Store.UnpublishedOutbox(ctx, size)
	if err != nil {
		return 0, err
	}
	var done []int64
	var perr error
	for _, m := range rows {
		h := nats.Header{}
		for k, v := range m.Headers {
			h.Set(k, v)
		}
		if _, perr = r.Publisher.Publish(ctx, m.Subject, MsgID(m.ID), h, m.Payload); perr != nil {
			break // keep order: later rows wait for this one
		}
		done = append(done, m.ID)
	}
	if len(done) > 0 {
		if err := r.Store.MarkOutboxPublished(ctx, done, time.Now().UTC()); err != nil {
			return 0, err
		}
		r.published.Add(float64(len(done)))
		for _, m := range rows[:len(done)] {
			name, ok := r.Publisher.Topology().Unprefixed(bus.Events, m.Subject)
			if !ok {
				name = "other"
			}
			r.events.WithLabelValues(name).Inc()
		}
	}
	return len(done), perr
}
