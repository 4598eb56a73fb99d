package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// APIKey is a stored API key: everything but the key itself, of which only
// a hash is kept.
type APIKey struct {
	// ID is "key_" followed by random characters; not secret.
	ID string `json:"id"`
	// Hash is the hex SHA-256 of the whole key.
	Hash string `json:"-"`
	// Prefix is the key's first characters, not secret, shown in listings
	// so people can tell keys apart.
	Prefix string `json:"prefix"`
	// Name is a label chosen at creation.
	Name string `json:"name"`
	// Operator keys see every account and may use /admin.
	Operator bool `json:"operator"`
	// AccountID is the account an account key belongs to; "" for operator
	// keys.
	AccountID string `json:"account_id,omitempty"`
	// CreatedAt is when the key was made; zero means now.
	CreatedAt time.Time `json:"created_at"`
	// LastUsedAt is when the key last authenticated a request, roughly.
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	// RevokedAt is when the key was revoked; nil while it works.
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

type apiKeyRow struct {
	ID         string         `db:"id"`
	Hash       string         `db:"key_hash"`
	Prefix     string         `db:"prefix"`
	Name       string         `db:"name"`
	Operator   bool           `db:"operator"`
	AccountID  sql.NullString `db:"account_id"`
	CreatedAt  time.Time      `db:"created_at"`
	LastUsedAt sql.NullTime   `db:"last_used_at"`
	RevokedAt  sql.NullTime   `db:"revoked_at"`
}

func (r apiKeyRow) key() APIKey {
	return APIKey{
		ID:         r.ID,
		Hash:       r.Hash,
		Prefix:     r.Prefix,
		Name:       r.Name,
		Operator:   r.Operator,
		AccountID:  r.AccountID.String,
		CreatedAt:  r.CreatedAt.UTC(),
		LastUsedAt: fromNull(r.LastUsedAt),
		RevokedAt:  fromNull(r.RevokedAt),
	}
}

const apiKeyColumns = `id, key_hash, prefix, name, operator, account_id, created_at, last_used_at, revoked_at`

const insertAPIKeySQL = `INSERT INTO api_keys (id, key_hash, prefix, name, operator, account_id, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?)`

const accountExistsSQL = `SELECT COUNT(*) FROM accounts WHERE id = ?`

// CreateAPIKey stores k. An operator key must have no AccountID and an
// account key must name an existing account; an unknown account is an
// error wrapping ErrNotFound. LastUsedAt and RevokedAt are ignored.
func (s *Store) CreateAPIKey(ctx context.Context, k APIKey) error {
	if k.ID == "" || k.Hash == "" || k.Prefix == "" {
		return fmt.Errorf("store: creating api key: id, hash and prefix are required")
	}
	if k.Operator == (k.AccountID != "") {
		return fmt.Errorf("store: creating api key %s: a key is either an operator key or an account's key", k.ID)
	}
	return s.InTx(ctx, func(tx *Tx) error {
		var account any
		if !k.Operator {
			var n int
			if err := tx.tx.GetContext(ctx, &n, tx.rebind(accountExistsSQL), k.AccountID); err != nil {
				return fmt.Errorf("store: creating api key %s: %w", k.ID, err)
			}
			if n == 0 {
				return fmt.Errorf("store: account %s: %w", k.AccountID, ErrNotFound)
			}
			account = k.AccountID
		}
		_, err := tx.tx.ExecContext(ctx, tx.rebind(insertAPIKeySQL),
			k.ID, k.Hash, k.Prefix, k.Name, k.Operator, account, ts(orNow(k.CreatedAt)))
		if err != nil {
			return fmt.Errorf("store: creating api key %s: %w", k.ID, err)
		}
		return nil
	})
}

const activeAPIKeyByHashSQL = `SELECT ` + apiKeyColumns + ` FROM api_keys
WHERE key_hash = ? AND revoked_at IS NULL`

// ActiveAPIKeyByHash returns the unrevoked key whose hash is hash, or an
// error wrapping ErrNotFound: a revoked key is not found from the moment
// RevokeAPIKey returns.
func (s *Store) ActiveAPIKeyByHash(ctx context.Context, hash string) (*APIKey, error) {
	var r apiKeyRow
	err := s.db.GetContext(ctx, &r, s.rebind(activeAPIKeyByHashSQL), hash)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: api key: %w", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: looking up api key: %w", err)
	}
	k := r.key()
	return &k, nil
}

// ListAPIKeysParams selects API keys.
type ListAPIKeysParams struct {
	// AccountID, when set, lists only that account's keys.
	AccountID string
	// OperatorOnly lists only operator keys.
	OperatorOnly bool
	// IncludeRevoked lists revoked keys too.
	IncludeRevoked bool
}

const listAPIKeysSQL = `SELECT ` + apiKeyColumns + ` FROM api_keys
WHERE (? = '' OR account_id = ?)
  AND (? = FALSE OR operator = TRUE)
  AND (? = TRUE OR revoked_at IS NULL)
ORDER BY created_at, id`

// ListAPIKeys returns the keys p selects, oldest first.
func (s *Store) ListAPIKeys(ctx context.Context, p ListAPIKeysParams) ([]APIKey, error) {
	var rows []apiKeyRow
	err := s.db.SelectContext(ctx, &rows, s.rebind(listAPIKeysSQL),
		p.AccountID, p.AccountID, p.OperatorOnly, p.IncludeRevoked)
	if err != nil {
		return nil, fmt.Errorf("store: listing api keys: %w", err)
	}
	out := make([]APIKey, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.key())
	}
	return out, nil
}

const revokeAPIKeySQL = `UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`

const getAPIKeySQL = `SELECT ` + apiKeyColumns + ` FROM api_keys WHERE id = ?`

// RevokeAPIKey revokes the key id at at (zero: now) and returns it. A key
// already revoked keeps its first revocation time. An unknown id is an
// error wrapping ErrNotFound.
func (s *Store) RevokeAPIKey(ctx context.Context, id string, at time.Time) (*APIKey, error) {
	var k APIKey
	err := s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.tx.ExecContext(ctx, tx.rebind(revokeAPIKeySQL), ts(orNow(at)), id); err != nil {
			return fmt.Errorf("store: revoking api key %s: %w", id, err)
		}
		var r apiKeyRow
		err := tx.tx.GetContext(ctx, &r, tx.rebind(getAPIKeySQL), id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: api key %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("store: revoking api key %s: %w", id, err)
		}
		k = r.key()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &k, nil
}

const touchAPIKeySQL = `UPDATE api_keys SET last_used_at = ? WHERE id = ?`

// TouchAPIKey records that the key id authenticated a request at at.
func (s *Store) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	if _, err := s.db.ExecContext(ctx, s.rebind(touchAPIKeySQL), ts(orNow(at)), id); err != nil {
		return fmt.Errorf("store: touching api key %s: %w", id, err)
	}
	return nil
}
