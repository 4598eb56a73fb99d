package billing

import (
	"context"
	"encoding/json"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
)

// Billing's periodic jobs, as the scheduler's catalog names them.
const (
	JobDunning   = scheduler.JobBillingDunning
	JobReconcile = scheduler.JobBillingReconcile
)

// HandleTick runs billing's periodic jobs, acting on the tick's slot. Both
// are idempotent by construction (suspending finds nothing left to do the
// second time; reconciling compares with Stripe), and reconciliation calls
// the Stripe API, which must not happen inside a database transaction, so
// ticks do not go through the inbox.
func (w *Worker) HandleTick(ctx context.Context, m *bus.Message) error {
	return scheduler.Dispatch("billing", scheduler.Jobs{
		JobDunning: func(ctx context.Context, m *bus.Message, t scheduler.Tick) error {
			return w.Store.InTx(ctx, func(tx *store.Tx) error { return w.suspendOverdue(ctx, tx, m, t.Slot) })
		},
		JobReconcile: func(ctx context.Context, m *bus.Message, t scheduler.Tick) error {
			return w.reconcileTick(ctx, m, t.Slot)
		},
	})(ctx, m)
}

// suspendOverdue suspends every account still past due when its grace
// period ended at or before slot. Suspension pauses backups and deletes
// nothing; invoice.paid restores the account.
func (w *Worker) suspendOverdue(ctx context.Context, tx *store.Tx, m *bus.Message, slot time.Time) error {
	due, err := tx.GraceExpired(ctx, slot)
	if err != nil {
		return err
	}
	for _, d := range due {
		acc, err := tx.GetAccount(ctx, d.AccountID)
		if err != nil {
			return err
		}
		at := slot
		d.State, d.SuspendedAt = store.DunningSuspended, &at
		if err := tx.PutDunning(ctx, d, time.Time{}); err != nil {
			return err
		}
		emit := func(ctx context.Context, what, accountID string, payload map[string]any) error {
			return w.emitTx(ctx, tx, m, what, accountID, slot, payload)
		}
		if err := emit(ctx, EventAccountSuspended, acc.ID, map[string]any{
			"invoice_id": d.InvoiceID, "past_due_since": d.PastDueSince, "grace_until": d.GraceUntil, "tier": acc.Tier,
		}); err != nil {
			return err
		}
		if err := w.recompute(ctx, tx, acc, emit); err != nil {
			return err
		}
		w.m().suspended.Inc()
		bus.Logger(ctx).WithFields(logrus.Fields{"account_id": acc.ID, "invoice_id": d.InvoiceID, "slot": slot}).Warn("account suspended after its grace period")
	}
	return nil
}

// emitTx writes a billing event to the outbox outside an event handler.
func (w *Worker) emitTx(ctx context.Context, tx *store.Tx, m *bus.Message, what, accountID string, at time.Time, payload map[string]any) error {
	payload["account_id"] = accountID
	payload["at"] = at
	b, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	h := map[string]string{bus.HeaderAccount: accountID}
	if m != nil && m.CorrelationID() != "" {
		h[bus.HeaderCorrelationID] = m.CorrelationID()
	}
	_, err = tx.EnqueueOutbox(ctx, store.OutboxMessage{Subject: w.Topology.Subject(bus.Events, "billing."+what), Headers: h, Payload: b})
	return err
}
