package billing

import (
	"context"
	"fmt"
	"time"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/stripeevent"
)

// ConsumerStripe is the billing worker's durable consumer on the STRIPE
// stream.
const ConsumerStripe = "billing-stripe"

// StripeConsumer declares billing-stripe: every Stripe event.
func StripeConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerStripe, Kind: bus.Stripe, Filter: ">"}
}

// RecordStripeEvent writes the event to the ledger in the handler's
// transaction. A payload that is not a Stripe event, or whose id differs
// from the message id it was deduplicated by, can never succeed: it is a
// permanent error and goes to the DLQ.
func RecordStripeEvent(ctx context.Context, tx *store.Tx, m *bus.Message) error {
	env, _, err := stripeevent.Parse(m.Data)
	if err != nil {
		return bus.Permanent(err)
	}
	if env.ID != m.ID() {
		return bus.Permanentf("event id %q does not match message id %q", env.ID, m.ID())
	}
	_, err = tx.InsertStripeEvent(ctx, store.StripeEvent{
		ID:         env.ID,
		Type:       env.Type,
		APIVersion: env.APIVersion,
		Livemode:   env.Livemode,
		Created:    time.Unix(env.Created, 0).UTC(),
		ReceivedAt: m.Published,
		RecordedAt: time.Now().UTC(),
		StreamSeq:  m.StreamSeq,
		Payload:    m.Data,
	})
	if err != nil {
		return fmt.Errorf("recording stripe event %s: %w", env.ID, err)
	}
	bus.Logger(ctx).WithField("stripe_event_id", env.ID).Info("stripe event recorded")
	return nil
}
