package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Stripe-derived billing state. Each object records the Stripe event it
// was last taken from; SourceEvent.Newer decides whether an event may
// change it.

// SourceEvent identifies the Stripe event a row was derived from.
type SourceEvent struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
}

// Newer reports whether e should replace state taken from prev: it was
// created later, or in the same second with a greater id (Stripe's created
// has one-second resolution; the tie-break makes the final state the same
// whatever order the events arrive in).
func (e SourceEvent) Newer(prev SourceEvent) bool {
	if !e.Created.Equal(prev.Created) {
		return e.Created.After(prev.Created)
	}
	return e.ID > prev.ID
}

// SubscriptionItem is one line of a subscription.
type SubscriptionItem struct {
	PriceID   string            `json:"price_id"`
	LookupKey string            `json:"lookup_key,omitempty"`
	Product   string            `json:"product,omitempty"`
	Quantity  int64             `json:"quantity"`
	Metadata  map[string]string `json:"metadata,omitempty"`
}

// Subscription is a Stripe subscription as billing last saw it.
type Subscription struct {
	ID                string             `json:"id"`
	AccountID         string             `json:"account_id,omitempty"`
	CustomerID        string             `json:"customer_id"`
	Status            string             `json:"status"`
	Items             []SubscriptionItem `json:"items"`
	UnknownPrices     []string           `json:"unknown_prices,omitempty"`
	CurrentPeriodEnd  *time.Time         `json:"current_period_end,omitempty"`
	CancelAtPeriodEnd bool               `json:"cancel_at_period_end"`
	TrialEnd          *time.Time         `json:"trial_end,omitempty"`
	Source            SourceEvent        `json:"source_event"`
	UpdatedAt         time.Time          `json:"updated_at"`
}

type subscriptionRow struct {
	ID                string         `db:"id"`
	AccountID         sql.NullString `db:"account_id"`
	CustomerID        string         `db:"customer_id"`
	Status            string         `db:"status"`
	Items             []byte         `db:"items"`
	UnknownPrices     []byte         `db:"unknown_prices"`
	CurrentPeriodEnd  sql.NullTime   `db:"current_period_end"`
	CancelAtPeriodEnd bool           `db:"cancel_at_period_end"`
	TrialEnd          sql.NullTime   `db:"trial_end"`
	SourceEventID     string         `db:"source_event_id"`
	SourceCreated     time.Time      `db:"source_event_created"`
	UpdatedAt         time.Time      `db:"updated_at"`
}

func (r subscriptionRow) subscription() (Subscription, error) {
	s := Subscription{
		ID: r.ID, AccountID: r.AccountID.String, CustomerID: r.CustomerID, Status: r.Status,
		CurrentPeriodEnd: fromNull(r.CurrentPeriodEnd), CancelAtPeriodEnd: r.CancelAtPeriodEnd,
		TrialEnd: fromNull(r.TrialEnd), Source: SourceEvent{ID: r.SourceEventID, Created: r.SourceCreated.UTC()},
		UpdatedAt: r.UpdatedAt.UTC(),
	}
	if err := json.Unmarshal(r.Items, &s.Items); err != nil {
		return s, fmt.Errorf("store: subscription %s items: %w", r.ID, err)
	}
	if err := json.Unmarshal(r.UnknownPrices, &s.UnknownPrices); err != nil {
		return s, fmt.Errorf("store: subscription %s unknown prices: %w", r.ID, err)
	}
	return s, nil
}

const subscriptionColumns = `id, account_id, customer_id, status, items, unknown_prices, current_period_end, cancel_at_period_end, trial_end, source_event_id, source_event_created, updated_at`

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// GetSubscription returns a subscription or an error wrapping ErrNotFound.
func (tx *Tx) GetSubscription(ctx context.Context, id string) (*Subscription, error) {
	var r subscriptionRow
	err := tx.tx.GetContext(ctx, &r, tx.rebind(`SELECT `+subscriptionColumns+` FROM billing_subscriptions WHERE id = ?`), id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: subscription %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: getting subscription %s: %w", id, err)
	}
	s, err := r.subscription()
	return &s, err
}

