package billing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/store"
)

// GraceDefault is how long an account stays past due after a failed
// payment before it is suspended.
const GraceDefault = 7 * 24 * time.Hour

// Worker is the billing worker: it turns Stripe events into each account's
// subscriptions, invoices, status and entitlements, runs the dunning and
// reconciliation ticks, and carries out the billing commands of the
// product API (Checkout and billing portal sessions).
type Worker struct {
	Store    *store.Store
	Catalog  *catalog.Catalog
	Topology bus.Topology
	// Stripe is the API client, for fetching objects an event does not
	// describe fully, creating sessions and reconciling; nil when no key
	// is configured: events are still applied, while commands answer 503
	// and reconciliation is skipped, each saying that STRIPE_API_KEY is
	// missing.
	Stripe *client.API
	// Grace is the dunning grace period.
	Grace time.Duration
	// TrialReminders are how long before a trial ends billing.trial_reminder
	// reminds its customer; nil means TrialRemindersDefault.
	TrialReminders []time.Duration
	Log            logrus.FieldLogger
	// Runtime does the bookkeeping of billing commands; nil makes Register
	// use one without notifications (waiting clients then learn outcomes
	// at their deadline).
	Runtime *command.Runtime
	// Metrics are the worker's metrics; nil makes unregistered ones. A
	// process that builds several workers shares one NewMetrics.
	Metrics *Metrics

	metricsOnce sync.Once
}

// Metrics are the billing worker's Prometheus metrics.
type Metrics struct {
	unknownPrices prometheus.Counter
	stale         *prometheus.CounterVec
	unlinked      prometheus.Counter
	mismatched    prometheus.Counter
	suspended     prometheus.Counter
	repairs       *prometheus.CounterVec
	reconciles    *prometheus.CounterVec
	sessions      *prometheus.CounterVec
}

// NewMetrics creates the billing metrics and registers them on reg (nil:
// not registered). Call it once per registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		unknownPrices: prometheus.NewCounter(prometheus.CounterOpts{Name: "levqor_billing_unknown_prices_total", Help: "Subscription items whose price is not in the catalog (entitlements left unchanged)."}),
		stale:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "levqor_billing_stale_events_total", Help: "Stripe events older than the state already held, ignored."}, []string{"type"}),
		unlinked:      prometheus.NewCounter(prometheus.CounterOpts{Name: "levqor_billing_unlinked_customer_events_total", Help: "Events for Stripe customers, or checkout sessions for accounts, that no Levqor account matches; recorded in the ledger only."}),
		mismatched: prometheus.NewCounter(prometheus.CounterOpts{Name: "levqor_billing_customer_mismatches_total",
			Help: "Checkout sessions naming an account billed through another Stripe customer; not applied, raised as billing.customer_mismatch."}),
		suspended:  prometheus.NewCounter(prometheus.CounterOpts{Name: "levqor_billing_suspensions_total", Help: "Accounts suspended after their grace period."}),
		repairs:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "levqor_billing_reconcile_repairs_total", Help: "Drift repaired by reconciliation, by kind."}, []string{"kind"}),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "levqor_billing_reconcile_runs_total", Help: "Scheduled reconciliations by result: ok, failed, or skipped for want of STRIPE_API_KEY."}, []string{"result"}),
		sessions:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "levqor_billing_sessions_created_total", Help: "Stripe sessions created for billing commands, by kind: checkout_subscription, checkout_payment, portal."}, []string{"kind"}),
	}
	if reg != nil {
		reg.MustRegister(m.unknownPrices, m.stale, m.unlinked, m.mismatched, m.suspended, m.repairs, m.reconciles, m.sessions)
	}
	return m
}

// RegisterMetrics creates the worker's metrics on reg.
func (w *Worker) RegisterMetrics(reg prometheus.Registerer) {
	w.Metrics = NewMetrics(reg)
}

func (w *Worker) m() *Metrics {
	w.metricsOnce.Do(func() {
		if w.Metrics == nil {
			w.Metrics = NewMetrics(nil)
		}
	})
	return w.Metrics
}

