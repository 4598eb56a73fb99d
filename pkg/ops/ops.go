package ops

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
)

// Threshold defaults: what "lagging" and "stuck" mean when the deployment
// says nothing.
const (
	// LagThresholdDefault is the backlog (undelivered plus unacknowledged
	// messages) at which a consumer is lagging.
	LagThresholdDefault = 1000
	// StuckAgeDefault is the age of the oldest unacknowledged message at
	// which a consumer, or the message, is stuck.
	StuckAgeDefault = 5 * time.Minute
	// StuckDeliveriesDefault is the delivery count at which a failing
	// message is stuck.
	StuckDeliveriesDefault = 3
)

// Environment variables read by ThresholdsFromEnv.
const (
	LagThresholdEnv    = "LEVQOR_LAG_THRESHOLD"
	StuckAgeEnv        = "LEVQOR_STUCK_AGE"
	StuckDeliveriesEnv = "LEVQOR_STUCK_DELIVERIES"
)

// StripeAPIKeyEnv names the variable holding the Stripe API key Backfill
// lists events with; package config reads it (with STRIPE_API_BASE).
const StripeAPIKeyEnv = "STRIPE_API_KEY"

// StripeAPIBaseDefault is Stripe's API; tests point STRIPE_API_BASE at
// stripe-mock.
const StripeAPIBaseDefault = "https://api.stripe.com"

// Thresholds decide when Status calls a consumer lagging or stuck and
// which messages Stuck lists.
type Thresholds struct {
	// LagMessages is the backlog at which a consumer is lagging
	// (LEVQOR_LAG_THRESHOLD).
	LagMessages int
	// StuckAge is the age of the oldest unacknowledged message at which it
	// and its consumer are stuck (LEVQOR_STUCK_AGE).
	StuckAge time.Duration
	// StuckDeliveries is the delivery count at which a failing message is
	// stuck (LEVQOR_STUCK_DELIVERIES).
	StuckDeliveries int
}

// MarshalJSON writes the stuck age in seconds, like every duration in this
// package's JSON.
func (t Thresholds) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		LagMessages     int     `json:"lag_messages"`
		StuckAgeSeconds float64 `json:"stuck_age_seconds"`
		StuckDeliveries int     `json:"stuck_deliveries"`
	}{t.LagMessages, t.StuckAge.Seconds(), t.StuckDeliveries})
}

// StripeAPI says where Backfill lists events.
type StripeAPI struct {
	// BaseURL is Stripe's API root (STRIPE_API_BASE); empty means
	// StripeAPIBaseDefault.
	BaseURL string
	// SecretKey is a secret or restricted key able to read events
	// (STRIPE_API_KEY). It is sent to BaseURL only and never logged.
	SecretKey string
}

// Settings are the deployment's choices for the operator tools.
type Settings struct {
	Thresholds Thresholds
	Stripe     StripeAPI
	// BusKey proves the Stripe events a backfill publishes, as ingest
	// does (LEVQOR_BUS_KEY); without it a backfill is refused.
	BusKey *keys.BusKey
	// TickEvery is how often a tick should arrive when the scheduler runs
	// (scheduler.MostFrequent); zero leaves the scheduler unjudged.
	TickEvery time.Duration
	// Jobs are the deployment's jobs (the catalog with LEVQOR_SCHEDULE's
	// overrides), which pauses and backfills name; nil means the catalog.
	Jobs []scheduler.Job
}

// ThresholdsFromEnv reads the thresholds with getenv (os.Getenv when nil),
// filling defaults. Bad values are errors naming the variable.
func ThresholdsFromEnv(getenv func(string) string) (Thresholds, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var errs []error
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	positiveInt := func(k string, def int) int {
		v := get(k)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("%s: %q: want a positive integer", k, v))
			return def
		}
		return n
	}
	t := Thresholds{
		LagMessages:     positiveInt(LagThresholdEnv, LagThresholdDefault),
		StuckAge:        StuckAgeDefault,
		StuckDeliveries: positiveInt(StuckDeliveriesEnv, StuckDeliveriesDefault),
	}
	if v := get(StuckAgeEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s: %q: want a positive duration such as 5m or 1h", StuckAgeEnv, v))
		} else {
			t.StuckAge = d
		}
	}
	return t, errors.Join(errs...)
}

// withDefaults fills unset thresholds.
func (t Thresholds) withDefaults() Thresholds {
	if t.LagMessages <= 0 {
		t.LagMessages = LagThresholdDefault
	}
	if t.StuckAge <= 0 {
		t.StuckAge = StuckAgeDefault
	}
	if t.StuckDeliveries <= 0 {
		t.StuckDeliveries = StuckDeliveriesDefault
	}
	return t
}

// Config is what Ops works with.
type Config struct {
	// JS reaches the streams; required.
	JS jetstream.JetStream
	// Topology names streams and subjects; required.
	Topology bus.Topology
	// Store holds failures, the inbox, the ledger and the audit trail;
	// required.
	Store *store.Store
	// Log receives one line per operator action; required.
	Log logrus.FieldLogger
	// Settings holds thresholds and the Stripe API.
	Settings Settings
	// HTTPClient calls the Stripe API; nil means a client with a 30s
	// timeout.
	HTTPClient *http.Client
	// Now is the clock; nil means time.Now. Tests move it.
	Now func() time.Time
}

// Ops carries out operator actions. It is safe for concurrent use.
type Ops struct {
	js    jetstream.JetStream
	topo  bus.Topology
	store *store.Store
	log   logrus.FieldLogger
	pub   *bus.Publisher
	set   Settings
	http  *http.Client
	now   func() time.Time
}

