package store

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jmoiron/sqlx"
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
// changes an account's billing between this read and the batch's write:
// every writer of an account's billing state (subscriptions, dunning,
// the account) locks the account first (LockAccounts).
//
// The lists are a batch's, a few hundred ids at most: they go in one
// statement each.
func (tx *Tx) LoadBilling(ctx context.Context, k BillingKeys) (*BillingRows, error) {
	lock := ""
	if tx.tx.DriverName() == DialectPostgres {
		lock = ` FOR UPDATE`
	}
	var out BillingRows
	// One statement locks every account, in id order, so that two
	// batches (or a batch and a billing tick) never lock two accounts in
	// opposite orders.
	var accounts []accountRow
	var conds []string
	var args []any
	if len(k.Customers) > 0 {
		conds, args = append(conds, `stripe_customer_id IN (?)`), append(args, k.Customers)
	}
	if len(k.Accounts) > 0 {
		conds, args = append(conds, `id IN (?)`), append(args, k.Accounts)
	}
	if len(conds) > 0 {
		q, qargs, err := sqlx.In(`SELECT `+accountColumns+` FROM accounts WHERE `+strings.Join(conds, " OR ")+` ORDER BY id`+lock, args...)
		if err != nil {
			return nil, err
		}
		if err := tx.tx.SelectContext(ctx, &accounts, tx.rebind(q), qargs...); err != nil {
			return nil, fmt.Errorf("store: loading the accounts of %s and %s: %w", what("customer", k.Customers...), what("account", k.Accounts...), err)
		}
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

// LockAccounts locks the rows of the accounts ids until tx ends, in id
// order (FOR UPDATE on PostgreSQL; SQLite serializes writers anyway): what
// changes an account's billing state takes the lock first, as a batch of
// Stripe events does (LoadBilling), so that neither waits on the other
// holding a lock it needs. Unknown ids are skipped.
func (tx *Tx) LockAccounts(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	lock := ""
	if tx.tx.DriverName() == DialectPostgres {
		lock = ` FOR UPDATE`
	}
	q, args, err := sqlx.In(`SELECT id FROM accounts WHERE id IN (?) ORDER BY id`+lock, ids)
	if err != nil {
		return err
	}
	var got []string
	if err := tx.tx.SelectContext(ctx, &got, tx.rebind(q), args...); err != nil {
		return fmt.Errorf("store: locking %s: %w", what("account", ids...), err)
	}
	return nil
}
