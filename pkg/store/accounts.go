package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Account statuses. Billing derives them from the account's subscriptions
// and dunning; the other domains read them (retention deletes nothing for
// a suspended account).
const (
	// AccountStatusActive is the status of an account that may use the
	// platform; it is every new account's status.
	AccountStatusActive = "active"
	// AccountStatusPastDue: a payment failed and the grace period runs.
	AccountStatusPastDue = "past_due"
	// AccountStatusSuspended: the grace period ended unpaid; retention
	// deletes nothing until a payment restores the account.
	AccountStatusSuspended = "suspended"
	// AccountStatusPaused: no subscription grants a tier and one of
	// them is paused.
	AccountStatusPaused = "paused"
	// AccountStatusCanceled: the account's subscriptions ended, or its
	// Stripe customer was deleted.
	AccountStatusCanceled = "canceled"
)

// AccountIDPrefix starts every account id ("acc_…").
const AccountIDPrefix = "acc_"

// Account is a tenant: a customer of Levqor, linked to its Stripe customer.
// Its JSON form is the product API's representation of an account.
type Account struct {
	// ID is "acc_" followed by random characters.
	ID string `json:"id"`
	// Name is the customer's name as they gave it.
	Name string `json:"name"`
	// ContactEmail is where Levqor writes to the customer.
	ContactEmail string `json:"contact_email"`
	// StripeCustomerID is the Stripe customer that Stripe bills.
	StripeCustomerID string `json:"stripe_customer_id"`
	// Tier is the service tier; nil until billing sets it from a
	// subscription.
	Tier *string `json:"tier"`
	// Status is one of the AccountStatus* constants: AccountStatusActive
	// when created, then what billing sets.
	Status string `json:"status"`
	// Entitlements is what the tier grants (retention, quotas, SLA), as
	// billing writes it; {} until then.
	Entitlements json.RawMessage `json:"entitlements"`
	// Suspension is an operator's suspension of the account, nil when
	// there is none. While it holds the status is suspended whatever
	// billing says; billing's own suspension (dunning) shows in Status
	// and the account's billing, not here.
	Suspension *AccountSuspension `json:"suspension"`
	// CreatedAt and UpdatedAt are set by the store; zero means now.
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

type accountRow struct {
	ID               string         `db:"id"`
	Name             string         `db:"name"`
	ContactEmail     string         `db:"contact_email"`
	StripeCustomerID string         `db:"stripe_customer_id"`
	Tier             sql.NullString `db:"tier"`
	Status           string         `db:"status"`
	Entitlements     []byte         `db:"entitlements"`
	CreatedAt        time.Time      `db:"created_at"`
	UpdatedAt        time.Time      `db:"updated_at"`
	SuspensionReason sql.NullString `db:"suspension_reason"`
	SuspendedBy      sql.NullString `db:"suspended_by"`
	SuspendedAt      sql.NullTime   `db:"suspended_at"`
}

// AccountSuspension is an operator's suspension of an account: Levqor
// staff stopping its service (abuse, fraud, a legal request). Its people
// may still read, pay, talk to support, manage notifications and ask for
// an erasure; nothing else changes, no backup runs, and nothing is
// deleted (retention, erasure) until an operator lifts it.
type AccountSuspension struct {
	// Reason is the operator's, shown to the account's people.
	Reason string `json:"reason"`
	// By is the actor who suspended it ("user:<id>", "key:<id>"); the
	// API shows it to operators only.
	By string `json:"by,omitempty"`
	// At is when.
	At time.Time `json:"at"`
}

func (r accountRow) account() Account {
	a := Account{
		ID:               r.ID,
		Name:             r.Name,
		ContactEmail:     r.ContactEmail,
		StripeCustomerID: r.StripeCustomerID,
		Status:           r.Status,
		Entitlements:     json.RawMessage(r.Entitlements),
		CreatedAt:        r.CreatedAt.UTC(),
		UpdatedAt:        r.UpdatedAt.UTC(),
	}
	if r.Tier.Valid {
		t := r.Tier.String
		a.Tier = &t
	}
	if len(a.Entitlements) == 0 {
		a.Entitlements = json.RawMessage("{}")
	}
	if r.SuspendedAt.Valid {
		a.Suspension = &AccountSuspension{Reason: r.SuspensionReason.String, By: r.SuspendedBy.String, At: r.SuspendedAt.Time.UTC()}
	}
	return a
}

// accountInsertColumns are the columns a new account sets; accountColumns
// are those an account is read from.
const (
	accountInsertColumns = `id, name, contact_email, stripe_customer_id, tier, status, entitlements, created_at, updated_at`
	accountColumns       = accountInsertColumns + `, suspension_reason, suspended_by, suspended_at`
)

const insertAccountSQL = `INSERT INTO accounts (` + accountInsertColumns + `)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO NOTHING`

// InsertAccount adds a within tx and reports whether it was new; an account
// with the same id is left as it is. Status defaults to
// AccountStatusActive, Entitlements to {}, times to now.
func (tx *Tx) InsertAccount(ctx context.Context, a Account) (inserted bool, err error) {
	if a.ID == "" || a.Name == "" || a.ContactEmail == "" || a.StripeCustomerID == "" {
		return false, fmt.Errorf("store: inserting account: id, name, contact email and stripe customer id are required")
	}
	if a.Status == "" {
		a.Status = AccountStatusActive
	}
	ent := "{}"
	if len(a.Entitlements) > 0 {
		if !json.Valid(a.Entitlements) {
			return false, fmt.Errorf("store: inserting account %s: entitlements are not valid JSON", a.ID)
		}
		ent = string(a.Entitlements)
	}
	created := ts(orNow(a.CreatedAt))
	updated := created
	if !a.UpdatedAt.IsZero() {
		updated = ts(a.UpdatedAt)
	}
	var tier any
	if a.Tier != nil {
		tier = *a.Tier
	}
	res, err := tx.tx.ExecContext(ctx, tx.rebind(insertAccountSQL),
		a.ID, a.Name, a.ContactEmail, a.StripeCustomerID, tier, a.Status, ent, created, updated)
	if err != nil {
		return false, fmt.Errorf("store: inserting account %s: %w", a.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: inserting account %s: %w", a.ID, err)
	}
	return n == 1, nil
}

const getAccountSQL = `SELECT ` + accountColumns + ` FROM accounts WHERE id = ?`

// GetAccount returns the account id, or an error wrapping ErrNotFound.
func (q Querier) GetAccount(ctx context.Context, id string) (*Account, error) {
	var r accountRow
	err := q.db.GetContext(ctx, &r, q.rebind(getAccountSQL), id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: account %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: getting account %s: %w", id, err)
	}
	a := r.account()
	return &a, nil
}

// AccountChanges are the fields of an account a customer may change; nil
// fields stay as they are.
type AccountChanges struct {
	// ID is the account to change.
	ID string
	// Name and ContactEmail replace the current values when set.
	Name         *string
	ContactEmail *string
	// UpdatedAt is the time of the change; zero means now.
	UpdatedAt time.Time
}

const updateAccountSQL = `UPDATE accounts SET
	name = COALESCE(?, name),
	contact_email = COALESCE(?, contact_email),
	updated_at = ?
WHERE id = ?`

// UpdateAccount applies c within tx and returns the account as it now is,
// or an error wrapping ErrNotFound.
func (tx *Tx) UpdateAccount(ctx context.Context, c AccountChanges) (*Account, error) {
	var name, email any
	if c.Name != nil {
		name = *c.Name
	}
	if c.ContactEmail != nil {
		email = *c.ContactEmail
	}
	res, err := tx.tx.ExecContext(ctx, tx.rebind(updateAccountSQL), name, email, ts(orNow(c.UpdatedAt)), c.ID)
	if err != nil {
		return nil, fmt.Errorf("store: updating account %s: %w", c.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, fmt.Errorf("store: updating account %s: %w", c.ID, err)
	} else if n == 0 {
		return nil, fmt.Errorf("store: account %s: %w", c.ID, ErrNotFound)
	}
	return tx.GetAccount(ctx, c.ID)
}

// SetAccountSuspension records an operator's suspension of account id
// within tx, or lifts it (s nil). The status is billing's to derive from
// it (billing.recompute), in the same transaction.
func (tx *Tx) SetAccountSuspension(ctx context.Context, id string, s *AccountSuspension, at time.Time) error {
	var reason, by, since any
	if s != nil {
		if s.Reason == "" || s.By == "" {
			return fmt.Errorf("store: suspending account %s: a reason and who suspends it are required", id)
		}
		reason, by, since = s.Reason, s.By, ts(orNow(s.At))
	}
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE accounts SET suspension_reason = ?, suspended_by = ?, suspended_at = ?, updated_at = ? WHERE id = ?`),
		reason, by, since, ts(orNow(at)), id)
	if err != nil {
		return fmt.Errorf("store: setting the suspension of account %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: setting the suspension of account %s: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("store: account %s: %w", id, ErrNotFound)
	}
	return nil
}

// AccountCursor is the position after which a page of accounts starts: the
// last account of the previous page.
type AccountCursor struct {
	CreatedAt time.Time
	ID        string
}

// ListAccountsParams selects a page of accounts, newest first.
type ListAccountsParams struct {
	// Limit is the most accounts to return; required.
	Limit int
	// After, when set, starts the page after that account.
	After *AccountCursor
}

const listAccountsSQL = `SELECT ` + accountColumns + ` FROM accounts
ORDER BY created_at DESC, id DESC
LIMIT ?`

const listAccountsAfterSQL = `SELECT ` + accountColumns + ` FROM accounts
WHERE created_at < ? OR (created_at = ? AND id < ?)
ORDER BY created_at DESC, id DESC
LIMIT ?`

// ListAccounts returns up to p.Limit accounts, newest first, starting after
// p.After. Accounts created while a client pages through the list appear
// on no page of that walk, and none is returned twice.
func (s *Store) ListAccounts(ctx context.Context, p ListAccountsParams) ([]Account, error) {
	if p.Limit <= 0 {
		return nil, fmt.Errorf("store: listing accounts: limit must be positive, got %d", p.Limit)
	}
	var rows []accountRow
	var err error
	if p.After == nil {
		err = s.db.SelectContext(ctx, &rows, s.rebind(listAccountsSQL), p.Limit)
	} else {
		at := ts(p.After.CreatedAt)
		err = s.db.SelectContext(ctx, &rows, s.rebind(listAccountsAfterSQL), at, at, p.After.ID, p.Limit)
	}
	if err != nil {
		return nil, fmt.Errorf("store: listing accounts: %w", err)
	}
	out := make([]Account, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.account())
	}
	return out, nil
}
