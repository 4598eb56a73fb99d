package store

import (
	"context"
	"fmt"
	"slices"
)

// BillingKeys name what a batch of Stripe events is about.
type BillingKeys struct {
	// Customers are Stripe customer ids, whose accounts are loaded;
	// Accounts, account ids. Each loaded account brings its
	// subscriptions and dunning row.
	Customers, Accounts []string
	// Subscriptions, Invoices and Charges are object ids.
	Subscriptions, Invoices, Charges []string
}

// BillingRows are the rows BillingKeys name that exist.
type BillingRows struct {
	Accounts      []Account
	Subscriptions []Subscription
	Invoices      []Invoice
	Charges       []Charge
	Dunning       []Dunning
}

// LoadBilling reads, within tx, what k names: a batch of Stripe events
// reads everything it may need in a few statements instead of several per
// event. The accounts' rows stay locked until tx ends (FOR UPDATE on
// PostgreSQL, in id order; SQLite serializes writers anyway), so nothing
// changes an account's billing between this read and the batch's write.
func (tx *Tx) LoadBilling(ctx context.Context, k BillingKeys) (*BillingRows, error) {
	lock := ""
	if tx.tx.DriverName() == DialectPostgres {
		lock = ` FOR UPDATE`
	}
	var out BillingRows
	var accounts []accountRow
	if err := selectIn(ctx, tx.tx, &accounts, `SELECT `+accountColumns+` FROM accounts WHERE stripe_customer_id IN (?) ORDER BY id`+lock, k.Customers); err != nil {
		return nil, fmt.Errorf("store: loading the accounts of %s: %w", what("customer", k.Customers...), err)
	}
	if err := selectIn(ctx, tx.tx, &accounts, `SELECT `+accountColumns+` FROM accounts WHERE id IN (?) ORDER BY id`+lock, k.Accounts); err != nil {
		return nil, fmt.Errorf("store: loading %s: %w", what("account", k.Accounts...), err)
	}
	seen := map[string]bool{}
	var accountIDs []string
	for _, r := range accounts {
		if !seen[r.ID] {
			seen[r.ID] = true
			accountIDs = append(accountIDs, r.ID)
			out.Accounts = append(out.Accounts, r.account())
		}
	}

	var subs []subscriptionRow
	if err := selectIn(ctx, tx.tx, &subs, `SELECT `+subscriptionColumns+` FROM billing_subscriptions WHERE id IN (?)`, k.Subscriptions); err != nil {
		return nil, fmt.Errorf("store: loading %s: %w", what("subscription", k.Subscriptions...), err)
	}
	if err := selectIn(ctx, tx.tx, &subs, `SELECT `+subscriptionColumns+` FROM billing_subscriptions WHERE account_id IN (?)`, accountIDs); err != nil {
		return nil, fmt.Errorf("store: loading the subscriptions of %s: %w", what("account", accountIDs...), err)
	}
	clear(seen)
	for _, r := range subs {
		if seen[r.ID] {
			continue
		}
		seen[r.ID] = true
		s, err := r.subscription()
		if err != nil {
			return nil, err
		}
		out.Subscriptions = append(out.Subscriptions, s)
	}

	var invs []invoiceRow
	if err := selectIn(ctx, tx.tx, &invs, `SELECT `+invoiceColumns+` FROM billing_invoices WHERE id IN (?)`, k.Invoices); err != nil {
		return nil, fmt.Errorf("store: loading %s: %w", what("invoice", k.Invoices...), err)
	}
	for _, r := range invs {
		out.Invoices = append(out.Invoices, r.invoice())
	}
	var charges []chargeRow
	if err := selectIn(ctx, tx.tx, &charges, `SELECT * FROM billing_charges WHERE id IN (?)`, k.Charges); err != nil {
		return nil, fmt.Errorf("store: loading %s: %w", what("charge", k.Charges...), err)
	}
	for _, r := range charges {
		out.Charges = append(out.Charges, r.charge())
	}
	var dunning []dunningRow
	if err := selectIn(ctx, tx.tx, &dunning, `SELECT * FROM billing_dunning WHERE account_id IN (?)`, accountIDs); err != nil {
		return nil, fmt.Errorf("store: loading the dunning of %s: %w", what("account", accountIDs...), err)
	}
	for _, r := range dunning {
		out.Dunning = append(out.Dunning, r.dunning())
	}
	return &out, nil
}

// Compact sorts each list of k and drops repeats.
func (k BillingKeys) Compact() BillingKeys {
	for _, s := range []*[]string{&k.Customers, &k.Accounts, &k.Subscriptions, &k.Invoices, &k.Charges} {
		slices.Sort(*s)
		*s = slices.Compact(*s)
	}
	return k
}
