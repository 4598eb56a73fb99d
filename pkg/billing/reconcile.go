package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stripe/stripe-go/v76"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/stripeapi"
)

// ErrNoStripeAPI means an operation needs the Stripe API and no key is
// configured.
var ErrNoStripeAPI = errors.New("billing: no Stripe API configured (STRIPE_API_KEY)")

// Repair is one drift reconciliation fixed.
type Repair struct {
	Kind           string `json:"kind"` // missing, changed, vanished
	SubscriptionID string `json:"subscription_id"`
	AccountID      string `json:"account_id,omitempty"`
	From           string `json:"from,omitempty"`
	To             string `json:"to"`
}

// ReconcileReport says what reconciliation looked at and fixed (or, in a
// dry run, would fix).
type ReconcileReport struct {
	Listed  int      `json:"listed"`
	Repairs []Repair `json:"repairs"`
	// DryRun is true when nothing was changed: Repairs are what a real
	// run would do.
	DryRun bool `json:"dry_run,omitempty"`
}

// errDryRun rolls back a dry run's repair once it has been worked out.
var errDryRun = errors.New("billing: dry run")

// Reconcile lists every subscription from the Stripe API (all pages) and
// repairs local state that drifted from it: missed webhooks, changes made
// in the Stripe dashboard. Stripe's answer is the newest truth, so a
// repaired subscription records the reconciliation as its source and older
// webhooks arriving later change nothing. Subscriptions Levqor holds that
// Stripe no longer lists are marked canceled. Every repair is logged,
// counted and announced like any other change.
func (w *Worker) Reconcile(ctx context.Context, now time.Time) (ReconcileReport, error) {
	return w.reconcile(ctx, now, false)
}

// ReconcileDryRun works out every repair Reconcile would make, each in a
// transaction that is rolled back: it changes nothing and announces
// nothing.
func (w *Worker) ReconcileDryRun(ctx context.Context, now time.Time) (ReconcileReport, error) {
	return w.reconcile(ctx, now, true)
}

func (w *Worker) reconcile(ctx context.Context, now time.Time, dryRun bool) (ReconcileReport, error) {
	rep := ReconcileReport{DryRun: dryRun}
	if w.Stripe == nil {
		return rep, ErrNoStripeAPI
	}
	params := &stripe.SubscriptionListParams{Status: stripe.String("all")}
	params.Context = ctx
	params.Limit = stripe.Int64(100)
	it := w.Stripe.Subscriptions.List(params)
	seen := map[string]bool{}
	src := store.SourceEvent{ID: "reconcile@" + now.UTC().Format(time.RFC3339), Created: now.UTC()}
	for it.Next() {
		sub := it.Subscription()
		rep.Listed++
		seen[sub.ID] = true
		r, err := w.repairOne(ctx, sub, src, dryRun)
		if err != nil {
			return rep, err
		}
		if r != nil {
			rep.Repairs = append(rep.Repairs, *r)
		}
	}
	if err := it.Err(); err != nil {
		return rep, stripeapi.Classify("listing subscriptions", err)
	}
	local, err := w.Store.AllSubscriptions(ctx)
	if err != nil {
		return rep, err
	}
	for _, s := range local {
		if seen[s.ID] || s.Status == string(stripe.SubscriptionStatusCanceled) {
			continue
		}
		gone := stripe.Subscription{ID: s.ID, Status: stripe.SubscriptionStatusCanceled, Customer: &stripe.Customer{ID: s.CustomerID}}
		r, err := w.repairOne(ctx, &gone, src, dryRun)
		if err != nil {
			return rep, err
		}
		if r != nil {
			r.Kind = "vanished"
			rep.Repairs = append(rep.Repairs, *r)
		}
	}
	if dryRun {
		w.Log.WithFields(logrus.Fields{"listed": rep.Listed, "repairs": len(rep.Repairs)}).Info("reconciliation dry run done; nothing changed")
		return rep, nil
	}
	for _, r := range rep.Repairs {
		w.m().repairs.WithLabelValues(r.Kind).Inc()
		w.Log.WithFields(logrus.Fields{"kind": r.Kind, "subscription": r.SubscriptionID, "account_id": r.AccountID, "from": r.From, "to": r.To}).
			Warn("reconciliation repaired drift from Stripe")
	}
	w.Log.WithFields(logrus.Fields{"listed": rep.Listed, "repairs": len(rep.Repairs)}).Info("reconciliation done")
	return rep, nil
}