func (w *Worker) grace() time.Duration {
	if w.Grace > 0 {
		return w.Grace
	}
	return GraceDefault
}

// Register adds the billing worker's routes to r: every Stripe event
// (ledger, then state; in batches, one transaction each, see
// inbox.BatchHandler), the billing ticks, the billing commands and the
// consumer that marks dead-lettered commands failed.
func (w *Worker) Register(r *bus.Router) {
	w.m()
	if w.Runtime == nil {
		w.Runtime = &command.Runtime{Store: w.Store, Prefix: w.Topology.Prefix}
	}
	r.HandleBatch(StripeConsumer(), w.StripeHandler(), bus.BatchOptions{Key: StripeEventKey})
	r.Handle(bus.ConsumerSpec{Name: ConsumerTick, Kind: bus.Ticks, Filter: "billing.>"}, w.HandleTick)
	r.Handle(CommandConsumer(), w.Runtime.Handler(w.HandleCommand))
	r.Handle(w.Runtime.DeadLetters(WorkerName+"-dlq", ConsumerCommands))
}

// ConsumerTick is the billing worker's consumer on TICKS.
const ConsumerTick = "billing-tick"

// HandleStripe records the event in the ledger and applies it, in the
// handler's transaction, a statement at a time. StripeHandler applies
// whole batches; this is the path of one message alone (an operator's
// window replay, a forced replay).
func (w *Worker) HandleStripe(ctx context.Context, tx *store.Tx, m *bus.Message) error {
	p, err := parseEvent(m)
	if err != nil {
		return err
	}
	if err := record(ctx, tx, p.ledger); err != nil {
		return err
	}
	return w.apply(ctx, txState{tx}, m, p)
}

// apply applies a parsed Stripe event to st.
func (w *Worker) apply(ctx context.Context, st state, m *bus.Message, p *parsedEvent) error {
	ev := &p.ev
	a := &apply{w: w, tx: st, m: m, ev: ev, p: p, src: store.SourceEvent{ID: ev.ID, Created: time.Unix(ev.Created, 0).UTC()},
		base: bus.Logger(ctx)}
	switch handlerOf(ev.Type) {
	case handleSubscription:
		return a.subscription(ctx)
	case handleTrialWillEnd:
		return a.trialWillEnd(ctx)
	case handleInvoice:
		return a.invoice(ctx)
	case handleCheckout:
		return a.checkout(ctx)
	case handleRefund:
		return a.refund(ctx)
	case handleDispute:
		return a.dispute(ctx)
	case handleCustomer:
		return a.customer(ctx)
	}
	// Recorded in the ledger; nothing else to do.
	return nil
}

// apply carries one event through its handler.
type apply struct {
	w   *Worker
	tx  state
	m   *bus.Message
	ev  *stripeEvent
	p   *parsedEvent
	src store.SourceEvent
	// base is the message's logger; log adds the event's fields when a
	// line is written, which few events need.
	base logrus.FieldLogger
}

func (a *apply) log() logrus.FieldLogger {
	return a.base.WithFields(logrus.Fields{"stripe_event_id": a.ev.ID, "event_type": a.ev.Type})
}

// after runs fn once the event's effects are committed.
func (a *apply) after(fn func()) { a.tx.afterCommit(fn) }

// out writes the handler's events: caused by the Stripe event, at its
// created time, in the handler's transaction.
func (a *apply) out() emitter {
	return emitter{tx: a.tx, topo: a.w.Topology, correlation: a.m.CorrelationID(), stripeEventID: a.ev.ID, at: a.src.Created}
}

// emit writes ev to the outbox in the handler's transaction.
func (a *apply) emit(ctx context.Context, ev events.Event) error { return a.out().emit(ctx, ev) }

// meta is what every event of the handler says of the account and cause.
func (a *apply) meta(accountID string) events.Billing { return a.out().meta(accountID) }

