package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Drill results.
const (
	DrillPassed  = "passed"
	DrillFailed  = "failed"
	DrillSkipped = "skipped"
)

// Drill is the report of one restore drill.
type Drill struct {
	// ID is "drl_…".
	ID         string `json:"id" db:"id"`
	AccountID  string `json:"account_id" db:"account_id"`
	SourceID   string `json:"source_id" db:"source_id"`
	SnapshotID string `json:"snapshot_id,omitempty" db:"snapshot_id"`
	// Slot is the tick slot the drill ran for.
	Slot time.Time `json:"slot" db:"slot"`
	Kind string    `json:"kind" db:"kind"`
	// Result is DrillPassed, DrillFailed or DrillSkipped; Reason says why
	// a drill failed or was skipped.
	Result     string    `json:"result" db:"result"`
	Reason     string    `json:"reason,omitempty" db:"reason"`
	Files      int64     `json:"files" db:"files"`
	Bytes      int64     `json:"bytes" db:"bytes"`
	DurationMS int64     `json:"duration_ms" db:"duration_ms"`
	StartedAt  time.Time `json:"started_at" db:"started_at"`
	FinishedAt time.Time `json:"finished_at" db:"finished_at"`
}

func (d *Drill) utc() {
	d.Slot, d.StartedAt, d.FinishedAt = d.Slot.UTC(), d.StartedAt.UTC(), d.FinishedAt.UTC()
}

// InsertDrill records d within tx; false when the source has a drill of
// that slot already.
func (tx *Tx) InsertDrill(ctx context.Context, d Drill) (bool, error) {
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`INSERT INTO restore_drills
(id, account_id, source_id, snapshot_id, slot, kind, result, reason, files, bytes, duration_ms, started_at, finished_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source_id, slot) DO NOTHING`),
		d.ID, d.AccountID, d.SourceID, d.SnapshotID, ts(d.Slot), d.Kind, d.Result, d.Reason, d.Files, d.Bytes, d.DurationMS,
		ts(d.StartedAt), ts(d.FinishedAt))
	if err != nil {
		return false, fmt.Errorf("store: recording drill of %s: %w", d.SourceID, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

const drillColumns = `id, account_id, source_id, snapshot_id, slot, kind, result, reason, files, bytes, duration_ms, started_at, finished_at`

// LastDrill returns the source's newest drill that was not skipped, or
// ErrNotFound.
func (q Querier) LastDrill(ctx context.Context, sourceID string) (*Drill, error) {
	var d Drill
	err := q.db.GetContext(ctx, &d, q.rebind(`SELECT `+drillColumns+` FROM restore_drills
WHERE source_id = ? AND result <> ? ORDER BY finished_at DESC, id DESC LIMIT 1`), sourceID, DrillSkipped)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: drill of %s: %w", sourceID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: reading drills of %s: %w", sourceID, err)
	}
	d.utc()
	return &d, nil
}

// DrillOfSlot reports whether the source has a drill of slot.
func (q Querier) DrillOfSlot(ctx context.Context, sourceID string, slot time.Time) (bool, error) {
	var n int
	if err := q.db.GetContext(ctx, &n, q.rebind(`SELECT COUNT(*) FROM restore_drills WHERE source_id = ? AND slot = ?`), sourceID, ts(slot)); err != nil {
		return false, fmt.Errorf("store: reading drills of %s: %w", sourceID, err)
	}
	return n > 0, nil
}

// ListDrills returns a source's drills, newest first, up to limit.
func (q Querier) ListDrills(ctx context.Context, sourceID string, limit int) ([]Drill, error) {
	out := []Drill{}
	if err := q.db.SelectContext(ctx, &out, q.rebind(`SELECT `+drillColumns+` FROM restore_drills
WHERE source_id = ? ORDER BY finished_at DESC, id DESC LIMIT ?`), sourceID, limit); err != nil {
		return nil, fmt.Errorf("store: listing drills of %s: %w", sourceID, err)
	}
	for i := range out {
		out[i].utc()
	}
	return out, nil
}

// HasPackage reports whether the account bought the Done-For-You package.
func (q Querier) HasPackage(ctx context.Context, accountID, pkg string) (bool, error) {
	var n int
	err := q.db.GetContext(ctx, &n, q.rebind(`SELECT COUNT(*) FROM billing_dfy_purchases WHERE account_id = ? AND package = ?`), accountID, pkg)
	if err != nil {
		return false, fmt.Errorf("store: reading DFY purchases of %s: %w", accountID, err)
	}
	return n > 0, nil
}