// KnownSubscriptionIDs reports which of ids billing holds a subscription
// for; ids it does not hold are absent from the map. Billing asks before
// its transaction opens, to fetch from Stripe what it will need.
func (s *Store) KnownSubscriptionIDs(ctx context.Context, ids []string) (map[string]bool, error) {
	known, err := knownIDs(ctx, s.db, "billing_subscriptions", ids)
	if err != nil {
		return nil, fmt.Errorf("store: looking up subscriptions: %w", err)
	}
	return known, nil
}

// PutSubscription inserts or replaces a subscription.
func (tx *Tx) PutSubscription(ctx context.Context, s Subscription) error {
	return tx.PutSubscriptions(ctx, []Subscription{s})
}

// PutSubscriptions inserts or replaces subscriptions, each id at most once,
// in one statement.
func (tx *Tx) PutSubscriptions(ctx context.Context, subs []Subscription) error {
	const cols = 12
	return inRowChunks(subs, cols, func(part []Subscription) error {
		args := make([]any, 0, len(part)*cols)
		ids := make([]string, 0, len(part))
		for _, s := range part {
			items, err := json.Marshal(nonNilSlice(s.Items))
			if err != nil {
				return err
			}
			unknown, err := json.Marshal(nonNilSlice(s.UnknownPrices))
			if err != nil {
				return err
			}
			ids = append(ids, s.ID)
			args = append(args, s.ID, nullString(s.AccountID), s.CustomerID, s.Status, string(items), string(unknown),
				nullTime(s.CurrentPeriodEnd), s.CancelAtPeriodEnd, nullTime(s.TrialEnd), s.Source.ID, ts(s.Source.Created), ts(orNow(s.UpdatedAt)))
		}
		_, err := tx.tx.ExecContext(ctx, tx.rebind(`INSERT INTO billing_subscriptions (`+subscriptionColumns+`)
VALUES `+rowsSQL(placeholders(cols), len(part))+`
ON CONFLICT (id) DO UPDATE SET account_id = excluded.account_id, customer_id = excluded.customer_id,
  status = excluded.status, items = excluded.items, unknown_prices = excluded.unknown_prices,
  current_period_end = excluded.current_period_end, cancel_at_period_end = excluded.cancel_at_period_end,
  trial_end = excluded.trial_end, source_event_id = excluded.source_event_id,
  source_event_created = excluded.source_event_created, updated_at = excluded.updated_at`), args...)
		if err != nil {
			return fmt.Errorf("store: saving %s: %w", what("subscription", ids...), err)
		}
		return nil
	})
}

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// AccountSubscriptions lists an account's subscriptions, newest first.
func (q Querier) AccountSubscriptions(ctx context.Context, accountID string) ([]Subscription, error) {
	return selectSubscriptions(ctx, q.db, q.rebind(`SELECT `+subscriptionColumns+` FROM billing_subscriptions WHERE account_id = ? ORDER BY source_event_created DESC, id`), accountID)
}

// AllSubscriptions lists every subscription, for reconciliation.
func (s *Store) AllSubscriptions(ctx context.Context) ([]Subscription, error) {
	return selectSubscriptions(ctx, s.db, `SELECT `+subscriptionColumns+` FROM billing_subscriptions ORDER BY id`)
}

// TrialingSubscriptions lists, within tx, the trialing subscriptions
// whose trial ends after from and at or before to, soonest first.
func (tx *Tx) TrialingSubscriptions(ctx context.Context, from, to time.Time) ([]Subscription, error) {
	return selectSubscriptions(ctx, tx.tx, tx.rebind(`SELECT `+subscriptionColumns+` FROM billing_subscriptions
WHERE status = 'trialing' AND trial_end > ? AND trial_end <= ? ORDER BY trial_end, id`), ts(from), ts(to))
}