// emitter writes billing's events with what is known of their cause: the
// Stripe event, or the tick or reconciliation that made the change.
type emitter struct {
	tx            state
	topo          bus.Topology
	correlation   string
	stripeEventID string
	at            time.Time
	reconciled    bool
	// reason, when set, says in words why the account's status changes
	// (an operator's suspension).
	reason string
}

// meta is the part of every billing event about account and cause.
func (e emitter) meta(accountID string) events.Billing {
	return events.Billing{AccountID: accountID, StripeEventID: e.stripeEventID, At: e.at}
}

func (e emitter) emit(ctx context.Context, ev events.Event) error {
	_, err := events.Emit(ctx, e.tx, e.topo, ev, e.correlation)
	return err
}

// account finds the account billed through customer; nil (with a warning
// and a metric) when no account is linked to it.
func (a *apply) account(ctx context.Context, customer string) (*store.Account, error) {
	if customer == "" {
		return nil, nil
	}
	acc, err := a.tx.AccountByStripeCustomer(ctx, customer)
	if errors.Is(err, store.ErrNotFound) {
		a.after(func() {
			a.w.m().unlinked.Inc()
			a.log().WithField("customer", customer).Warn("no account is linked to this Stripe customer; state recorded without an account")
		})
		return nil, nil
	}
	return acc, err
}

func unixPtr(s int64) *time.Time {
	if s == 0 {
		return nil
	}
	t := time.Unix(s, 0).UTC()
	return &t
}

func (a *apply) stale(kind string, prev store.SourceEvent) {
	a.after(func() {
		a.w.m().stale.WithLabelValues(string(a.ev.Type)).Inc()
		a.log().WithFields(logrus.Fields{"object": kind, "held_event": prev.ID}).Info("older than the state already held; ignored")
	})
}

func (a *apply) subscription(ctx context.Context) error {
	sub := a.p.sub
	if sub.ID == "" {
		return bus.Permanentf("%s: subscription without id", a.ev.Type)
	}
	prev, err := a.tx.GetSubscription(ctx, sub.ID)
	switch {
	case err == nil:
		if !a.src.Newer(prev.Source) {
			a.stale("subscription "+sub.ID, prev.Source)
			return nil
		}
	case errors.Is(err, store.ErrNotFound):
		if a.ev.Type == "customer.subscription.updated" && a.w.Stripe != nil {
			// An update for a subscription never seen: the event shows
			// only what changed lately; use the whole object, which
			// prefetch asked Stripe for before the transaction.
			f := prefetched(ctx)
			if f == nil {
				return errNotPrefetched("subscription " + sub.ID)
			}
			got, ok := f.subscriptions[sub.ID]
			if !ok {
				return errNotPrefetched("subscription " + sub.ID)
			}
			if got.err != nil {
				return got.err
			}
			if got.sub != nil {
				sub = subscriptionFromAPI(got.sub)
			}
		}
	default:
		return err
	}
	s := a.w.subscriptionRow(sub, a.src)
	if a.ev.Type == "customer.subscription.deleted" {
		s.Status = string(stripe.SubscriptionStatusCanceled)
	}
	acc, err := a.account(ctx, s.CustomerID)
	if err != nil {
		return err
	}
	if acc != nil {
		s.AccountID = acc.ID
	}
	if len(s.UnknownPrices) > 0 {
		a.after(func() {
			a.w.m().unknownPrices.Add(float64(len(s.UnknownPrices)))
			a.log().WithFields(logrus.Fields{"subscription": s.ID, "prices": strings.Join(s.UnknownPrices, ",")}).
				Error("subscription has prices that are not in the catalog; entitlements left unchanged")
		})
		if err := a.emit(ctx, events.UnknownPrice{Billing: a.meta(s.AccountID), SubscriptionID: s.ID, Prices: s.UnknownPrices}); err != nil {
			return err
		}
	}
	if err := a.tx.PutSubscription(ctx, s); err != nil {
		return err
	}
	if acc == nil {
		return nil
	}
	return a.recompute(ctx, acc)
}

