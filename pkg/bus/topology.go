package bus

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Kind names one of Levqor's five streams independently of the deployment's
// subject prefix.
type Kind string

// The streams. DESIGN.md's table is the source of these.
const (
	Stripe   Kind = "STRIPE"
	Commands Kind = "COMMANDS"
	Ticks    Kind = "TICKS"
	Events   Kind = "EVENTS"
	DLQ      Kind = "DLQ"
)

// Kinds lists every stream kind in a stable order.
var Kinds = []Kind{Stripe, Commands, Ticks, Events, DLQ}

// token is the subject token under the prefix for each kind.
var kindTokens = map[Kind]string{
	Stripe:   "stripe",
	Commands: "cmd",
	Ticks:    "tick",
	Events:   "event",
	DLQ:      "dlq",
}

// PrefixDefault is the subject prefix of a deployment that does not share its
// NATS account with another environment.
const PrefixDefault = "levqor"

// ReplicasDefault suits a single server. Production clusters use 3.
const ReplicasDefault = 1

// Stream retention and dedupe defaults, from DESIGN.md.
const (
	StripeMaxAgeDefault       = 35 * 24 * time.Hour // Stripe resends for 30 days
	StripeDuplicatesDefault   = 2 * time.Hour
	CommandsMaxAgeDefault     = 14 * 24 * time.Hour
	CommandsDuplicatesDefault = 24 * time.Hour
	TicksMaxAgeDefault        = 3 * 24 * time.Hour
	// TicksDuplicatesDefault covers the longest tick period (daily) plus a
	// catch-up window, so a slot published twice is stored once.
	TicksDuplicatesDefault  = 48 * time.Hour
	EventsMaxAgeDefault     = 14 * 24 * time.Hour
	EventsDuplicatesDefault = time.Hour
	DLQMaxAgeDefault        = 30 * 24 * time.Hour
	// DLQDuplicatesDefault only guards the window between a dead-letter
	// publish and the Term of the original: dead-letter ids are unique per
	// (consumer, stream sequence).
	DLQDuplicatesDefault = 10 * time.Minute
)

// StreamSettings are the per-stream knobs a deployment may change.
type StreamSettings struct {
	// MaxAge is how long messages are kept.
	MaxAge time.Duration
	// Duplicates is the dedupe window for Nats-Msg-Id.
	Duplicates time.Duration
}

// Topology is the one definition of Levqor's streams. Its zero value is not
// usable; call WithDefaults (or fill every field) and Validate.
type Topology struct {
	// Prefix starts every subject (levqor.stripe.…) so several environments
	// can share one NATS account. Stream names carry it too unless it is
	// PrefixDefault.
	Prefix string
	// Replicas per stream: 1 in dev, 3 in production.
	Replicas int
	// Memory keeps streams in memory instead of files. Tests only: nothing
	// survives a server restart.
	Memory bool
	// Streams overrides retention per kind; missing kinds get defaults.
	Streams map[Kind]StreamSettings
}

var prefixRe = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

// WithDefaults returns t with every unset field filled in.
func (t Topology) WithDefaults() Topology {
	if t.Prefix == "" {
		t.Prefix = PrefixDefault
	}
	if t.Replicas == 0 {
		t.Replicas = ReplicasDefault
	}
	defaults := map[Kind]StreamSettings{
		Stripe:   {StripeMaxAgeDefault, StripeDuplicatesDefault},
		Commands: {CommandsMaxAgeDefault, CommandsDuplicatesDefault},
		Ticks:    {TicksMaxAgeDefault, TicksDuplicatesDefault},
		Events:   {EventsMaxAgeDefault, EventsDuplicatesDefault},
		DLQ:      {DLQMaxAgeDefault, DLQDuplicatesDefault},
	}
	streams := make(map[Kind]StreamSettings, len(defaults))
	for k, d := range defaults {
		s := t.Streams[k]
		if s.MaxAge == 0 {
			s.MaxAge = d.MaxAge
		}
		if s.Duplicates == 0 {
			s.Duplicates = d.Duplicates
		}
		streams[k] = s
	}
	t.Streams = streams
	return t
}

