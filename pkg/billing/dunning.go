package billing

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/events"
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
		JobTrialReminder: func(ctx context.Context, m *bus.Message, t scheduler.Tick) error {
			return w.Store.InTx(ctx, func(tx *store.Tx) error { return w.remindTrials(ctx, tx, m, t.Slot) })
		},
	})(ctx, m)
}

// suspendOverdue suspends every account still past due when its grace
// period ended at or before slot. Suspension pauses backups and deletes
// nothing; invoice.paid restores the account.
func (w *Worker) suspendOverdue(ctx context.Context, tx *store.Tx, m *bus.Message, slot time.Time) error {
	due, err := tx.GraceExpired(ctx, slot)
	if err != nil || len(due) == 0 {
		return err
	}
	// Lock the accounts first, in id order, as a batch of Stripe events
	// does (store.LoadBilling), then read again what is due: a payment
	// applied meanwhile has settled its account.
	ids := make([]string, 0, len(due))
	for _, d := range due {
		ids = append(ids, d.AccountID)
	}
	if err := tx.LockAccounts(ctx, ids); err != nil {
		return err
	}
	if due, err = tx.GraceExpired(ctx, slot); err != nil {
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
		out := emitter{tx: txState{tx}, topo: w.Topology, at: slot}
		if m != nil {
			out.correlation = m.CorrelationID()
		}
		if err := out.emit(ctx, events.AccountSuspended{
			Billing: out.meta(acc.ID), InvoiceID: d.InvoiceID, PastDueSince: d.PastDueSince, GraceUntil: d.GraceUntil, Tier: acc.Tier,
		}); err != nil {
			return err
		}
		if err := w.recompute(ctx, txState{tx}, acc, out); err != nil {
			return err
		}
		w.m().suspended.Inc()
		bus.Logger(ctx).WithFields(logrus.Fields{"account_id": acc.ID, "invoice_id": d.InvoiceID, "slot": slot}).Warn("account suspended after its grace period")
	}
	return nil
}
