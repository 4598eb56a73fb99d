package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Erasure states: scheduled (waiting for its cooling-off to end),
// blocked (a legal hold stops it; it is tried again), erasing (begun:
// the snapshots are being purged; nothing new is recorded or held),
// canceled (by its owner while scheduled, or the account came back),
// done (the data is gone; the report says what).
const (
	ErasureScheduled = "scheduled"
	ErasureBlocked   = "blocked"
	ErasureErasing   = "erasing"
	ErasureCanceled  = "canceled"
	ErasureDone      = "done"
)

// Erasure origins.
const (
	ErasureRequested   = "requested"
	ErasureOffboarding = "offboarding"
)

// ErasureReport counts what an erasure deleted or scrubbed.
type ErasureReport struct {
	Snapshots int   `json:"snapshots"`
	Blobs     int   `json:"blobs"`
	BlobBytes int64 `json:"blob_bytes"`
	// LockedBlobs are repository objects locked until a later date
	// (LEVQOR_BLOB_LOCK_DAYS): unreadable once the data key is destroyed,
	// deleted by blob.gc when their lock runs out.
	LockedBlobs   int `json:"locked_blobs,omitempty"`
	Sources       int `json:"sources"`
	APIKeys       int `json:"api_keys_revoked"`
	Notifications int `json:"notifications"`
	Endpoints     int `json:"webhook_endpoints"`
	Tickets       int `json:"tickets"`
	Messages      int `json:"ticket_messages"`
	// Users are the account's people (console sign-ins), deleted with
	// their sessions and pending invitations.
	Users int `json:"users"`
	// DataKeys is 1 when the account's data key was destroyed: nothing
	// sealed under it (its v2 backups, wherever a copy lies) can be read.
	DataKeys int `json:"data_keys_destroyed"`
	// Kept says what stays, as the law requires, without personal data.
	Kept []string `json:"kept"`
}

// Erasure is a request to erase an account's data.
type Erasure struct {
	// ID is "era_…".
	ID           string    `json:"id"`
	AccountID    string    `json:"account_id"`
	Origin       string    `json:"origin"`
	RequestedBy  string    `json:"requested_by"`
	RequestedAt  time.Time `json:"requested_at"`
	ScheduledFor time.Time `json:"scheduled_for"`
	Status       string    `json:"status"`
	// StatusReason says why it is blocked or was canceled.
	StatusReason string         `json:"status_reason,omitempty"`
	Report       *ErasureReport `json:"report,omitempty"`
	CompletedAt  *time.Time     `json:"completed_at,omitempty"`
	UpdatedAt    time.Time      `json:"updated_at"`
}

type erasureRow struct {
	ID           string       `db:"id"`
	AccountID    string       `db:"account_id"`
	Origin       string       `db:"origin"`
	RequestedBy  string       `db:"requested_by"`
	RequestedAt  time.Time    `db:"requested_at"`
	ScheduledFor time.Time    `db:"scheduled_for"`
	Status       string       `db:"status"`
	StatusReason string       `db:"status_reason"`
	Report       string       `db:"report"`
	CompletedAt  sql.NullTime `db:"completed_at"`
	UpdatedAt    time.Time    `db:"updated_at"`
}

func (r erasureRow) erasure() Erasure {
	e := Erasure{ID: r.ID, AccountID: r.AccountID, Origin: r.Origin, RequestedBy: r.RequestedBy, RequestedAt: r.RequestedAt.UTC(),
		ScheduledFor: r.ScheduledFor.UTC(), Status: r.Status, StatusReason: r.StatusReason, CompletedAt: fromNull(r.CompletedAt),
		UpdatedAt: r.UpdatedAt.UTC()}
	if r.Status == ErasureDone {
		var rep ErasureReport
		if json.Unmarshal([]byte(r.Report), &rep) == nil {
			e.Report = &rep
		}
	}
	return e
}

const erasureColumns = `id, account_id, origin, requested_by, requested_at, scheduled_for, status, status_reason, report, completed_at, updated_at`