// Validate reports the first problem with t.
func (t Topology) Validate() error {
	if !prefixRe.MatchString(t.Prefix) {
		return fmt.Errorf("subject prefix %q: want dot-separated tokens of letters, digits, '-' or '_'", t.Prefix)
	}
	if t.Replicas < 1 || t.Replicas > 5 {
		return fmt.Errorf("stream replicas %d: want 1 to 5", t.Replicas)
	}
	for _, k := range Kinds {
		s, ok := t.Streams[k]
		if !ok {
			return fmt.Errorf("stream %s: no settings (call WithDefaults)", k)
		}
		if s.MaxAge <= 0 || s.Duplicates <= 0 {
			return fmt.Errorf("stream %s: max age and dedupe window must be positive", k)
		}
		if s.Duplicates > s.MaxAge {
			return fmt.Errorf("stream %s: dedupe window %s exceeds max age %s", k, s.Duplicates, s.MaxAge)
		}
	}
	return nil
}

// StreamName is the JetStream name of a stream kind: "STRIPE" under the
// default prefix, "STAGING_STRIPE" under prefix "staging".
func (t Topology) StreamName(k Kind) string {
	if t.Prefix == PrefixDefault {
		return string(k)
	}
	p := strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(t.Prefix))
	return p + "_" + string(k)
}

// KindOf returns the kind whose stream is called name.
func (t Topology) KindOf(name string) (Kind, bool) {
	for _, k := range Kinds {
		if t.StreamName(k) == name {
			return k, true
		}
	}
	return "", false
}

// Subject joins the prefix, the kind's token and the rest:
// Subject(Stripe, "invoice.paid") is "levqor.stripe.invoice.paid".
func (t Topology) Subject(k Kind, rest string) string {
	return t.Prefix + "." + kindTokens[k] + "." + rest
}

// Wildcard is the subject filter matching every message of a kind.
func (t Topology) Wildcard(k Kind) string { return t.Subject(k, ">") }

// Unprefixed strips the prefix and kind token from a subject, returning the
// rest ("invoice.paid") and whether the subject belonged to kind k.
func (t Topology) Unprefixed(k Kind, subject string) (string, bool) {
	p := t.Prefix + "." + kindTokens[k] + "."
	if !strings.HasPrefix(subject, p) {
		return "", false
	}
	return subject[len(p):], true
}

// StreamConfig is the JetStream configuration of one stream. It uses only
// features NATS server 2.9 understands.
func (t Topology) StreamConfig(k Kind) jetstream.StreamConfig {
	s := t.Streams[k]
	storage := jetstream.FileStorage
	if t.Memory {
		storage = jetstream.MemoryStorage
	}
	return jetstream.StreamConfig{
		Name:        t.StreamName(k),
		Description: "Levqor " + strings.ToLower(string(k)) + " messages",
		Subjects:    []string{t.Wildcard(k)},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      s.MaxAge,
		Duplicates:  s.Duplicates,
		Storage:     storage,
		Replicas:    t.Replicas,
	}
}