// RecordTrialReminder records, within tx, that the reminder before the
// end of subscription's trial was sent at at. It reports false, changing
// nothing, when it was sent already.
func (tx *Tx) RecordTrialReminder(ctx context.Context, subscriptionID, accountID string, trialEnd time.Time, before time.Duration, at time.Time) (bool, error) {
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`INSERT INTO billing_trial_reminders (subscription_id, trial_end, before_seconds, account_id, sent_at)
VALUES (?, ?, ?, ?, ?) ON CONFLICT (subscription_id, trial_end, before_seconds) DO NOTHING`),
		subscriptionID, ts(trialEnd), int64(before/time.Second), accountID, ts(at))
	if err != nil {
		return false, fmt.Errorf("store: recording trial reminder of %s: %w", subscriptionID, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func selectSubscriptions(ctx context.Context, q dbtx, query string, args ...any) ([]Subscription, error) {
	var rows []subscriptionRow
	if err := q.SelectContext(ctx, &rows, query, args...); err != nil {
		return nil, fmt.Errorf("store: listing subscriptions: %w", err)
	}
	out := make([]Subscription, 0, len(rows))
	for _, r := range rows {
		s, err := r.subscription()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// AccountByStripeCustomer returns the account billed through a Stripe
// customer, or an error wrapping ErrNotFound.
func (tx *Tx) AccountByStripeCustomer(ctx context.Context, customerID string) (*Account, error) {
	var r accountRow
	err := tx.tx.GetContext(ctx, &r, tx.rebind(`SELECT `+accountColumns+` FROM accounts WHERE stripe_customer_id = ? ORDER BY created_at, id LIMIT 1`), customerID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: account of customer %s: %w", customerID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: finding account of customer %s: %w", customerID, err)
	}
	a := r.account()
	return &a, nil
}

// AccountBilling is what billing sets on an account.
type AccountBilling struct {
	ID           string
	Tier         *string
	Status       string
	Entitlements json.RawMessage
	At           time.Time
	// Uncanceled says the account was not canceled at some point since
	// its last write (several changes written at once): a canceled
	// Status then counts its canceled_at from At, as it would have had
	// each change been written.
	Uncanceled bool
}

// SetAccountBilling sets an account's tier, status and entitlements.
func (tx *Tx) SetAccountBilling(ctx context.Context, b AccountBilling) error {
	return tx.SetAccountsBilling(ctx, []AccountBilling{b})
}

// SetAccountsBilling sets the tier, status and entitlements of accounts,
// each at most once, in one statement. It fails, naming none in
// particular, unless every account exists.
func (tx *Tx) SetAccountsBilling(ctx context.Context, bs []AccountBilling) error {
	const cols = 6
	// The rows' values come as a VALUES list; PostgreSQL takes its
	// parameters as text, so the JSON, the time and the flag are cast.
	row := placeholders(cols)
	if tx.tx.DriverName() == DialectPostgres {
		row = `(?, ?, ?, CAST(? AS jsonb), CAST(? AS timestamptz), CAST(? AS boolean))`
	}
	return inRowChunks(bs, cols, func(part []AccountBilling) error {
		args := make([]any, 0, len(part)*cols)
		ids := make([]string, 0, len(part))
		for _, b := range part {
			var tier any
			if b.Tier != nil {
				tier = *b.Tier
			}
			ent := b.Entitlements
			if len(ent) == 0 {
				ent = json.RawMessage("{}")
			}
			ids = append(ids, b.ID)
			args = append(args, b.ID, tier, b.Status, string(ent), ts(orNow(b.At)), b.Uncanceled)
		}
		// canceled_at keeps when the account became canceled (offboarding's
		// grace counts from it), and is cleared when it is not. An
		// operator's suspension keeps the status suspended (canceled
		// aside) even against a status computed from a read made before
		// it (billing.recompute applies the same rule).
		res, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE accounts SET tier = v.column2, entitlements = v.column4,
  status = CASE WHEN accounts.suspended_at IS NOT NULL AND v.column3 <> '`+AccountStatusCanceled+`' THEN '`+AccountStatusSuspended+`' ELSE v.column3 END,
  updated_at = v.column5, canceled_at = CASE WHEN v.column3 <> '`+AccountStatusCanceled+`' THEN NULL
    WHEN v.column6 THEN v.column5 ELSE COALESCE(accounts.canceled_at, v.column5) END
FROM (VALUES `+rowsSQL(row, len(part))+`) AS v WHERE accounts.id = v.column1`), args...)
		if err != nil {
			return fmt.Errorf("store: setting billing of %s: %w", what("account", ids...), err)
		}
		if n, _ := res.RowsAffected(); n != int64(len(part)) {
			return fmt.Errorf("store: setting billing of %s: %d of them found: %w", what("account", ids...), n, ErrNotFound)
		}
		return nil
	})
}

// Invoice is a Stripe invoice as billing last saw it.
type Invoice struct {
	ID                 string      `json:"id"`
	AccountID          string      `json:"account_id,omitempty"`
	CustomerID         string      `json:"customer_id"`
	SubscriptionID     string      `json:"subscription_id,omitempty"`
	Status             string      `json:"status"`
	Currency           string      `json:"currency"`
	AmountDue          int64       `json:"amount_due"`
	AmountPaid         int64       `json:"amount_paid"`
	AttemptCount       int64       `json:"attempt_count"`
	NextPaymentAttempt *time.Time  `json:"next_payment_attempt,omitempty"`
	HostedInvoiceURL   string      `json:"hosted_invoice_url,omitempty"`
	Created            time.Time   `json:"created"`
	Source             SourceEvent `json:"source_event"`
	UpdatedAt          time.Time   `json:"updated_at"`
}

type invoiceRow struct {
	ID                 string         `db:"id"`
	AccountID          sql.NullString `db:"account_id"`
	CustomerID         string         `db:"customer_id"`
	SubscriptionID     string         `db:"subscription_id"`
	Status             string         `db:"status"`
	Currency           string         `db:"currency"`
	AmountDue          int64          `db:"amount_due"`
	AmountPaid         int64          `db:"amount_paid"`
	AttemptCount       int64          `db:"attempt_count"`
	NextPaymentAttempt sql.NullTime   `db:"next_payment_attempt"`
	HostedInvoiceURL   string         `db:"hosted_invoice_url"`
	Created            time.Time      `db:"created"`
	SourceEventID      string         `db:"source_event_id"`
	SourceCreated      time.Time      `db:"source_event_created"`
	UpdatedAt          time.Time      `db:"updated_at"`
}

func (r invoiceRow) invoice() Invoice {
	return Invoice{
		ID: r.ID, AccountID: r.AccountID.String, CustomerID: r.CustomerID, SubscriptionID: r.SubscriptionID,
		Status: r.Status, Currency: r.Currency, AmountDue: r.AmountDue, AmountPaid: r.AmountPaid,
		AttemptCount: r.AttemptCount, NextPaymentAttempt: fromNull(r.NextPaymentAttempt),
		HostedInvoiceURL: r.HostedInvoiceURL, Created: r.Created.UTC(),
		Source: SourceEvent{ID: r.SourceEventID, Created: r.SourceCreated.UTC()}, UpdatedAt: r.UpdatedAt.UTC(),
	}
}

const invoiceColumns = `id, account_id, customer_id, subscription_id, status, currency, amount_due, amount_paid, attempt_count, next_payment_attempt, hosted_invoice_url, created, source_event_id, source_event_created, updated_at`

// GetInvoice returns an invoice or an error wrapping ErrNotFound.
func (tx *Tx) GetInvoice(ctx context.Context, id string) (*Invoice, error) {
	var r invoiceRow
	err := tx.tx.GetContext(ctx, &r, tx.rebind(`SELECT `+invoiceColumns+` FROM billing_invoices WHERE id = ?`), id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: invoice %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: getting invoice %s: %w", id, err)
	}
	inv := r.invoice()
	return &inv, nil
}

// PutInvoice inserts or replaces an invoice.
func (tx *Tx) PutInvoice(ctx context.Context, i Invoice) error {
	return tx.PutInvoices(ctx, []Invoice{i})
}

// PutInvoices inserts or replaces invoices, each id at most once, in one
// statement.
func (tx *Tx) PutInvoices(ctx context.Context, invs []Invoice) error {
	const cols = 15
	return inRowChunks(invs, cols, func(part []Invoice) error {
		args := make([]any, 0, len(part)*cols)
		ids := make([]string, 0, len(part))
		for _, i := range part {
			ids = append(ids, i.ID)
			args = append(args, i.ID, nullString(i.AccountID), i.CustomerID, i.SubscriptionID, i.Status, i.Currency, i.AmountDue, i.AmountPaid,
				i.AttemptCount, nullTime(i.NextPaymentAttempt), i.HostedInvoiceURL, ts(i.Created), i.Source.ID, ts(i.Source.Created), ts(orNow(i.UpdatedAt)))
		}
		_, err := tx.tx.ExecContext(ctx, tx.rebind(`INSERT INTO billing_invoices (`+invoiceColumns+`)
VALUES `+rowsSQL(placeholders(cols), len(part))+`
ON CONFLICT (id) DO UPDATE SET account_id = excluded.account_id, customer_id = excluded.customer_id,
  subscription_id = excluded.subscription_id, status = excluded.status, currency = excluded.currency,
  amount_due = excluded.amount_due, amount_paid = excluded.amount_paid, attempt_count = excluded.attempt_count,
  next_payment_attempt = excluded.next_payment_attempt, hosted_invoice_url = excluded.hosted_invoice_url,
  created = excluded.created, source_event_id = excluded.source_event_id,
  source_event_created = excluded.source_event_created, updated_at = excluded.updated_at`), args...)
		if err != nil {
			return fmt.Errorf("store: saving %s: %w", what("invoice", ids...), err)
		}
		return nil
	})
}

// RecentInvoices lists an account's newest invoices.
func (s *Store) RecentInvoices(ctx context.Context, accountID string, limit int) ([]Invoice, error) {
	var rows []invoiceRow
	if err := s.db.SelectContext(ctx, &rows, s.rebind(`SELECT `+invoiceColumns+` FROM billing_invoices WHERE account_id = ? ORDER BY created DESC, id LIMIT ?`), accountID, limit); err != nil {
		return nil, fmt.Errorf("store: listing invoices of %s: %w", accountID, err)
	}
	out := make([]Invoice, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.invoice())
	}
	return out, nil
}

// Charge is a Stripe charge with its refunds and dispute.
type Charge struct {
	ID             string      `json:"id"`
	AccountID      string      `json:"account_id,omitempty"`
	CustomerID     string      `json:"customer_id,omitempty"`
	InvoiceID      string      `json:"invoice_id,omitempty"`
	Amount         int64       `json:"amount"`
	AmountRefunded int64       `json:"amount_refunded"`
	DisputeID      string      `json:"dispute_id,omitempty"`
	DisputeStatus  string      `json:"dispute_status,omitempty"`
	Source         SourceEvent `json:"source_event"`
}

// GetCharge returns a charge or an error wrapping ErrNotFound.
func (tx *Tx) GetCharge(ctx context.Context, id string) (*Charge, error) {
	var r chargeRow
	err := tx.tx.GetContext(ctx, &r, tx.rebind(`SELECT * FROM billing_charges WHERE id = ?`), id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: charge %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: getting charge %s: %w", id, err)
	}
	c := r.charge()
	return &c, nil
}

type chargeRow struct {
	ID             string         `db:"id"`
	AccountID      sql.NullString `db:"account_id"`
	CustomerID     string         `db:"customer_id"`
	InvoiceID      string         `db:"invoice_id"`
	Amount         int64          `db:"amount"`
	AmountRefunded int64          `db:"amount_refunded"`
	DisputeID      string         `db:"dispute_id"`
	DisputeStatus  string         `db:"dispute_status"`
	SourceEventID  string         `db:"source_event_id"`
	SourceCreated  time.Time      `db:"source_event_created"`
	UpdatedAt      time.Time      `db:"updated_at"`
}

func (r chargeRow) charge() Charge {
	return Charge{ID: r.ID, AccountID: r.AccountID.String, CustomerID: r.CustomerID, InvoiceID: r.InvoiceID,
		Amount: r.Amount, AmountRefunded: r.AmountRefunded, DisputeID: r.DisputeID, DisputeStatus: r.DisputeStatus,
		Source: SourceEvent{ID: r.SourceEventID, Created: r.SourceCreated.UTC()}}
}

// PutCharge inserts or replaces a charge.
func (tx *Tx) PutCharge(ctx context.Context, c Charge, at time.Time) error {
	return tx.PutCharges(ctx, []Charge{c}, at)
}

// PutCharges inserts or replaces charges, each id at most once, in one
// statement; at (zero: now) is their updated_at.
func (tx *Tx) PutCharges(ctx context.Context, charges []Charge, at time.Time) error {
	const cols = 11
	at = ts(orNow(at))
	return inRowChunks(charges, cols, func(part []Charge) error {
		args := make([]any, 0, len(part)*cols)
		ids := make([]string, 0, len(part))
		for _, c := range part {
			ids = append(ids, c.ID)
			args = append(args, c.ID, nullString(c.AccountID), c.CustomerID, c.InvoiceID, c.Amount, c.AmountRefunded, c.DisputeID, c.DisputeStatus,
				c.Source.ID, ts(c.Source.Created), at)
		}
		_, err := tx.tx.ExecContext(ctx, tx.rebind(`INSERT INTO billing_charges
(id, account_id, customer_id, invoice_id, amount, amount_refunded, dispute_id, dispute_status, source_event_id, source_event_created, updated_at)
VALUES `+rowsSQL(placeholders(cols), len(part))+`
ON CONFLICT (id) DO UPDATE SET account_id = excluded.account_id, customer_id = excluded.customer_id,
  invoice_id = excluded.invoice_id, amount = excluded.amount, amount_refunded = excluded.amount_refunded,
  dispute_id = excluded.dispute_id, dispute_status = excluded.dispute_status, source_event_id = excluded.source_event_id,
  source_event_created = excluded.source_event_created, updated_at = excluded.updated_at`), args...)
		if err != nil {
			return fmt.Errorf("store: saving %s: %w", what("charge", ids...), err)
		}
		return nil
	})
}

// DFYPurchase records a Done-For-You package bought through Checkout.
type DFYPurchase struct {
	CheckoutSessionID string    `json:"checkout_session_id" db:"checkout_session_id"`
	AccountID         string    `json:"account_id" db:"account_id"`
	Package           string    `json:"package" db:"package"`
	Quantity          int64     `json:"quantity" db:"quantity"`
	PurchasedAt       time.Time `json:"purchased_at" db:"purchased_at"`
	SourceEventID     string    `json:"-" db:"source_event_id"`
}

// InsertDFYPurchase records p once per (checkout session, package).
func (tx *Tx) InsertDFYPurchase(ctx context.Context, p DFYPurchase) (bool, error) {
	n, err := tx.InsertDFYPurchases(ctx, []DFYPurchase{p})
	return n == 1, err
}

// InsertDFYPurchases records purchases, each once per (checkout session,
// package), in one statement, and returns how many were new.
func (tx *Tx) InsertDFYPurchases(ctx context.Context, ps []DFYPurchase) (int64, error) {
	const cols = 6
	var inserted int64
	err := inRowChunks(ps, cols, func(part []DFYPurchase) error {
		args := make([]any, 0, len(part)*cols)
		ids := make([]string, 0, len(part))
		for _, p := range part {
			ids = append(ids, p.CheckoutSessionID)
			args = append(args, dfyKey(p.CheckoutSessionID, p.Package), p.AccountID, p.Package, p.Quantity, ts(p.PurchasedAt), p.SourceEventID)
		}
		res, err := tx.tx.ExecContext(ctx, tx.rebind(`INSERT INTO billing_dfy_purchases
(checkout_session_id, account_id, package, quantity, purchased_at, source_event_id) VALUES `+rowsSQL(placeholders(cols), len(part))+`
ON CONFLICT (checkout_session_id) DO NOTHING`), args...)
		if err != nil {
			return fmt.Errorf("store: recording %s: %w", what("purchase", ids...), err)
		}
		n, _ := res.RowsAffected()
		inserted += n
		return nil
	})
	return inserted, err
}

// dfyKey is a purchase's key: one row per package of a checkout session.
func dfyKey(session, pkg string) string { return session + ":" + pkg }

// DFYPurchaseRecorded reports whether the package's purchase in the
// checkout session is recorded.
func (tx *Tx) DFYPurchaseRecorded(ctx context.Context, session, pkg string) (bool, error) {
	var n int
	if err := tx.tx.GetContext(ctx, &n, tx.rebind(`SELECT COUNT(*) FROM billing_dfy_purchases WHERE checkout_session_id = ?`), dfyKey(session, pkg)); err != nil {
		return false, fmt.Errorf("store: looking up purchase %s: %w", session, err)
	}
	return n > 0, nil
}

// DFYPurchases lists an account's Done-For-You purchases.
func (s *Store) DFYPurchases(ctx context.Context, accountID string) ([]DFYPurchase, error) {
	var out []DFYPurchase
	if err := s.db.SelectContext(ctx, &out, s.rebind(`SELECT * FROM billing_dfy_purchases WHERE account_id = ? ORDER BY purchased_at, checkout_session_id`), accountID); err != nil {
		return nil, fmt.Errorf("store: listing purchases of %s: %w", accountID, err)
	}
	for i := range out {
		out[i].PurchasedAt = out[i].PurchasedAt.UTC()
	}
	return out, nil
}

// Dunning states.
const (
	DunningPastDue   = "past_due"
	DunningSuspended = "suspended"
	DunningSettled   = "settled"
)

// Dunning is an account's payment trouble: past due since a failed
// payment, suspended once the grace period ran out, settled when paid.
type Dunning struct {
	AccountID    string     `json:"account_id" db:"account_id"`
	State        string     `json:"state" db:"state"`
	InvoiceID    string     `json:"invoice_id" db:"invoice_id"`
	PastDueSince time.Time  `json:"past_due_since" db:"past_due_since"`
	GraceUntil   time.Time  `json:"grace_until" db:"grace_until"`
	SuspendedAt  *time.Time `json:"suspended_at,omitempty" db:"-"`
	// EventCreated is the Stripe event that last changed the state.
	EventCreated time.Time `json:"-" db:"event_created"`
}

type dunningRow struct {
	Dunning
	Suspended sql.NullTime `db:"suspended_at"`
	UpdatedAt time.Time    `db:"updated_at"`
}

func (r dunningRow) dunning() Dunning {
	d := r.Dunning
	d.PastDueSince, d.GraceUntil, d.EventCreated = d.PastDueSince.UTC(), d.GraceUntil.UTC(), d.EventCreated.UTC()
	d.SuspendedAt = fromNull(r.Suspended)
	return d
}

// GetDunning returns an account's dunning row or an error wrapping
// ErrNotFound.
func (q Querier) GetDunning(ctx context.Context, accountID string) (*Dunning, error) {
	var r dunningRow
	err := q.db.GetContext(ctx, &r, q.rebind(`SELECT * FROM billing_dunning WHERE account_id = ?`), accountID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: dunning of %s: %w", accountID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: getting dunning of %s: %w", accountID, err)
	}
	d := r.dunning()
	return &d, nil
}

// PutDunning inserts or replaces an account's dunning row.
func (tx *Tx) PutDunning(ctx context.Context, d Dunning, at time.Time) error {
	return tx.PutDunnings(ctx, []Dunning{d}, at)
}

// PutDunnings inserts or replaces dunning rows, each account at most once,
// in one statement; at (zero: now) is their updated_at.
func (tx *Tx) PutDunnings(ctx context.Context, ds []Dunning, at time.Time) error {
	const cols = 8
	at = ts(orNow(at))
	return inRowChunks(ds, cols, func(part []Dunning) error {
		args := make([]any, 0, len(part)*cols)
		ids := make([]string, 0, len(part))
		for _, d := range part {
			ids = append(ids, d.AccountID)
			args = append(args, d.AccountID, d.State, d.InvoiceID, ts(d.PastDueSince), ts(d.GraceUntil), nullTime(d.SuspendedAt), ts(d.EventCreated), at)
		}
		_, err := tx.tx.ExecContext(ctx, tx.rebind(`INSERT INTO billing_dunning
(account_id, state, invoice_id, past_due_since, grace_until, suspended_at, event_created, updated_at) VALUES `+rowsSQL(placeholders(cols), len(part))+`
ON CONFLICT (account_id) DO UPDATE SET state = excluded.state, invoice_id = excluded.invoice_id,
  past_due_since = excluded.past_due_since, grace_until = excluded.grace_until, suspended_at = excluded.suspended_at,
  event_created = excluded.event_created, updated_at = excluded.updated_at`), args...)
		if err != nil {
			return fmt.Errorf("store: saving dunning of %s: %w", what("account", ids...), err)
		}
		return nil
	})
}

// GraceExpired lists past-due accounts whose grace period ended at or
// before t.
func (tx *Tx) GraceExpired(ctx context.Context, t time.Time) ([]Dunning, error) {
	var rows []dunningRow
	if err := tx.tx.SelectContext(ctx, &rows, tx.rebind(`SELECT * FROM billing_dunning WHERE state = ? AND grace_until <= ? ORDER BY grace_until, account_id`), DunningPastDue, ts(t)); err != nil {
		return nil, fmt.Errorf("store: listing expired grace periods: %w", err)
	}
	out := make([]Dunning, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.dunning())
	}
	return out, nil
}

// nullTime is t for a nullable time column: NULL when nil.
func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return ts(*t)
}
