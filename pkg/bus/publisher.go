package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrUnavailable means JetStream did not acknowledge a publish: the message
// may not be durable and the sender must retry. Ingest answers 503 on it.
var ErrUnavailable = errors.New("jetstream unavailable")

// PublishTimeoutDefault bounds one publish when the caller's context has no
// deadline.
const PublishTimeoutDefault = 5 * time.Second

// Publisher publishes messages and returns only once JetStream has stored
// them.
type Publisher struct {
	js      jetstream.JetStream
	topo    Topology
	timeout time.Duration
}

// NewPublisher returns a publisher for topology topo.
func NewPublisher(js jetstream.JetStream, topo Topology) *Publisher {
	return &Publisher{js: js, topo: topo, timeout: PublishTimeoutDefault}
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
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	if header == nil {
		header = nats.Header{}
	}
	msg := &nats.Msg{Subject: subject, Header: header, Data: data}
	ack, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID))
	if err != nil {
		return PubResult{}, fmt.Errorf("%w: publishing %s: %v", ErrUnavailable, subject, err)
	}
	return PubResult{Stream: ack.Stream, Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
}
