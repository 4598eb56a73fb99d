package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/telemetry"
)

// ErrUnavailable means JetStream did not acknowledge a publish: the message
// may not be durable and the sender must retry. Ingest answers 503 on it.
var ErrUnavailable = errors.New("jetstream unavailable")

// PublishTimeoutDefault bounds one publish when the caller's context has no
// deadline.
const PublishTimeoutDefault = 5 * time.Second

// ErrAckPending marks a publish abandoned (its context ended) while its
// message may still be in flight: the caller must not reuse the message's
// data buffer. It always comes wrapped together with ErrUnavailable.
var ErrAckPending = errors.New("acknowledgement still pending")

// Publisher publishes messages and returns only once JetStream has stored
// them.
type Publisher struct {
	js      jetstream.JetStream
	topo    Topology
	timeout time.Duration
	// window, when not nil, bounds the asynchronous publishes awaiting an
	// acknowledgement (WithAsyncWindow).
	window chan struct{}
	// key, when set, proves every message published (WithBusKey).
	key *keys.BusKey
}

// WithBusKey proves every message the publisher sends with the bus key
// (keys.HeaderBusProof), as routers with the key require of ticks, events
// and dead letters.
func WithBusKey(k *keys.BusKey) PublisherOption {
	return func(p *Publisher) { p.key = k }
}

// PublisherOption configures a Publisher.
type PublisherOption func(*Publisher)

// WithAsyncWindow makes the publisher send with JetStream's asynchronous
// publish, at most n messages awaiting their acknowledgement at once (more
// callers wait for a slot). Each call still returns only once its own
// message is acknowledged; what changes is that concurrent callers share
// one reply subscription instead of a request each, which costs less CPU
// under concurrency. n <= 0 keeps synchronous requests.
func WithAsyncWindow(n int) PublisherOption {
	return func(p *Publisher) {
		if n > 0 {
			p.window = make(chan struct{}, n)
		}
	}
}

// NewPublisher returns a publisher for topology topo.
func NewPublisher(js jetstream.JetStream, topo Topology, opts ...PublisherOption) *Publisher {
	p := &Publisher{js: js, topo: topo, timeout: PublishTimeoutDefault}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Topology returns the publisher's topology.
func (p *Publisher) Topology() Topology { return p.topo }

// PubResult is what JetStream acknowledged.
type PubResult struct {
	// Stream and Seq locate the stored message (the original's, for a
	// duplicate).
	Stream string
	Seq    uint64
	// Duplicate is true when JetStream already had a message with this id
	// within the stream's dedupe window and dropped this one.
	Duplicate bool
}

// Publish stores data on subject with dedupe id msgID (required: every
// Levqor message has one) and the given headers. The returned error wraps
// ErrUnavailable when JetStream did not acknowledge.
func (p *Publisher) Publish(ctx context.Context, subject, msgID string, header nats.Header, data []byte) (PubResult, error) {
	if msgID == "" {
		return PubResult{}, errors.New("publish: empty message id")
	}
	if header == nil {
		header = nats.Header{}
	}
	header[HeaderMsgID] = []string{msgID}
	return p.PublishMsg(ctx, &nats.Msg{Subject: subject, Header: header, Data: data})
}

// PublishMsg stores msg, whose header must already hold its dedupe id
// (HeaderMsgID): the hot path builds its header once, whole. It returns once
// JetStream acknowledged, or with an error wrapping ErrUnavailable; if the
// message may still be in flight when the error returns, the error also
// wraps ErrAckPending.
func (p *Publisher) PublishMsg(ctx context.Context, msg *nats.Msg) (_ PubResult, err error) {
	if msg.Header.Get(HeaderMsgID) == "" {
		return PubResult{}, errors.New("publish: empty message id")
	}
	if p.key != nil {
		msg.Header[keys.HeaderBusProof] = []string{p.key.ProveMessage(msg.Data)}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	if telemetry.Tracing() {
		if !trace.SpanContextFromContext(ctx).IsValid() && msg.Header.Get("traceparent") != "" {
			// Relayed from the outbox: the message carries the trace of
			// the handler that wrote it. (A publish made within a span,
			// such as an operator's replay, belongs to that span.)
			ctx = telemetry.Extract(ctx, telemetry.HeaderCarrier(msg.Header))
		}
		var span trace.Span
		ctx, span = telemetry.StartSpan(ctx, "publish "+msg.Subject, trace.SpanKindProducer,
			attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", msg.Subject))
		defer func() { telemetry.EndSpan(span, err) }()
		telemetry.Inject(ctx, telemetry.HeaderCarrier(msg.Header))
	}
	if p.window != nil {
		return p.publishAsync(ctx, msg)
	}
	ack, err := p.js.PublishMsg(ctx, msg)
	if err != nil {
		return PubResult{}, fmt.Errorf("%w: publishing %s: %v", ErrUnavailable, msg.Subject, err)
	}
	return PubResult{Stream: ack.Stream, Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

func (p *Publisher) publishAsync(ctx context.Context, msg *nats.Msg) (PubResult, error) {
	select {
	case p.window <- struct{}{}:
	case <-ctx.Done():
		return PubResult{}, fmt.Errorf("%w: publishing %s: waiting for a slot: %v", ErrUnavailable, msg.Subject, ctx.Err())
	}
	defer func() { <-p.window }()
	fut, err := p.js.PublishMsgAsync(msg)
	if err != nil {
		return PubResult{}, fmt.Errorf("%w: publishing %s: %v", ErrUnavailable, msg.Subject, err)
	}
	select {
	case ack := <-fut.Ok():
		return PubResult{Stream: ack.Stream, Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
	case err := <-fut.Err():
		// Resolved: the client no longer holds the message.
		return PubResult{}, fmt.Errorf("%w: publishing %s: %v", ErrUnavailable, msg.Subject, err)
	case <-ctx.Done():
		return PubResult{}, fmt.Errorf("%w: %w: publishing %s: %v", ErrUnavailable, ErrAckPending, msg.Subject, ctx.Err())
	}
}
