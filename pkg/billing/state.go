package billing

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/levqor/levqor/pkg/store"
)

// state is what applying a Stripe event, a tick or a repair reads and
// writes. A transaction is one (txState: each call is a statement); a
// batch's view of the database is the other (batchState: reads come from
// what the batch loaded up front, writes are kept and written when the
// batch ends, one statement a table).
type state interface {
	GetAccount(ctx context.Context, id string) (*store.Account, error)
	AccountByStripeCustomer(ctx context.Context, customer string) (*store.Account, error)
	AccountSubscriptions(ctx context.Context, accountID string) ([]store.Subscription, error)
	SetAccountBilling(ctx context.Context, b store.AccountBilling) error
	GetSubscription(ctx context.Context, id string) (*store.Subscription, error)
	PutSubscription(ctx context.Context, s store.Subscription) error
	GetInvoice(ctx context.Context, id string) (*store.Invoice, error)
	PutInvoice(ctx context.Context, i store.Invoice) error
	GetCharge(ctx context.Context, id string) (*store.Charge, error)
	PutCharge(ctx context.Context, c store.Charge, at time.Time) error
	GetDunning(ctx context.Context, accountID string) (*store.Dunning, error)
	PutDunning(ctx context.Context, d store.Dunning, at time.Time) error
	InsertDFYPurchase(ctx context.Context, p store.DFYPurchase) (bool, error)
	EnqueueOutbox(ctx context.Context, m store.OutboxMessage) (int64, error)
	// afterCommit runs fn once the writes so far are committed (logs and
	// metrics that must not count what rolls back). txState runs fn at
	// once: its callers are a transaction a message (and the forced
	// replays' savepoints), where a failure is logged as such anyway.
	afterCommit(fn func())
}

// txState is a transaction as a state: every call is a statement.
type txState struct{ *store.Tx }

func (txState) afterCommit(fn func()) { fn() }

// batchState is the database as one batch of Stripe events sees it: rows
// loaded in a few statements before the first event, changed in memory
// event by event, written back in one statement a table when the batch
// ends. An event that fails has its changes undone (undo, to the mark
// taken before it), as a savepoint would, without the round trips.
//
// Rows the batch did not load are read when first asked for (a key no
// event named up front: a dispute's charge's account); reads have no
// effects to undo. Such an account is locked late, outside the id order
// of the batch's first load: should that ever deadlock with another
// batch, PostgreSQL fails one of them, which then runs a message at a
// time. A statement that fails leaves the transaction unusable:
// failed holds its error and the batch ends with it.
type batchState struct {
	tx *store.Tx

	accounts map[string]*store.Account // nil: known absent
	// byCustomer maps a customer whose accounts were loaded to the first
	// one created ("" when there is none).
	byCustomer map[string]string
	subs       map[string]*store.Subscription // nil: known absent
	invoices   map[string]*store.Invoice
	charges    map[string]*store.Charge
	dunning    map[string]*store.Dunning // by account id; nil: known absent
	dfy        map[string]bool           // session:package → recorded

	dirtySubs, dirtyInvoices, dirtyCharges, dirtyDunning, dirtyAccounts map[string]bool
	// uncanceled holds the accounts set to a status other than canceled
	// in this batch (store.AccountBilling.Uncanceled).
	uncanceled map[string]bool
	newDFY     []store.DFYPurchase
	outbox     []store.OutboxMessage
	ledger     []store.StripeEvent
	onCommit   []func()

	undo   []func()
	failed error
}

func newBatchState(tx *store.Tx) *batchState {
	return &batchState{
		tx: tx, accounts: map[string]*store.Account{}, byCustomer: map[string]string{},
		subs: map[string]*store.Subscription{}, invoices: map[string]*store.Invoice{}, charges: map[string]*store.Charge{},
		dunning: map[string]*store.Dunning{}, dfy: map[string]bool{},
		dirtySubs: map[string]bool{}, dirtyInvoices: map[string]bool{}, dirtyCharges: map[string]bool{},
		dirtyDunning: map[string]bool{}, dirtyAccounts: map[string]bool{}, uncanceled: map[string]bool{},
	}
}