// summary is what reconciliation compares.
func summary(s store.Subscription) string {
	items := make([]string, 0, len(s.Items))
	for _, it := range s.Items {
		items = append(items, fmt.Sprintf("%s×%d", it.PriceID, it.Quantity))
	}
	slices.Sort(items)
	unknown := slices.Clone(s.UnknownPrices)
	slices.Sort(unknown)
	// Unknown prices are compared too: once the catalog learns a price,
	// reconciliation applies it.
	b, _ := json.Marshal(struct {
		Status  string
		Items   []string
		Cancel  bool
		Unknown []string `json:",omitempty"`
	}{s.Status, items, s.CancelAtPeriodEnd, unknown})
	return string(b)
}

// repairOne repairs one subscription in its own transaction; dryRun
// rolls it back once the repair is known.
func (w *Worker) repairOne(ctx context.Context, sub *stripe.Subscription, src store.SourceEvent, dryRun bool) (*Repair, error) {
	var repair *Repair
	err := w.Store.InTx(ctx, func(tx *store.Tx) error {
		want := w.fromStripe(sub, src)
		// The account first, locked, as a batch of Stripe events takes
		// it (store.LoadBilling), then the subscription as it is now.
		acc, err := tx.AccountByStripeCustomer(ctx, want.CustomerID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if acc != nil {
			if err := tx.LockAccounts(ctx, []string{acc.ID}); err != nil {
				return err
			}
			if acc, err = tx.GetAccount(ctx, acc.ID); err != nil {
				return err
			}
		}
		prev, err := tx.GetSubscription(ctx, sub.ID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		r := &Repair{Kind: "missing", SubscriptionID: sub.ID, To: summary(want)}
		if prev != nil {
			if summary(*prev) == summary(want) {
				return nil
			}
			r.Kind, r.From = "changed", summary(*prev)
		}
		if acc != nil {
			want.AccountID, r.AccountID = acc.ID, acc.ID
		}
		if err := tx.PutSubscription(ctx, want); err != nil {
			return err
		}
		repair = r
		if acc != nil {
			if err := w.recompute(ctx, txState{tx}, acc, emitter{tx: txState{tx}, topo: w.Topology, at: src.Created, reconciled: true}); err != nil {
				return err
			}
		}
		if dryRun {
			return errDryRun
		}
		return nil
	})
	if errors.Is(err, errDryRun) {
		err = nil
	}
	return repair, err
}

// fromStripe converts an API subscription into billing's row.
func (w *Worker) fromStripe(sub *stripe.Subscription, src store.SourceEvent) store.Subscription {
	return w.subscriptionRow(subscriptionFromAPI(sub), src)
}

// reconcileTick runs Reconcile for a tick. It is idempotent (it compares
// against Stripe), so a redelivered tick is harmless. Without a Stripe API
// key there is nothing to compare with: the tick is skipped with a warning
// and counted (result "skipped") rather than dead-lettered every day,
// because a deployment without STRIPE_API_KEY (dev mode without
// stripe-mock) has chosen not to call Stripe.
func (w *Worker) reconcileTick(ctx context.Context, m *bus.Message, slot time.Time) error {
	log := bus.Logger(ctx).WithField("slot", slot)
	if w.Stripe == nil {
		w.m().reconciles.WithLabelValues("skipped").Inc()
		log.Warn("reconciliation skipped: " + ErrNoStripeAPI.Error())
		return nil
	}
	if _, err := w.Reconcile(ctx, time.Now()); err != nil {
		w.m().reconciles.WithLabelValues("failed").Inc()
		return err
	}
	w.m().reconciles.WithLabelValues("ok").Inc()
	return nil
}