// InsertErasure records e within tx. It reports false, changing nothing,
// when the account has an open erasure (scheduled or blocked) already.
func (tx *Tx) InsertErasure(ctx context.Context, e Erasure) (bool, error) {
	at := ts(orNow(e.RequestedAt))
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`INSERT INTO account_erasures
(id, account_id, origin, requested_by, requested_at, scheduled_for, status, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING`), e.ID, e.AccountID, e.Origin, e.RequestedBy, at, ts(e.ScheduledFor), ErasureScheduled, at)
	if err != nil {
		return false, fmt.Errorf("store: recording the erasure of %s: %w", e.AccountID, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// LatestErasure returns the account's newest erasure, or ErrNotFound.
func (q Querier) LatestErasure(ctx context.Context, accountID string) (*Erasure, error) {
	var r erasureRow
	err := q.db.GetContext(ctx, &r, q.rebind(`SELECT `+erasureColumns+` FROM account_erasures
WHERE account_id = ? ORDER BY requested_at DESC, id DESC LIMIT 1`), accountID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: erasure of %s: %w", accountID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: reading the erasure of %s: %w", accountID, err)
	}
	e := r.erasure()
	return &e, nil
}

// ErasuresToRemind returns the requested erasures still scheduled, not
// reminded of yet, due after from and at or before to.
func (s *Store) ErasuresToRemind(ctx context.Context, from, to time.Time) ([]Erasure, error) {
	var rows []erasureRow
	if err := s.db.SelectContext(ctx, &rows, s.rebind(`SELECT `+erasureColumns+` FROM account_erasures
WHERE status = ? AND origin = ? AND reminded_at IS NULL AND scheduled_for > ? AND scheduled_for <= ? ORDER BY scheduled_for, id`),
		ErasureScheduled, ErasureRequested, ts(from), ts(to)); err != nil {
		return nil, fmt.Errorf("store: listing erasures to remind: %w", err)
	}
	out := make([]Erasure, len(rows))
	for i, r := range rows {
		out[i] = r.erasure()
	}
	return out, nil
}

// MarkErasureReminded records, within tx, that the erasure's owner was
// reminded; false when it was already, or is no longer scheduled.
func (tx *Tx) MarkErasureReminded(ctx context.Context, id string, at time.Time) (bool, error) {
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE account_erasures SET reminded_at = ? WHERE id = ? AND reminded_at IS NULL AND status = ?`),
		ts(orNow(at)), id, ErasureScheduled)
	if err != nil {
		return false, fmt.Errorf("store: marking erasure %s reminded: %w", id, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// DueErasures returns the open erasures whose time has come by at,
// oldest first.
func (s *Store) DueErasures(ctx context.Context, at time.Time) ([]Erasure, error) {
	var rows []erasureRow
	if err := s.db.SelectContext(ctx, &rows, s.rebind(`SELECT `+erasureColumns+` FROM account_erasures
WHERE status IN (?, ?, ?) AND scheduled_for <= ? ORDER BY scheduled_for, id`), ErasureScheduled, ErasureBlocked, ErasureErasing, ts(at)); err != nil {
		return nil, fmt.Errorf("store: listing due erasures: %w", err)
	}
	out := make([]Erasure, len(rows))
	for i, r := range rows {
		out[i] = r.erasure()
	}
	return out, nil
}

// SetErasure moves erasure id from one of from to status, with its
// reason, report (for done) and time; it reports whether it moved.
func (tx *Tx) SetErasure(ctx context.Context, id, status, reason string, report *ErasureReport, at time.Time, from ...string) (bool, error) {
	rep := "{}"
	var completed any
	if report != nil {
		b, err := json.Marshal(report)
		if err != nil {
			return false, err
		}
		rep, completed = string(b), ts(orNow(at))
	}
	query := `UPDATE account_erasures SET status = ?, status_reason = ?, report = ?, completed_at = ?, updated_at = ? WHERE id = ? AND status IN (`
	args := []any{status, reason, rep, completed, ts(orNow(at)), id}
	for i, f := range from {
		if i > 0 {
			query += ", "
		}
		query += "?"
		args = append(args, f)
	}
	res, err := tx.tx.ExecContext(ctx, tx.rebind(query+`)`), args...)
	if err != nil {
		return false, fmt.Errorf("store: updating erasure %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// CanceledAccounts returns the accounts canceled (by billing) before
// before, not erased and with no open erasure: those offboarding erases.
// An account canceled before canceled_at was kept counts from its last
// change.
func (s *Store) CanceledAccounts(ctx context.Context, before time.Time) ([]string, error) {
	var ids []string
	err := s.db.SelectContext(ctx, &ids, s.rebind(`SELECT id FROM accounts a WHERE status = ? AND COALESCE(canceled_at, updated_at) < ? AND erased_at IS NULL
AND NOT EXISTS (SELECT 1 FROM account_erasures e WHERE e.account_id = a.id AND e.status IN (?, ?, ?)) ORDER BY id`),
		AccountStatusCanceled, ts(before), ErasureScheduled, ErasureBlocked, ErasureErasing)
	if err != nil {
		return nil, fmt.Errorf("store: listing canceled accounts: %w", err)
	}
	return ids, nil
}

// AccountErasing reports whether the account's data is being, or has
// been, erased: nothing may be recorded or held for it any more.
func (q Querier) AccountErasing(ctx context.Context, accountID string) (bool, error) {
	var n int
	err := q.db.GetContext(ctx, &n, q.rebind(`SELECT COUNT(*) FROM accounts WHERE id = ? AND (erased_at IS NOT NULL
OR EXISTS (SELECT 1 FROM account_erasures WHERE account_id = ? AND status = ?))`), accountID, accountID, ErasureErasing)
	if err != nil {
		return false, fmt.Errorf("store: reading the erasure state of %s: %w", accountID, err)
	}
	return n > 0, nil
}

// BeginErasure moves, within tx, the account's snapshots not yet purged
// to purging, and erasure id to erasing: from then on nothing new is
// recorded or held for the account, and the erasure resumes where it
// stopped if it is interrupted.
func (tx *Tx) BeginErasure(ctx context.Context, id, accountID string, at time.Time) error {
	at = ts(orNow(at))
	if _, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE backup_snapshots SET state = ?, updated_at = ? WHERE account_id = ? AND state IN (?, ?)`),
		SnapshotPurging, at, accountID, SnapshotActive, SnapshotTrash); err != nil {
		return fmt.Errorf("store: beginning the erasure of %s: %w", accountID, err)
	}
	if _, err := tx.SetErasure(ctx, id, ErasureErasing, "", nil, at, ErasureScheduled, ErasureBlocked); err != nil {
		return err
	}
	return nil
}