// mark is the point undo returns to.
func (b *batchState) mark() int { return len(b.undo) }

// undoTo undoes every change made since mark, newest first.
func (b *batchState) undoTo(mark int) {
	for i := len(b.undo) - 1; i >= mark; i-- {
		b.undo[i]()
	}
	b.undo = b.undo[:mark]
}

// set sets m[k] = v, undoably.
func set[K comparable, V any](b *batchState, m map[K]V, k K, v V) {
	old, had := m[k]
	b.undo = append(b.undo, func() {
		if had {
			m[k] = old
		} else {
			delete(m, k)
		}
	})
	m[k] = v
}

// push appends v to *s, undoably.
func push[T any](b *batchState, s *[]T, v T) {
	n := len(*s)
	*s = append(*s, v)
	b.undo = append(b.undo, func() { clear((*s)[n:]); *s = (*s)[:n] })
}

// load reads what k names into the state; rows the batch holds already
// (perhaps changed) are kept.
func (b *batchState) load(ctx context.Context, k store.BillingKeys) error {
	if b.failed != nil {
		return b.failed
	}
	rows, err := b.tx.LoadBilling(ctx, k)
	if err != nil {
		b.failed = err
		return err
	}
	for _, id := range k.Accounts {
		keepOrAbsent(b.accounts, id)
	}
	for i := range rows.Accounts {
		keep(b.accounts, rows.Accounts[i].ID, &rows.Accounts[i])
	}
	for _, c := range k.Customers {
		if _, ok := b.byCustomer[c]; ok {
			continue
		}
		first := ""
		for i := range rows.Accounts {
			a := &rows.Accounts[i]
			if a.StripeCustomerID != c {
				continue
			}
			if f := b.accounts[first]; first == "" || a.CreatedAt.Before(f.CreatedAt) || a.CreatedAt.Equal(f.CreatedAt) && a.ID < first {
				first = a.ID
			}
		}
		b.byCustomer[c] = first
	}
	for _, id := range k.Subscriptions {
		keepOrAbsent(b.subs, id)
	}
	for i := range rows.Subscriptions {
		keep(b.subs, rows.Subscriptions[i].ID, &rows.Subscriptions[i])
	}
	for _, id := range k.Invoices {
		keepOrAbsent(b.invoices, id)
	}
	for i := range rows.Invoices {
		keep(b.invoices, rows.Invoices[i].ID, &rows.Invoices[i])
	}
	for _, id := range k.Charges {
		keepOrAbsent(b.charges, id)
	}
	for i := range rows.Charges {
		keep(b.charges, rows.Charges[i].ID, &rows.Charges[i])
	}
	// A loaded account's dunning row is loaded too, or known absent.
	for i := range rows.Accounts {
		keepOrAbsent(b.dunning, rows.Accounts[i].ID)
	}
	for i := range rows.Dunning {
		keep(b.dunning, rows.Dunning[i].AccountID, &rows.Dunning[i])
	}
	return nil
}

// keepOrAbsent records id as absent unless m holds it; keep then fills in
// the rows that exist.
func keepOrAbsent[V any](m map[string]*V, id string) {
	if _, ok := m[id]; !ok {
		m[id] = nil
	}
}

// keep puts a loaded row in m unless m holds one (the batch's, perhaps
// changed) or the id was known absent before this load.
func keep[V any](m map[string]*V, id string, v *V) {
	if cur, ok := m[id]; !ok || cur == nil {
		m[id] = v
	}
}

func clone[V any](v *V) *V {
	c := *v
	return &c
}

// row returns m's row id, loading it when the batch has not: nil and
// ErrNotFound when it does not exist.
func row[V any](ctx context.Context, b *batchState, m map[string]*V, id string, k store.BillingKeys, what string) (*V, error) {
	v, ok := m[id]
	if !ok {
		if err := b.load(ctx, k); err != nil {
			return nil, err
		}
		v = m[id]
	}
	if v == nil {
		return nil, notFound(what, id)
	}
	return clone(v), nil
}