// New checks cfg and returns an Ops.
func New(cfg Config) (*Ops, error) {
	switch {
	case cfg.JS == nil:
		return nil, errors.New("ops: JetStream is required")
	case cfg.Store == nil:
		return nil, errors.New("ops: Store is required")
	case cfg.Log == nil:
		return nil, errors.New("ops: Log is required")
	}
	if err := cfg.Topology.Validate(); err != nil {
		return nil, fmt.Errorf("ops: %w", err)
	}
	cfg.Settings.Thresholds = cfg.Settings.Thresholds.withDefaults()
	if cfg.Settings.Stripe.BaseURL == "" {
		cfg.Settings.Stripe.BaseURL = StripeAPIBaseDefault
	}
	cfg.Settings.Stripe.BaseURL = strings.TrimRight(cfg.Settings.Stripe.BaseURL, "/")
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Ops{
		js: cfg.JS, topo: cfg.Topology, store: cfg.Store, log: cfg.Log,
		pub: bus.NewPublisher(cfg.JS, cfg.Topology, bus.WithBusKey(cfg.Settings.BusKey)),
		set: cfg.Settings, http: cfg.HTTPClient, now: cfg.Now,
	}, nil
}

// Thresholds returns the thresholds in force.
func (o *Ops) Thresholds() Thresholds { return o.set.Thresholds }

// ErrNotFound means the dead letter, consumer or stream asked for does not
// exist. The CLI exits 1 on it and the API answers 404.
var ErrNotFound = errors.New("not found")

// InvalidError is operator input that cannot be acted on: a flag or JSON
// field with a bad value. Field names it as the API spells it; the CLI
// flag has the same name with dashes.
type InvalidError struct {
	Field   string
	Message string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Message }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Audit action names.
const (
	ActionDLQShow        = "dlq.show"
	ActionDLQReplay      = "dlq.replay"
	ActionDLQPurge       = "dlq.purge"
	ActionReplayWindow   = "replay.window"
	ActionStripeBackfill = "stripe.backfill"
	// Actions of the CLI's own tools and of operator keys on the API.
	ActionAPIKeyCreate     = "apikey.create"
	ActionAPIKeyRevoke     = "apikey.revoke"
	ActionUserCreate       = "user.create"
	ActionUserInvite       = "user.invite"
	ActionUserInviteRevoke = "user.invite_revoke"
	ActionUserDisable      = "user.disable"
	ActionBillingReconcile = "billing.reconcile"
	ActionScheduleTrigger  = "schedule.trigger"
	ActionScheduleBackfill = "schedule.backfill"
	// ActionCommandPrefix starts the action of a product API command an
	// operator key submitted: "command.<domain>.<action>", e.g.
	// command.backup.pause.
	ActionCommandPrefix = "command."
)

// audit writes the action to the audit trail and logs it (Audit).
func (o *Ops) audit(ctx context.Context, actor, action string, params, counts any, outcome string) error {
	return Audit(ctx, o.store, o.log, o.now(), actor, action, params, counts, outcome)
}

// Audit writes an operator action to the audit trail (store.RecordAudit)
// and logs it: the one way every operator tool, CLI or API, records what it
// did. An action that cannot be audited is reported as failed: the
// caller's effects have happened, but an operator must know the trail has
// a gap.
func Audit(ctx context.Context, st *store.Store, log logrus.FieldLogger, at time.Time, actor, action string, params, counts any, outcome string) error {
	if actor == "" {
		actor = "unknown"
	}
	p, err := json.Marshal(params)
	if err != nil {
		return fmt.Errorf("encoding audit params: %w", err)
	}
	c, err := json.Marshal(counts)
	if err != nil {
		return fmt.Errorf("encoding audit counts: %w", err)
	}
	entry := log.WithFields(logrus.Fields{
		"actor": actor, "action": action, "params": string(p), "counts": string(c), "outcome": outcome,
	})
	// The trail must be written even when the caller's context has just
	// been cancelled, once the action has had its effects.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := st.RecordAudit(actx, store.AuditEntry{
		At: at, Actor: actor, Action: action, Params: p, Counts: c, Outcome: outcome,
	}); err != nil {
		entry.WithError(err).Error("operator action done but not written to the audit trail")
		return fmt.Errorf("writing the audit trail: %w", err)
	}
	entry.Info("operator action")
	return nil
}

// outcomeOf sums up a batch action for the audit trail.
func outcomeOf(dryRun bool, ok, failed int) string {
	switch {
	case dryRun:
		return store.AuditOutcomeDryRun
	case failed == 0:
		return store.AuditOutcomeOK
	case ok > 0:
		return store.AuditOutcomePartial
	default:
		return store.AuditOutcomeFailed
	}
}

// ListAudit returns the audit trail, newest first.
func (o *Ops) ListAudit(ctx context.Context, p store.ListAuditParams) ([]store.AuditEntry, error) {
	entries, err := o.store.ListAudit(ctx, p)
	if err != nil {
		return nil, err
	}
	if entries == nil {
		entries = []store.AuditEntry{}
	}
	return entries, nil
}

// Progress is told how far a long operation has got: done of total items.
type Progress func(done, total int)

func (p Progress) report(done, total int) {
	if p != nil {
		p(done, total)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// maxItems caps the per-item lists in results; counts are always complete.
const maxItems = 1000

// ParseTime reads a time given by an operator: RFC 3339
// (2026-01-02T15:04:05Z), a date (2026-01-02, midnight UTC), a UTC
// date-time without zone (2026-01-02T15:04:05), or a duration ago (90m,
// 2h, 3d).
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, errors.New("empty time")
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days >= 0 {
			return now.Add(-time.Duration(days) * 24 * time.Hour).UTC(), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: want RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02) or a duration ago (90m, 2h, 3d)", s)
}