// BringErasureForward makes the account's scheduled erasure due at due,
// if it was due later.
func (tx *Tx) BringErasureForward(ctx context.Context, accountID string, due time.Time) error {
	_, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE account_erasures SET scheduled_for = ?, updated_at = ?
WHERE account_id = ? AND status = ? AND scheduled_for > ?`), ts(due), ts(time.Now()), accountID, ErasureScheduled, ts(due))
	if err != nil {
		return fmt.Errorf("store: bringing the erasure of %s forward: %w", accountID, err)
	}
	return nil
}

// AccountHolds returns the account's active legal holds.
func (q Querier) AccountHolds(ctx context.Context, accountID string) ([]LegalHold, error) {
	var rows []holdRow
	if err := q.db.SelectContext(ctx, &rows, q.rebind(`SELECT `+holdColumns+` FROM legal_holds
WHERE account_id = ? AND released_at IS NULL ORDER BY placed_at, id`), accountID); err != nil {
		return nil, fmt.Errorf("store: listing holds of %s: %w", accountID, err)
	}
	out := make([]LegalHold, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.hold())
	}
	return out, nil
}

// BlobsOfAccount returns the blobs of the account's snapshots not
// purged: what an erasure deletes first.
func (s *Store) BlobsOfAccount(ctx context.Context, accountID string) ([]Snapshot, error) {
	var rows []snapshotRow
	if err := s.db.SelectContext(ctx, &rows, s.rebind(`SELECT `+snapshotColumns+` FROM backup_snapshots
WHERE account_id = ? AND state <> ? ORDER BY id`), accountID, SnapshotPurged); err != nil {
		return nil, fmt.Errorf("store: listing snapshots of %s: %w", accountID, err)
	}
	out := make([]Snapshot, 0, len(rows))
	for _, r := range rows {
		snap, err := r.snapshot()
		if err != nil {
			return nil, err
		}
		out = append(out, snap)
	}
	return out, nil
}

// ErasedAccountName is what an erased account is called.
const ErasedAccountName = "Erased account"

// EraseAccountData removes, within tx, the account's personal data and
// what its backups described, once their blobs are deleted: snapshots are
// purged (their manifests and tags dropped), sources lose their names and
// configuration (DSNs), API keys are revoked, its users deleted, notifications and webhook
// endpoints deleted, ticket subjects and messages blanked, and the
// account keeps only its id, Stripe customer and billing history,
// renamed, without contact, and marked erased. Invoices, the billing
// ledger and the audit trails stay, as the law requires. It fills the
// counts of rep it can see.
func (tx *Tx) EraseAccountData(ctx context.Context, accountID string, at time.Time, rep *ErasureReport) error {
	at = ts(orNow(at))
	steps := []struct {
		count *int
		query string
		args  []any
	}{
		{&rep.Snapshots, `UPDATE backup_snapshots SET state = ?, purged_at = ?, manifest = NULL, tags = '[]', updated_at = ? WHERE account_id = ? AND state <> ?`,
			[]any{SnapshotPurged, at, at, accountID, SnapshotPurged}},
		{&rep.Sources, `UPDATE backup_sources SET name = 'erased-' || id, config = NULL, paused_at = COALESCE(paused_at, ?), updated_at = ? WHERE account_id = ?`,
			[]any{at, at, accountID}},
		{&rep.APIKeys, `UPDATE api_keys SET revoked_at = ? WHERE account_id = ? AND revoked_at IS NULL`, []any{at, accountID}},
		{&rep.Notifications, `DELETE FROM notifications WHERE account_id = ?`, []any{accountID}},
		{nil, `DELETE FROM webhook_attempts WHERE endpoint_id IN (SELECT id FROM webhook_endpoints WHERE account_id = ?)`, []any{accountID}},
		{&rep.Endpoints, `DELETE FROM webhook_endpoints WHERE account_id = ?`, []any{accountID}},
		{&rep.Tickets, `UPDATE support_tickets SET subject = '[erased]', status = ?, closed_at = COALESCE(closed_at, ?) WHERE account_id = ?`,
			[]any{TicketClosed, at, accountID}},
		{&rep.DataKeys, `DELETE FROM account_keys WHERE account_id = ?`, []any{accountID}},
		{nil, `DELETE FROM user_sessions WHERE user_id IN (SELECT id FROM users WHERE account_id = ?)`, []any{accountID}},
		{&rep.Users, `DELETE FROM users WHERE account_id = ?`, []any{accountID}},
		{nil, `DELETE FROM user_links WHERE account_id = ?`, []any{accountID}},
		{&rep.Messages, `UPDATE support_messages SET body = '[erased]' WHERE account_id = ?`, []any{accountID}},
		{nil, `UPDATE support_ticket_events SET detail = '{}' WHERE account_id = ?`, []any{accountID}},
		{nil, `UPDATE commands SET payload = ?, result = NULL WHERE account_id = ?`, []any{[]byte("{}"), accountID}},
		{nil, `UPDATE accounts SET name = ?, contact_email = '', erased_at = ?, updated_at = ? WHERE id = ?`, []any{ErasedAccountName, at, at, accountID}},
	}
	for _, st := range steps {
		res, err := tx.tx.ExecContext(ctx, tx.rebind(st.query), st.args...)
		if err != nil {
			return fmt.Errorf("store: erasing account %s: %w", accountID, err)
		}
		if st.count != nil {
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			*st.count = int(n)
		}
	}
	rep.Kept = []string{"invoices and payments (billing ledger)", "the audit trails", "the account's id and Stripe customer, for those records"}
	return nil
}