func notFound(what, id string) error {
	return &notFoundError{what: what, id: id}
}

type notFoundError struct{ what, id string }

func (e *notFoundError) Error() string { return "billing: " + e.what + " " + e.id + " not found" }
func (e *notFoundError) Unwrap() error { return store.ErrNotFound }

func (b *batchState) GetAccount(ctx context.Context, id string) (*store.Account, error) {
	return row(ctx, b, b.accounts, id, store.BillingKeys{Accounts: []string{id}}, "account")
}

func (b *batchState) AccountByStripeCustomer(ctx context.Context, customer string) (*store.Account, error) {
	id, ok := b.byCustomer[customer]
	if !ok {
		if err := b.load(ctx, store.BillingKeys{Customers: []string{customer}}); err != nil {
			return nil, err
		}
		id = b.byCustomer[customer]
	}
	if id == "" {
		return nil, notFound("account of customer", customer)
	}
	return clone(b.accounts[id]), nil
}

// AccountSubscriptions lists the account's subscriptions as the batch
// holds them: loading an account loads all of its subscriptions.
func (b *batchState) AccountSubscriptions(ctx context.Context, accountID string) ([]store.Subscription, error) {
	if _, err := b.GetAccount(ctx, accountID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	var out []store.Subscription
	for _, s := range b.subs {
		if s != nil && s.AccountID == accountID {
			out = append(out, *s)
		}
	}
	slices.SortFunc(out, func(x, y store.Subscription) int {
		if c := y.Source.Created.Compare(x.Source.Created); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	return out, nil
}

func (b *batchState) SetAccountBilling(ctx context.Context, ab store.AccountBilling) error {
	a, err := b.GetAccount(ctx, ab.ID)
	if err != nil {
		return err
	}
	a.Tier, a.Status, a.Entitlements = ab.Tier, ab.Status, ab.Entitlements
	if len(a.Entitlements) == 0 {
		a.Entitlements = []byte("{}")
	}
	set(b, b.accounts, a.ID, a)
	set(b, b.dirtyAccounts, a.ID, true)
	if a.Status != store.AccountStatusCanceled {
		set(b, b.uncanceled, a.ID, true)
	}
	return nil
}

func (b *batchState) GetSubscription(ctx context.Context, id string) (*store.Subscription, error) {
	return row(ctx, b, b.subs, id, store.BillingKeys{Subscriptions: []string{id}}, "subscription")
}

func (b *batchState) PutSubscription(_ context.Context, s store.Subscription) error {
	set(b, b.subs, s.ID, &s)
	set(b, b.dirtySubs, s.ID, true)
	return nil
}

func (b *batchState) GetInvoice(ctx context.Context, id string) (*store.Invoice, error) {
	return row(ctx, b, b.invoices, id, store.BillingKeys{Invoices: []string{id}}, "invoice")
}

func (b *batchState) PutInvoice(_ context.Context, i store.Invoice) error {
	set(b, b.invoices, i.ID, &i)
	set(b, b.dirtyInvoices, i.ID, true)
	return nil
}

func (b *batchState) GetCharge(ctx context.Context, id string) (*store.Charge, error) {
	return row(ctx, b, b.charges, id, store.BillingKeys{Charges: []string{id}}, "charge")
}

// PutCharge keeps c; its updated_at is the batch's write (billing's
// events always pass a zero at).
func (b *batchState) PutCharge(_ context.Context, c store.Charge, _ time.Time) error {
	set(b, b.charges, c.ID, &c)
	set(b, b.dirtyCharges, c.ID, true)
	return nil
}

func (b *batchState) GetDunning(ctx context.Context, accountID string) (*store.Dunning, error) {
	return row(ctx, b, b.dunning, accountID, store.BillingKeys{Accounts: []string{accountID}}, "dunning of")
}

// PutDunning keeps d; its updated_at is the batch's write (billing's
// events always pass a zero at).
func (b *batchState) PutDunning(_ context.Context, d store.Dunning, _ time.Time) error {
	set(b, b.dunning, d.AccountID, &d)
	set(b, b.dirtyDunning, d.AccountID, true)
	return nil
}

func (b *batchState) InsertDFYPurchase(ctx context.Context, p store.DFYPurchase) (bool, error) {
	key := p.CheckoutSessionID + ":" + p.Package
	recorded, ok := b.dfy[key]
	if !ok {
		var err error
		if recorded, err = b.tx.DFYPurchaseRecorded(ctx, p.CheckoutSessionID, p.Package); err != nil {
			b.failed = err
			return false, err
		}
		b.dfy[key] = recorded // a read: nothing to undo
	}
	if recorded {
		return false, nil
	}
	set(b, b.dfy, key, true)
	push(b, &b.newDFY, p)
	return true, nil
}

func (b *batchState) EnqueueOutbox(ctx context.Context, m store.OutboxMessage) (int64, error) {
	push(b, &b.outbox, store.TraceOutbox(ctx, m))
	return 0, nil
}

func (b *batchState) afterCommit(fn func()) { push(b, &b.onCommit, fn) }

// record adds an event's ledger row.
func (b *batchState) record(e store.StripeEvent) { push(b, &b.ledger, e) }

// flush writes what the batch changed: one statement a table, in an order
// that takes row locks the same way in every batch (ids sorted).
func (b *batchState) flush(ctx context.Context) error {
	if b.failed != nil {
		return b.failed
	}
	if _, err := b.tx.InsertStripeEvents(ctx, b.ledger); err != nil {
		// Worded as HandleStripe's: a batch that fails is run again a
		// message at a time, and operators see this for the one that
		// fails alone.
		if len(b.ledger) == 1 {
			return recordingFailed(b.ledger[0].ID, err)
		}
		return fmt.Errorf("recording %d stripe events: %w", len(b.ledger), err)
	}
	if err := b.tx.PutSubscriptions(ctx, dirty(b.subs, b.dirtySubs)); err != nil {
		return err
	}
	if err := b.tx.PutInvoices(ctx, dirty(b.invoices, b.dirtyInvoices)); err != nil {
		return err
	}
	if err := b.tx.PutCharges(ctx, dirty(b.charges, b.dirtyCharges), time.Time{}); err != nil {
		return err
	}
	if err := b.tx.PutDunnings(ctx, dirty(b.dunning, b.dirtyDunning), time.Time{}); err != nil {
		return err
	}
	var billing []store.AccountBilling
	for _, a := range dirty(b.accounts, b.dirtyAccounts) {
		billing = append(billing, store.AccountBilling{ID: a.ID, Tier: a.Tier, Status: a.Status, Entitlements: a.Entitlements,
			Uncanceled: b.uncanceled[a.ID]})
	}
	if err := b.tx.SetAccountsBilling(ctx, billing); err != nil {
		return err
	}
	if n, err := b.tx.InsertDFYPurchases(ctx, b.newDFY); err != nil {
		return err
	} else if n != int64(len(b.newDFY)) {
		// Recorded by another transaction since this batch looked: the
		// batch's DFYPurchased events would be duplicates. Undone, the
		// events are applied again one by one.
		return errors.New("billing: a Done-For-You purchase was recorded concurrently; the batch is applied again event by event")
	}
	if _, err := b.tx.EnqueueOutboxes(ctx, b.outbox); err != nil {
		return err
	}
	return nil
}

// dirty lists the changed rows of m, by id.
func dirty[V any](m map[string]*V, changed map[string]bool) []V {
	out := make([]V, 0, len(changed))
	for _, id := range slices.Sorted(maps.Keys(changed)) {
		if v := m[id]; v != nil {
			out = append(out, *v)
		}
	}
	return out
}
