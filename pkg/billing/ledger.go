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
	row, err := ledgerRow(m)
	if err != nil {
		return err
	}
	return record(ctx, tx, row)
}

// record writes row to the ledger in tx.
func record(ctx context.Context, tx *store.Tx, row store.StripeEvent) error {
	if _, err := tx.InsertStripeEvent(ctx, row); err != nil {
		return recordingFailed(row.ID, err)
	}
	logRecorded(ctx, row.ID)
	return nil
}

// recordingFailed is the error of a ledger write that failed for event
// id: what operators see in levqor stuck and a dead letter's reason.
func recordingFailed(id string, err error) error {
	return fmt.Errorf("recording stripe event %s: %w", id, err)
}

// ledgerRow is m's entry in the ledger; see RecordStripeEvent.
func ledgerRow(m *bus.Message) (store.StripeEvent, error) {
	env, _, err := stripeevent.Parse(m.Data)
	if err != nil {
		return store.StripeEvent{}, bus.Permanent(err)
	}
	if env.ID != m.ID() {
		return store.StripeEvent{}, bus.Permanentf("event id %q does not match message id %q", env.ID, m.ID())
	}
	return store.StripeEvent{
		ID:         env.ID,
		Type:       env.Type,
		APIVersion: env.APIVersion,
		Livemode:   env.Livemode,
		Created:    time.Unix(env.Created, 0).UTC(),
		ReceivedAt: m.Published,
		RecordedAt: time.Now().UTC(),
		StreamSeq:  m.StreamSeq,
		Payload:    m.Data,
	}, nil
}

func logRecorded(ctx context.Context, id string) {
	bus.Logger(ctx).WithField("stripe_event_id", id).Info("stripe event recorded")
}
