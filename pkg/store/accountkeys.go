package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// AccountKey is an account's data key as stored: wrapped (sealed) by a
// master key. Only the backups worker unwraps it, for the run, restore
// or check at hand.
type AccountKey struct {
	AccountID   string     `db:"account_id" json:"account_id"`
	Wrapped     string     `db:"wrapped" json:"-"`
	CreatedAt   time.Time  `db:"created_at" json:"created_at"`
	RewrappedAt *time.Time `db:"rewrapped_at" json:"rewrapped_at,omitempty"`
}

// AccountDataKey is the account's wrapped data key; ErrNotFound when the
// account has none yet (or it was destroyed by an erasure).
func (q Querier) AccountDataKey(ctx context.Context, accountID string) (string, error) {
	var wrapped string
	err := q.db.GetContext(ctx, &wrapped, q.db.Rebind(`SELECT wrapped FROM account_keys WHERE account_id = ?`), accountID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("store: reading the data key of %s: %w", accountID, err)
	}
	return wrapped, nil
}

// CreateAccountDataKey stores wrapped as the account's data key unless it
// has one, and returns the one it has: of two workers making the first
// key at once, both use the one stored first. An erased account gets no
// new key.
func (s *Store) CreateAccountDataKey(ctx context.Context, accountID, wrapped string, now time.Time) (string, error) {
	var erased int
	if err := s.db.GetContext(ctx, &erased, s.db.Rebind(`SELECT count(*) FROM accounts WHERE id = ? AND erased_at IS NOT NULL`), accountID); err != nil {
		return "", fmt.Errorf("store: storing the data key of %s: %w", accountID, err)
	}
	if erased > 0 {
		return "", fmt.Errorf("store: account %s is erased: it gets no data key", accountID)
	}
	_, err := s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO account_keys (account_id, wrapped, created_at) VALUES (?, ?, ?)
ON CONFLICT (account_id) DO NOTHING`), accountID, wrapped, ts(now))
	if err != nil {
		return "", fmt.Errorf("store: storing the data key of %s: %w", accountID, err)
	}
	return s.AccountDataKey(ctx, accountID)
}

// AccountDataKeys lists stored data keys in account id order, limit of
// them after the account id after ("" for the first page).
func (q Querier) AccountDataKeys(ctx context.Context, after string, limit int) ([]AccountKey, error) {
	var rows []AccountKey
	err := q.db.SelectContext(ctx, &rows, q.db.Rebind(`SELECT account_id, wrapped, created_at, rewrapped_at FROM account_keys
WHERE account_id > ? ORDER BY account_id LIMIT ?`), after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: listing data keys: %w", err)
	}
	return rows, nil
}

// RewrapAccountDataKey replaces the account's wrapped key old by wrapped;
// false when the stored one is no longer old (destroyed, or re-wrapped
// meanwhile).
func (s *Store) RewrapAccountDataKey(ctx context.Context, accountID, old, wrapped string, now time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.db.Rebind(`UPDATE account_keys SET wrapped = ?, rewrapped_at = ? WHERE account_id = ? AND wrapped = ?`),
		wrapped, ts(now), accountID, old)
	if err != nil {
		return false, fmt.Errorf("store: re-wrapping the data key of %s: %w", accountID, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// RepoFence is what fences an account's repository prune against its
// runs: the generation, bumped by each prune, and the lease of a prune
// under way.
type RepoFence struct {
	Generation   int64      `db:"prune_generation"`
	PruningSince *time.Time `db:"pruning_since"`
}

// RepoFence reads the account's fence; the zero value when the account
// has no repository yet.
func (tx *Tx) RepoFence(ctx context.Context, accountID string) (RepoFence, error) {
	var f RepoFence
	err := tx.tx.GetContext(ctx, &f, tx.rebind(`SELECT prune_generation, pruning_since FROM account_keys WHERE account_id = ?`), accountID)
	if errors.Is(err, sql.ErrNoRows) {
		return RepoFence{}, nil
	}
	if err != nil {
		return RepoFence{}, fmt.Errorf("store: reading the repository fence of %s: %w", accountID, err)
	}
	return f, nil
}

// BeginPrune takes the account's prune lease at now, unless a prune took
// it after staleBefore, and bumps the generation, which it returns: a
// run started before records nothing. false when the lease is taken or
// the account has no repository. The caller holds the account's lock
// (LockAccountForSources) and has checked that no run is alive.
func (tx *Tx) BeginPrune(ctx context.Context, accountID string, now, staleBefore time.Time) (int64, bool, error) {
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE account_keys SET pruning_since = ?, prune_generation = prune_generation + 1
WHERE account_id = ? AND (pruning_since IS NULL OR pruning_since < ?)`), ts(now), accountID, ts(staleBefore))
	if err != nil {
		return 0, false, fmt.Errorf("store: taking the prune lease of %s: %w", accountID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return 0, false, err
	}
	f, err := tx.RepoFence(ctx, accountID)
	return f.Generation, err == nil, err
}

// EndPrune releases the prune lease of generation gen, recording what the
// repository holds after it (stored >= 0; -1 when the prune failed and
// it is not known); a lease another prune took since (this one outlived
// it) is left alone.
func (s *Store) EndPrune(ctx context.Context, accountID string, gen int64, stored int64, now time.Time) error {
	_, err := s.db.ExecContext(ctx, s.rebind(`UPDATE account_keys SET pruning_since = NULL, pruned_at = ?,
  stored_bytes = CASE WHEN CAST(? AS BIGINT) >= 0 THEN CAST(? AS BIGINT) ELSE stored_bytes END
WHERE account_id = ? AND prune_generation = ?`), ts(now), stored, stored, accountID, gen)
	if err != nil {
		return fmt.Errorf("store: releasing the prune lease of %s: %w", accountID, err)
	}
	return nil
}

// AddRepoBytes counts n more bytes stored in the account's repository.
func (tx *Tx) AddRepoBytes(ctx context.Context, accountID string, n int64) error {
	_, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE account_keys SET stored_bytes = stored_bytes + ? WHERE account_id = ?`), n, accountID)
	if err != nil {
		return fmt.Errorf("store: counting the repository bytes of %s: %w", accountID, err)
	}
	return nil
}