// EnsureStreams creates every stream, or updates it to match the definition:
// what an operator applies (`levqor streams apply`) and dev mode does at
// start.
func (t Topology) EnsureStreams(ctx context.Context, js jetstream.JetStream) error {
	for _, k := range Kinds {
		cfg := t.StreamConfig(k)
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("ensuring stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// CreateMissingStreams creates the streams that do not exist and changes
// none that does: what the services do at every start, since their NATS
// users may create streams but not change them (a change of retention can
// purge a stream). It returns the streams whose settings differ from the
// definition, for the process to say so; `levqor streams apply` applies
// them.
func (t Topology) CreateMissingStreams(ctx context.Context, js jetstream.JetStream) (differ []string, err error) {
	for _, k := range Kinds {
		want := t.StreamConfig(k)
		s, err := js.Stream(ctx, want.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			if _, err := js.CreateStream(ctx, want); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				return differ, fmt.Errorf("creating stream %s: %w", want.Name, err)
			}
			continue
		}
		if err != nil {
			return differ, fmt.Errorf("reading stream %s: %w", want.Name, err)
		}
		if d := streamDiff(s.CachedInfo().Config, want); d != "" {
			differ = append(differ, want.Name+" ("+d+")")
		}
	}
	return differ, nil
}

// streamDiff names the settings of have that differ from want, "" when
// none does.
func streamDiff(have, want jetstream.StreamConfig) string {
	var d []string
	if !slices.Equal(have.Subjects, want.Subjects) {
		d = append(d, fmt.Sprintf("subjects %v, want %v", have.Subjects, want.Subjects))
	}
	if have.MaxAge != want.MaxAge {
		d = append(d, fmt.Sprintf("max age %s, want %s", have.MaxAge, want.MaxAge))
	}
	if have.Duplicates != want.Duplicates {
		d = append(d, fmt.Sprintf("duplicate window %s, want %s", have.Duplicates, want.Duplicates))
	}
	if have.Replicas != want.Replicas {
		d = append(d, fmt.Sprintf("replicas %d, want %d", have.Replicas, want.Replicas))
	}
	if have.Storage != want.Storage {
		d = append(d, fmt.Sprintf("storage %s, want %s", have.Storage, want.Storage))
	}
	if have.Retention != want.Retention || have.Discard != want.Discard {
		d = append(d, "retention or discard policy")
	}
	return strings.Join(d, ", ")
}

// ConsumerSpec declares one durable pull consumer: one per (worker, stream),
// with one filter subject so it works on NATS server 2.9.
type ConsumerSpec struct {
	// Name is the durable name, "<worker>-<stream token>", e.g.
	// "billing-stripe".
	Name string
	// Kind is the stream it reads.
	Kind Kind
	// Filter is the rest of the subject under the kind, e.g. ">" or
	// "billing.>". Empty means ">".
	Filter string
	// AckWait is how long JetStream waits for an ack before redelivering.
	// The router keeps long handlers alive with InProgress.
	AckWait time.Duration
	// MaxAckPending bounds unacknowledged messages across all replicas of
	// the worker.
	MaxAckPending int
}

// Consumer defaults.
const (
	AckWaitDefault       = 30 * time.Second
	MaxAckPendingDefault = 1000
)

// ConsumerConfig is the JetStream configuration of a consumer. MaxDeliver is
// unlimited on the server: the router enforces Levqor's own limit and
// dead-letters at it, so a message can never be silently parked by the
// server after its last delivery.
func (t Topology) ConsumerConfig(c ConsumerSpec) jetstream.ConsumerConfig {
	filter := c.Filter
	if filter == "" {
		filter = ">"
	}
	ackWait := c.AckWait
	if ackWait == 0 {
		ackWait = AckWaitDefault
	}
	maxPending := c.MaxAckPending
	if maxPending == 0 {
		maxPending = MaxAckPendingDefault
	}
	return jetstream.ConsumerConfig{
		Durable:       c.Name,
		Description:   "Levqor worker consumer " + c.Name,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1,
		MaxAckPending: maxPending,
		FilterSubject: t.Subject(c.Kind, filter),
	}
}

// EnsureConsumer creates or updates one durable consumer.
func (t Topology) EnsureConsumer(ctx context.Context, js jetstream.JetStream, c ConsumerSpec) (jetstream.Consumer, error) {
	cfg := t.ConsumerConfig(c)
	stream := t.StreamName(c.Kind)
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err := t.CreateMissingStreams(ctx, js); err != nil {
			return nil, err
		}
		cons, err = js.CreateOrUpdateConsumer(ctx, stream, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("ensuring consumer %s on %s: %w", c.Name, stream, err)
	}
	return cons, nil
}