func catalogItem(it store.SubscriptionItem) catalog.Item {
	return catalog.Item{PriceID: it.PriceID, LookupKey: it.LookupKey, Metadata: it.Metadata, Quantity: it.Quantity}
}

// entitledStatuses are the subscription statuses that grant the tier.
var entitledStatuses = []string{"active", "trialing", "past_due"}

// recompute derives the account's tier, status and entitlements from its
// subscriptions, its dunning and an operator's suspension, writes them if they changed, and tells the
// other domains.
func (a *apply) recompute(ctx context.Context, acc *store.Account) error {
	return a.w.recompute(ctx, a.tx, acc, a.out())
}

func (w *Worker) recompute(ctx context.Context, tx state, acc *store.Account, out emitter) error {
	subs, err := tx.AccountSubscriptions(ctx, acc.ID)
	if err != nil {
		return err
	}
	var items []catalog.Item
	unknown := false
	anyPaused, anySub := false, len(subs) > 0
	for _, s := range subs {
		if s.Status == "paused" {
			anyPaused = true
		}
		if !slices.Contains(entitledStatuses, s.Status) {
			continue
		}
		if len(s.UnknownPrices) > 0 {
			unknown = true
		}
		for _, it := range s.Items {
			items = append(items, catalogItem(it))
		}
	}
	ent, _ := w.Catalog.Entitlements(items)
	var tier *string
	if ent.Tier != "" {
		t := ent.Tier
		tier = &t
	}
	entJSON, err := json.Marshal(ent)
	if err != nil {
		return err
	}
	if ent.Tier == "" {
		entJSON = []byte("{}")
	}
	if unknown {
		// Never change entitlements on a guess: keep what the account has.
		tier, entJSON = acc.Tier, acc.Entitlements
	}

	status := store.AccountStatusActive
	switch {
	case unknown:
		// Nor the status: an entitled subscription whose prices the
		// catalog does not know is not a cancellation.
		status = acc.Status
	case ent.Tier != "":
		status = store.AccountStatusActive
	case anyPaused:
		status = store.AccountStatusPaused
	case anySub:
		status = store.AccountStatusCanceled
	default:
		status = acc.Status
	}
	if status == store.AccountStatusSuspended {
		// Kept from the account as it was: only dunning or an operator
		// suspend an account, and both are read next. Without either,
		// the suspension was lifted.
		status = store.AccountStatusActive
	}
	if d, err := tx.GetDunning(ctx, acc.ID); err == nil {
		switch d.State {
		case store.DunningPastDue:
			status = store.AccountStatusPastDue
		case store.DunningSuspended:
			status = store.AccountStatusSuspended
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if acc.Suspension != nil && status != store.AccountStatusCanceled {
		// An operator's suspension holds whatever billing says: paying
		// does not lift it, only an operator does (ActionReinstate). A
		// canceled account stays canceled; the suspension holds its
		// offboarding instead (accounts.erase).
		status = store.AccountStatusSuspended
	}

	tierChanged := !equalTier(tier, acc.Tier)
	entChanged := !jsonEqual(entJSON, acc.Entitlements)
	statusChanged := status != acc.Status
	if !tierChanged && !entChanged && !statusChanged {
		return nil
	}
	if err := tx.SetAccountBilling(ctx, store.AccountBilling{ID: acc.ID, Tier: tier, Status: status, Entitlements: entJSON}); err != nil {
		return err
	}
	log := bus.Logger(ctx).WithFields(logrus.Fields{"account_id": acc.ID, "tier": tierName(tier), "previous_tier": tierName(acc.Tier),
		"status": status, "previous_status": acc.Status})
	tx.afterCommit(func() { log.Info("account billing changed") })
	if tierChanged || entChanged {
		if err := out.emit(ctx, events.EntitlementsChanged{
			Billing: out.meta(acc.ID), Tier: tier, Entitlements: canonicalJSON(entJSON), PreviousTier: acc.Tier,
			PreviousEntitlements: canonicalJSON(acc.Entitlements),
			Reconciled:           out.reconciled,
		}); err != nil {
			return err
		}
	}
	if statusChanged {
		if err := out.emit(ctx, events.AccountStatusChanged{
			Billing: out.meta(acc.ID), Status: status, PreviousStatus: acc.Status, Tier: tier, Reason: out.reason, Reconciled: out.reconciled,
		}); err != nil {
			return err
		}
	}
	return nil
}

func tierName(t *string) string {
	if t == nil {
		return ""
	}
	return *t
}

func equalTier(a, b *string) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

// canonicalJSON is b with its objects' keys sorted and no spaces, so that
// an event carries the same bytes whether the entitlements came from
// PostgreSQL's jsonb (which orders keys its own way), SQLite's text or
// this worker; b as it is when it is not JSON.
func canonicalJSON(b []byte) json.RawMessage {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return b
	}
	c, err := json.Marshal(v)
	if err != nil {
		return b
	}
	return c
}

func jsonEqual(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true // most recomputes change nothing
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

func (a *apply) trialWillEnd(ctx context.Context) error {
	sub := a.p.sub
	acc, err := a.account(ctx, sub.Customer.ID)
	if err != nil || acc == nil {
		return err
	}
	return a.emit(ctx, events.TrialWillEnd{Billing: a.meta(acc.ID), SubscriptionID: sub.ID, TrialEnd: unixPtr(sub.TrialEnd)})
}

func (a *apply) invoice(ctx context.Context) error {
	inv := a.p.inv
	if inv.ID == "" {
		return bus.Permanentf("%s: invoice without id", a.ev.Type)
	}
	prev, err := a.tx.GetInvoice(ctx, inv.ID)
	if err == nil && !a.src.Newer(prev.Source) {
		a.stale("invoice "+inv.ID, prev.Source)
		return nil
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	acc, err := a.account(ctx, inv.Customer.ID)
	if err != nil {
		return err
	}
	row := store.Invoice{
		ID: inv.ID, CustomerID: inv.Customer.ID, Status: inv.Status, Currency: inv.Currency, SubscriptionID: inv.Subscription.ID,
		AmountDue: inv.AmountDue, AmountPaid: inv.AmountPaid, AttemptCount: inv.AttemptCount,
		NextPaymentAttempt: unixPtr(inv.NextPaymentAttempt), HostedInvoiceURL: inv.HostedInvoiceURL,
		Created: time.Unix(inv.Created, 0).UTC(), Source: a.src,
	}
	if acc != nil {
		row.AccountID = acc.ID
	}
	if err := a.tx.PutInvoice(ctx, row); err != nil {
		return err
	}
	if acc == nil {
		return nil
	}
	about := events.Invoice{Billing: a.meta(acc.ID), InvoiceID: inv.ID, AmountDue: inv.AmountDue, Currency: inv.Currency,
		AttemptCount: inv.AttemptCount, Tier: acc.Tier}
	// The account's status follows its dunning state; an invoice event
	// that leaves that state alone cannot change the account, whose
	// tier and status were derived from the same subscriptions and
	// dunning when they last changed.
	dunningChanged := false
	switch a.ev.Type {
	case "invoice.payment_failed":
		failed := events.PaymentFailed{Invoice: about}
		d, err := a.tx.GetDunning(ctx, acc.ID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if d == nil || d.State == store.DunningSettled {
			if d != nil && !a.src.Created.After(d.EventCreated) {
				// Settled by a payment made after this failure.
				return nil
			}
			nd := store.Dunning{AccountID: acc.ID, State: store.DunningPastDue, InvoiceID: inv.ID,
				PastDueSince: a.src.Created, GraceUntil: a.src.Created.Add(a.w.grace()), EventCreated: a.src.Created}
			if err := a.tx.PutDunning(ctx, nd, time.Time{}); err != nil {
				return err
			}
			dunningChanged = true
			failed.GraceUntil = &nd.GraceUntil
		} else if a.src.Created.After(d.EventCreated) {
			// Already behind: the newest failed invoice is the one a
			// payment must settle; the grace period keeps running.
			d.InvoiceID, d.EventCreated = inv.ID, a.src.Created
			if err := a.tx.PutDunning(ctx, *d, time.Time{}); err != nil {
				return err
			}
		}
		if err := a.emit(ctx, failed); err != nil {
			return err
		}
	case "invoice.payment_action_required":
		if err := a.emit(ctx, events.PaymentActionRequired{Invoice: about}); err != nil {
			return err
		}
	case "invoice.paid":
		d, err := a.tx.GetDunning(ctx, acc.ID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if d != nil && d.State != store.DunningSettled && (d.InvoiceID == inv.ID || a.src.Created.After(d.EventCreated)) {
			was := d.State
			d.State, d.EventCreated = store.DunningSettled, a.src.Created
			if err := a.tx.PutDunning(ctx, *d, time.Time{}); err != nil {
				return err
			}
			dunningChanged = true
			if err := a.emit(ctx, events.PaymentRecovered{Invoice: about, PreviousState: was}); err != nil {
				return err
			}
		}
	}
	if !dunningChanged {
		return nil
	}
	return a.recompute(ctx, acc)
}

func (a *apply) checkout(ctx context.Context) error {
	cs := a.p.cs
	accountID := cs.ClientReferenceID
	if accountID == "" {
		accountID = cs.Metadata["levqor_account"]
	}
	if accountID == "" {
		a.after(func() {
			a.log().WithField("checkout_session", cs.ID).Info("checkout session without a Levqor account reference; recorded only")
		})
		return nil
	}
	acc, err := a.tx.GetAccount(ctx, accountID)
	if errors.Is(err, store.ErrNotFound) {
		// A session Levqor did not create (a payment link, another
		// environment on the same Stripe account): no retry can find the
		// account, and the event is in the ledger for operators.
		a.after(func() {
			a.w.m().unlinked.Inc()
			a.log().WithFields(logrus.Fields{"checkout_session": cs.ID, "account_ref": accountID}).
				Warn("checkout session names no Levqor account; recorded in the ledger only")
		})
		return nil
	}
	if err != nil {
		return err
	}
	if c := cs.Customer.ID; c != "" && c != acc.StripeCustomerID {
		// Levqor creates its sessions for the account's own customer. A
		// session for another customer (a payment link, a forged
		// reference) must not take the account's billing over.
		reason := fmt.Sprintf("Checkout session %s names account %s, billed through Stripe customer %s, but was paid by customer %s: the account was not relinked and the session's purchases were not recorded for it",
			cs.ID, acc.ID, acc.StripeCustomerID, c)
		a.after(func() {
			a.w.m().mismatched.Inc()
			a.log().WithFields(logrus.Fields{"account_id": acc.ID, "checkout_session": cs.ID, "customer": c}).Warn(reason)
		})
		return a.emit(ctx, events.CustomerMismatch{Billing: a.meta(acc.ID), CheckoutSessionID: cs.ID,
			AccountCustomerID: acc.StripeCustomerID, SessionCustomerID: c, Incident: "customer_mismatch:" + cs.ID, Reason: reason})
	}
	if cs.Mode != string(stripe.CheckoutSessionModePayment) {
		return nil
	}
	if cs.PaymentStatus != string(stripe.CheckoutSessionPaymentStatusPaid) && cs.PaymentStatus != string(stripe.CheckoutSessionPaymentStatusNoPaymentRequired) {
		a.after(func() {
			a.log().WithFields(logrus.Fields{"account_id": acc.ID, "checkout_session": cs.ID, "payment_status": cs.PaymentStatus}).
				Info("checkout session not paid yet; its purchases count once Stripe reports the payment (checkout.session.async_payment_succeeded)")
		})
		return nil
	}
	products, err := a.w.checkoutProducts(ctx, cs.ID, cs.Metadata)
	if err != nil {
		return err
	}
	// In a fixed order, so that the events of one session are too.
	for _, key := range slices.Sorted(maps.Keys(products)) {
		qty := products[key]
		if _, ok := a.w.Catalog.File().Packages[key]; !ok {
			continue
		}
		inserted, err := a.tx.InsertDFYPurchase(ctx, store.DFYPurchase{
			CheckoutSessionID: cs.ID, AccountID: acc.ID, Package: key, Quantity: qty,
			PurchasedAt: a.src.Created, SourceEventID: a.ev.ID,
		})
		if err != nil {
			return err
		}
		if inserted {
			if err := a.emit(ctx, events.DFYPurchased{Billing: a.meta(acc.ID), Package: key, Quantity: qty, CheckoutSessionID: cs.ID}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *apply) refund(ctx context.Context) error {
	ch := a.p.ch
	prev, err := a.tx.GetCharge(ctx, ch.ID)
	if err == nil && !a.src.Newer(prev.Source) {
		a.stale("charge "+ch.ID, prev.Source)
		return nil
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	acc, err := a.account(ctx, ch.Customer.ID)
	if err != nil {
		return err
	}
	c := store.Charge{ID: ch.ID, CustomerID: ch.Customer.ID, InvoiceID: ch.Invoice.ID, Amount: ch.Amount, AmountRefunded: ch.AmountRefunded, Source: a.src}
	if prev != nil {
		c.DisputeID, c.DisputeStatus = prev.DisputeID, prev.DisputeStatus
	}
	if acc != nil {
		c.AccountID = acc.ID
	}
	if err := a.tx.PutCharge(ctx, c, time.Time{}); err != nil {
		return err
	}
	if acc == nil {
		return nil
	}
	return a.emit(ctx, events.ChargeRefunded{Billing: a.meta(acc.ID), ChargeID: ch.ID, Amount: ch.Amount, AmountRefunded: ch.AmountRefunded, Currency: ch.Currency})
}

func (a *apply) dispute(ctx context.Context) error {
	d := a.p.dp
	if d.Charge.ID == "" {
		return bus.Permanentf("dispute %s has no charge", d.ID)
	}
	c, err := a.tx.GetCharge(ctx, d.Charge.ID)
	if errors.Is(err, store.ErrNotFound) {
		c = &store.Charge{ID: d.Charge.ID, Amount: d.Amount, CustomerID: d.Charge.Customer.ID}
		err = nil
	}
	if err != nil {
		return err
	}
	if c.Source.ID != "" && !a.src.Newer(c.Source) && c.DisputeID == d.ID {
		a.stale("dispute "+d.ID, c.Source)
		return nil
	}
	c.DisputeID, c.DisputeStatus, c.Source = d.ID, d.Status, a.src
	var acc *store.Account
	if c.AccountID != "" {
		acc, err = a.tx.GetAccount(ctx, c.AccountID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	} else if c.CustomerID != "" {
		if acc, err = a.account(ctx, c.CustomerID); err != nil {
			return err
		}
		if acc != nil {
			c.AccountID = acc.ID
		}
	}
	if err := a.tx.PutCharge(ctx, *c, time.Time{}); err != nil {
		return err
	}
	if acc == nil {
		return nil
	}
	return a.emit(ctx, events.DisputeOpened{Billing: a.meta(acc.ID), DisputeID: d.ID, ChargeID: c.ID, Amount: d.Amount, Reason: d.Reason})
}

func (a *apply) customer(ctx context.Context) error {
	acc, err := a.account(ctx, a.p.cus.ID)
	if err != nil || acc == nil {
		return err
	}
	if a.ev.Type != "customer.deleted" {
		return nil // the ledger keeps the change; Levqor's contact details are the account's own
	}
	if acc.Status == store.AccountStatusCanceled {
		return nil
	}
	if err := a.tx.SetAccountBilling(ctx, store.AccountBilling{ID: acc.ID, Tier: nil, Status: store.AccountStatusCanceled, Entitlements: json.RawMessage("{}")}); err != nil {
		return err
	}
	return a.emit(ctx, events.AccountStatusChanged{
		Billing: a.meta(acc.ID), Status: store.AccountStatusCanceled, PreviousStatus: acc.Status, Reason: "stripe customer deleted",
	})
}
