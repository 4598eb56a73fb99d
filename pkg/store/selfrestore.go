package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// SelfRestore is one restore of Levqor's database from a self-backup.
// While the newest is not reconciled with the blob store, the sweep and
// blob.gc refuse to run.
type SelfRestore struct {
	ID            string     `json:"id"`
	BackupKey     string     `json:"backup_key"`
	BackupTakenAt time.Time  `json:"backup_taken_at"`
	RestoredAt    time.Time  `json:"restored_at"`
	ReconciledAt  *time.Time `json:"reconciled_at,omitempty"`
}

type selfRestoreRow struct {
	ID            string       `db:"id"`
	BackupKey     string       `db:"backup_key"`
	BackupTakenAt time.Time    `db:"backup_taken_at"`
	RestoredAt    time.Time    `db:"restored_at"`
	ReconciledAt  sql.NullTime `db:"reconciled_at"`
}

// RecordSelfRestore records a restore of this database from a
// self-backup, not yet reconciled.
func (s *Store) RecordSelfRestore(ctx context.Context, r SelfRestore) error {
	_, err := s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO self_restores (id, backup_key, backup_taken_at, restored_at) VALUES (?, ?, ?, ?)`),
		r.ID, r.BackupKey, r.BackupTakenAt.UTC(), r.RestoredAt.UTC())
	if err != nil {
		return fmt.Errorf("store: recording the restore from %s: %w", r.BackupKey, err)
	}
	return nil
}

// PendingSelfRestore is the restore from a self-backup that waits to be
// reconciled with the blob store, or nil when none does.
func (q Querier) PendingSelfRestore(ctx context.Context) (*SelfRestore, error) {
	var r selfRestoreRow
	err := q.db.GetContext(ctx, &r, `SELECT id, backup_key, backup_taken_at, restored_at, reconciled_at FROM self_restores
WHERE reconciled_at IS NULL ORDER BY restored_at DESC LIMIT 1`)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: reading the pending restore: %w", err)
	}
	return &SelfRestore{ID: r.ID, BackupKey: r.BackupKey, BackupTakenAt: r.BackupTakenAt.UTC(), RestoredAt: r.RestoredAt.UTC(),
		ReconciledAt: fromNull(r.ReconciledAt)}, nil
}

// MarkSelfRestoresReconciled records that every restore not yet
// reconciled was at at (one restored from a self-backup taken while an
// earlier restore waited carries that one's row too).
func (s *Store) MarkSelfRestoresReconciled(ctx context.Context, at time.Time) error {
	_, err := s.db.ExecContext(ctx, s.db.Rebind(`UPDATE self_restores SET reconciled_at = ? WHERE reconciled_at IS NULL`), at.UTC())
	if err != nil {
		return fmt.Errorf("store: marking the restores reconciled: %w", err)
	}
	return nil
}

// SQLitePath is the file of a sqlite: database URL; ok is false for any
// other URL.
func SQLitePath(raw string) (path string, ok bool) {
	scheme, rest, found := strings.Cut(raw, ":")
	if !found || !strings.EqualFold(scheme, "sqlite") {
		return "", false
	}
	path, _, _ = strings.Cut(strings.TrimPrefix(rest, "//"), "?")
	return path, path != ""
}

// SnapshotsInStates lists every snapshot in one of states, of every
// source.
func (q Querier) SnapshotsInStates(ctx context.Context, states ...string) ([]Snapshot, error) {
	if len(states) == 0 {
		return nil, errors.New("store: SnapshotsInStates needs a state")
	}
	query := `SELECT ` + snapshotColumns + ` FROM backup_snapshots WHERE state IN (?` + strings.Repeat(", ?", len(states)-1) + `) ORDER BY id`
	args := make([]any, len(states))
	for i, st := range states {
		args[i] = st
	}
	var rows []snapshotRow
	if err := q.db.SelectContext(ctx, &rows, q.rebind(query), args...); err != nil {
		return nil, fmt.Errorf("store: listing snapshots: %w", err)
	}
	return snapshots(rows)
}
