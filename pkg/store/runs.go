package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Run states. A run is queued until a worker starts it, running while it
// streams the source into the blob store, and ends succeeded (its snapshot
// recorded) or failed (nothing recorded, Error says why). A failed run
// whose command is retried runs again under the same id.
const (
	RunQueued    = "queued"
	RunRunning   = "running"
	RunSucceeded = "succeeded"
	RunFailed    = "failed"
)

// Run triggers.
const (
	// RunManual: someone asked (API, CLI).
	RunManual = "manual"
	// RunScheduled: the backup.due tick, for the source's schedule slot.
	RunScheduled = "schedule"
)

// BackupRun is one backup of a source: the work of streaming it into the
// blob store, and the snapshot it recorded.
type BackupRun struct {
	// ID is "run_…", the suffix of its command's id.
	ID        string `json:"id"`
	AccountID string `json:"account_id"`
	SourceID  string `json:"source_id"`
	// CommandID is the command that carries the run out.
	CommandID string `json:"command_id"`
	// Trigger is RunManual or RunScheduled; Slot is the schedule slot of a
	// scheduled run.
	Trigger string     `json:"trigger"`
	Slot    *time.Time `json:"slot,omitempty"`
	// State is RunQueued, RunRunning, RunSucceeded or RunFailed.
	State string `json:"state"`
	// BytesDone is the source bytes read so far; SourceBytes the total of
	// a finished run.
	BytesDone   int64 `json:"bytes_done"`
	SourceBytes int64 `json:"source_bytes"`
	// StoredBytes and SHA256 describe the stored (compressed) blob.
	StoredBytes int64  `json:"stored_bytes"`
	SHA256      string `json:"sha256,omitempty"`
	// SnapshotID is the snapshot a succeeded run recorded.
	SnapshotID string `json:"snapshot_id,omitempty"`
	// Error is why the run (its last attempt) failed.
	Error string `json:"error,omitempty"`
	// Attempts counts the times a worker started the run.
	Attempts    int        `json:"attempts"`
	CreatedAt   time.Time  `json:"created_at"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	HeartbeatAt *time.Time `json:"heartbeat_at,omitempty"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

type runRow struct {
	ID          string       `db:"id"`
	AccountID   string       `db:"account_id"`
	SourceID    string       `db:"source_id"`
	CommandID   string       `db:"command_id"`
	Trigger     string       `db:"trigger"`
	Slot        sql.NullTime `db:"slot"`
	State       string       `db:"state"`
	BytesDone   int64        `db:"bytes_done"`
	SourceBytes int64        `db:"source_bytes"`
	StoredBytes int64        `db:"stored_bytes"`
	SHA256      string       `db:"sha256"`
	SnapshotID  string       `db:"snapshot_id"`
	Error       string       `db:"error"`
	Attempts    int          `db:"attempts"`
	CreatedAt   time.Time    `db:"created_at"`
	StartedAt   sql.NullTime `db:"started_at"`
	HeartbeatAt sql.NullTime `db:"heartbeat_at"`
	FinishedAt  sql.NullTime `db:"finished_at"`
	UpdatedAt   time.Time    `db:"updated_at"`
}

func (r runRow) run() BackupRun {
	return BackupRun{
		ID: r.ID, AccountID: r.AccountID, SourceID: r.SourceID, CommandID: r.CommandID, Trigger: r.Trigger,
		Slot: fromNull(r.Slot), State: r.State, BytesDone: r.BytesDone, SourceBytes: r.SourceBytes,
		StoredBytes: r.StoredBytes, SHA256: r.SHA256, SnapshotID: r.SnapshotID, Error: r.Error, Attempts: r.Attempts,
		CreatedAt: r.CreatedAt.UTC(), StartedAt: fromNull(r.StartedAt), HeartbeatAt: fromNull(r.HeartbeatAt),
		FinishedAt: fromNull(r.FinishedAt), UpdatedAt: r.UpdatedAt.UTC(),
	}
}

const runColumns = `id, account_id, source_id, command_id, trigger, slot, state, bytes_done, source_bytes, stored_bytes,
sha256, snapshot_id, error, attempts, created_at, started_at, heartbeat_at, finished_at, updated_at`

// StartRun records within tx that a worker starts run r (running, one
// more attempt, progress reset) and returns it as stored. A run that
// exists already is restarted unless it succeeded; a succeeded run is
// returned as it is, so the caller sees there is nothing to do.
func (tx *Tx) StartRun(ctx context.Context, r BackupRun, at time.Time) (*BackupRun, error) {
	if r.ID == "" || r.AccountID == "" || r.SourceID == "" || r.CommandID == "" || r.Trigger == "" {
		return nil, errors.New("store: starting run: id, account, source, command and trigger are required")
	}
	now := ts(orNow(at))
	_, err := tx.tx.ExecContext(ctx, tx.rebind(`INSERT INTO backup_runs (`+runColumns+`)
VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, 0, '', '', '', 1, ?, ?, ?, NULL, ?)
ON CONFLICT (id) DO UPDATE SET state = excluded.state, attempts = backup_runs.attempts + 1, bytes_done = 0,
	error = '', started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, finished_at = NULL,
	updated_at = excluded.updated_at
WHERE backup_runs.state <> 'succeeded'`),
		r.ID, r.AccountID, r.SourceID, r.CommandID, r.Trigger, nullTime(r.Slot), RunRunning, now, now, now, now)
	if err != nil {
		return nil, fmt.Errorf("store: starting run %s: %w", r.ID, err)
	}
	return tx.GetRun(ctx, r.ID)
}

// CountRunningRuns returns how many of the account's runs other than
// except are running with a heartbeat after aliveAfter: runs whose worker
// died stop counting once their heartbeat is older.
func (tx *Tx) CountRunningRuns(ctx context.Context, accountID, except string, aliveAfter time.Time) (int, error) {
	var n int
	err := tx.tx.GetContext(ctx, &n, tx.rebind(`SELECT COUNT(*) FROM backup_runs
WHERE account_id = ? AND state = ? AND id <> ? AND heartbeat_at > ?`), accountID, RunRunning, except, ts(aliveAfter))
	if err != nil {
		return 0, fmt.Errorf("store: counting running runs of %s: %w", accountID, err)
	}
	return n, nil
}

// RunProgress records the source bytes a running run has read, which is
// also its heartbeat. It is one short statement outside any transaction:
// a run reports progress while it streams and holds no transaction open.
func (s *Store) RunProgress(ctx context.Context, id string, bytesDone int64, at time.Time) error {
	now := ts(orNow(at))
	_, err := s.db.ExecContext(ctx, s.rebind(`UPDATE backup_runs SET bytes_done = ?, heartbeat_at = ?, updated_at = ?
WHERE id = ? AND state = ?`), bytesDone, now, now, id, RunRunning)
	if err != nil {
		return fmt.Errorf("store: recording progress of run %s: %w", id, err)
	}
	return nil
}

// FailRun records within tx that run id failed, with reason, unless it
// has already succeeded; it reports whether it changed the run.
func (tx *Tx) FailRun(ctx context.Context, id, reason string, at time.Time) (bool, error) {
	now := ts(orNow(at))
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE backup_runs SET state = ?, error = ?, finished_at = ?, updated_at = ?
WHERE id = ? AND state <> ?`), RunFailed, reason, now, now, id, RunSucceeded)
	if err != nil {
		return false, fmt.Errorf("store: failing run %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: failing run %s: %w", id, err)
	}
	return n == 1, nil
}

// FinishRunParams record a run's success.
type FinishRunParams struct {
	ID          string
	SnapshotID  string
	SourceBytes int64
	StoredBytes int64
	SHA256      string
	// At is when it finished; zero means now.
	At time.Time
}

// FinishRun records within tx that the run succeeded with its snapshot,
// or fails wrapping ErrNotFound for an unknown run.
func (tx *Tx) FinishRun(ctx context.Context, p FinishRunParams) error {
	now := ts(orNow(p.At))
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE backup_runs SET state = ?, snapshot_id = ?, source_bytes = ?,
	bytes_done = ?, stored_bytes = ?, sha256 = ?, error = '', finished_at = ?, heartbeat_at = ?, updated_at = ?
WHERE id = ?`), RunSucceeded, p.SnapshotID, p.SourceBytes, p.SourceBytes, p.StoredBytes, p.SHA256, now, now, now, p.ID)
	if err != nil {
		return fmt.Errorf("store: finishing run %s: %w", p.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: finishing run %s: %w", p.ID, err)
	} else if n == 0 {
		return fmt.Errorf("store: run %s: %w", p.ID, ErrNotFound)
	}
	return nil
}

const getRunSQL = `SELECT ` + runColumns + ` FROM backup_runs WHERE id = ?`

// GetRun returns run id, or an error wrapping ErrNotFound.
func (q Querier) GetRun(ctx context.Context, id string) (*BackupRun, error) {
	return getRun(ctx, q.db, q.rebind(getRunSQL), id)
}

func getRun(ctx context.Context, q dbtx, query, id string) (*BackupRun, error) {
	var r runRow
	err := q.GetContext(ctx, &r, query, id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: run %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: getting run %s: %w", id, err)
	}
	run := r.run()
	return &run, nil
}

// RunCursor is the position after which a page of runs starts.
type RunCursor struct {
	CreatedAt time.Time
	ID        string
}

// ListRunsParams selects a page of a source's runs, newest first.
type ListRunsParams struct {
	// SourceID is required.
	SourceID string
	// Limit is the most runs to return; required.
	Limit int
	// After, when set, starts the page after that run.
	After *RunCursor
}

// ListRuns returns up to p.Limit runs of the source, newest first.
func (s *Store) ListRuns(ctx context.Context, p ListRunsParams) ([]BackupRun, error) {
	if p.Limit <= 0 || p.SourceID == "" {
		return nil, errors.New("store: listing runs: source and a positive limit are required")
	}
	q := `SELECT ` + runColumns + ` FROM backup_runs WHERE source_id = ?`
	args := []any{p.SourceID}
	if p.After != nil {
		at := ts(p.After.CreatedAt)
		q += ` AND (created_at < ? OR (created_at = ? AND id < ?))`
		args = append(args, at, at, p.After.ID)
	}
	q += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, p.Limit)
	var rows []runRow
	if err := s.db.SelectContext(ctx, &rows, s.rebind(q), args...); err != nil {
		return nil, fmt.Errorf("store: listing runs of %s: %w", p.SourceID, err)
	}
	out := make([]BackupRun, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.run())
	}
	return out, nil
}

// storedStates are the snapshot states whose blob is still kept, and so
// count against the account's storage quota.
var storedStates = []any{SnapshotActive, SnapshotTrash, SnapshotPurging}

// AccountStoredBytes returns what the account stores: the bytes of its
// snapshots whose blobs are kept (active, in the trash, or being purged)
// but for those of its backup repository, counted once as the bytes the
// repository holds (chunks shared by snapshots count once). That is what
// counts against its storage quota. Inside a transaction it counts the
// transaction's own changes.
func (q Querier) AccountStoredBytes(ctx context.Context, accountID string) (int64, error) {
	var n int64
	err := q.db.GetContext(ctx, &n, q.rebind(`SELECT COALESCE(SUM(size_bytes), 0)
  + COALESCE((SELECT stored_bytes FROM account_keys WHERE account_id = ?), 0)
FROM backup_snapshots
WHERE account_id = ? AND state IN (?, ?, ?) AND substr(blob_key, 1, ?) <> ?`),
		append(append([]any{accountID, accountID}, storedStates...), len(accountID)+len("/repo/"), accountID+"/repo/")...)
	if err != nil {
		return 0, fmt.Errorf("store: summing stored bytes of %s: %w", accountID, err)
	}
	return n, nil
}

// RunnableSources returns every source of the given kinds, paused or not,
// oldest first, except those of accounts an operator suspended: their
// backups do not run, are not overdue and are not drilled.
func (s *Store) RunnableSources(ctx context.Context, kinds ...string) ([]BackupSource, error) {
	if len(kinds) == 0 {
		return []BackupSource{}, nil
	}
	args := make([]any, len(kinds))
	for i, k := range kinds {
		args[i] = k
	}
	var rows []sourceRow
	err := s.db.SelectContext(ctx, &rows, s.rebind(`SELECT `+sourceColumns+` FROM backup_sources
WHERE kind IN (?`+strings.Repeat(", ?", len(kinds)-1)+`)
AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = backup_sources.account_id AND a.suspended_at IS NOT NULL)
ORDER BY created_at, id`), args...)
	if err != nil {
		return nil, fmt.Errorf("store: listing runnable sources: %w", err)
	}
	out := make([]BackupSource, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.source())
	}
	return out, nil
}

// SetSourcePaused pauses the source within tx (since set) or resumes it
// (since nil).
func (tx *Tx) SetSourcePaused(ctx context.Context, id string, since *time.Time, at time.Time) error {
	return tx.updateSource(ctx, id, `paused_at = ?`, nullTime(since), ts(orNow(at)))
}

// SetSourceConfig replaces the source's kind settings within tx.
func (tx *Tx) SetSourceConfig(ctx context.Context, id string, config json.RawMessage, at time.Time) error {
	v, err := nullJSON(config)
	if err != nil {
		return fmt.Errorf("store: setting config of %s: %w", id, err)
	}
	return tx.updateSource(ctx, id, `config = ?`, v, ts(orNow(at)))
}

// SetOverdueIncident records within tx the overdue incident last raised
// for the source and reports whether it is new: false when that incident
// was already raised, so each incident raises one alert.
func (tx *Tx) SetOverdueIncident(ctx context.Context, id, incident string) (bool, error) {
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE backup_sources SET overdue_incident = ? WHERE id = ? AND overdue_incident <> ?`),
		incident, id, incident)
	if err != nil {
		return false, fmt.Errorf("store: recording overdue incident of %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: recording overdue incident of %s: %w", id, err)
	}
	return n == 1, nil
}

// SnapshotsToVerify returns up to limit active snapshots not known to be
// corrupt, the least recently verified first (never verified before all).
func (s *Store) SnapshotsToVerify(ctx context.Context, limit int) ([]Snapshot, error) {
	if limit <= 0 {
		return []Snapshot{}, nil
	}
	var rows []snapshotRow
	err := s.db.SelectContext(ctx, &rows, s.rebind(`SELECT `+snapshotColumns+` FROM backup_snapshots
WHERE state = ? AND integrity <> ?
ORDER BY verified_at IS NOT NULL, verified_at, recorded_at, id LIMIT ?`), SnapshotActive, SnapshotCorrupt, limit)
	if err != nil {
		return nil, fmt.Errorf("store: listing snapshots to verify: %w", err)
	}
	return snapshots(rows)
}

// SetSnapshotIntegrity records within tx what verifying the snapshot
// found (SnapshotVerified, or SnapshotCorrupt with reason) and reports
// whether it changed: a corrupt snapshot stays corrupt, and marking it
// corrupt again changes nothing, so its alert is raised once.
func (tx *Tx) SetSnapshotIntegrity(ctx context.Context, id, integrity, reason string, at time.Time) (bool, error) {
	if integrity != SnapshotVerified && integrity != SnapshotCorrupt {
		return false, fmt.Errorf("store: snapshot %s: integrity %q is neither verified nor corrupt", id, integrity)
	}
	now := ts(orNow(at))
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE backup_snapshots SET integrity = ?, verify_error = ?, verified_at = ?
WHERE id = ? AND integrity <> ?`), integrity, reason, now, id, SnapshotCorrupt)
	if err != nil {
		return false, fmt.Errorf("store: recording integrity of snapshot %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: recording integrity of snapshot %s: %w", id, err)
	}
	return n == 1, nil
}

// LastGoodSnapshot returns the source's newest active snapshot that is not
// corrupt, or an error wrapping ErrNotFound when it has none.
func (s *Store) LastGoodSnapshot(ctx context.Context, sourceID string) (*Snapshot, error) {
	return getSnapshot(ctx, s.db, s.rebind(`SELECT `+snapshotColumns+` FROM backup_snapshots
WHERE source_id = ? AND state = 'active' AND integrity <> 'corrupt' ORDER BY taken_at DESC, id LIMIT 1`), sourceID)
}

// lastSignOfLife is a run's latest proof that a worker was on it: its
// heartbeat, else its start, else its creation.
const lastSignOfLife = `COALESCE(heartbeat_at, started_at, created_at)`

// StaleRuns returns, oldest first, up to limit runs still marked running
// whose last sign of life is before before: the worker running them
// stopped.
func (s *Store) StaleRuns(ctx context.Context, before time.Time, limit int) ([]BackupRun, error) {
	var rows []runRow
	q := `SELECT ` + runColumns + ` FROM backup_runs WHERE state = ? AND ` + lastSignOfLife + ` < ? ORDER BY ` + lastSignOfLife + `, id LIMIT ?`
	if err := s.db.SelectContext(ctx, &rows, s.rebind(q), RunRunning, ts(before), limit); err != nil {
		return nil, fmt.Errorf("store: listing stale runs: %w", err)
	}
	out := make([]BackupRun, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.run())
	}
	return out, nil
}

// ReapRun marks run id failed with reason within tx if it is still
// running and its last sign of life is still before before (a worker that
// took it up again since has beaten), and reports whether it did.
func (tx *Tx) ReapRun(ctx context.Context, id, reason string, before, at time.Time) (bool, error) {
	now := ts(orNow(at))
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE backup_runs SET state = ?, error = ?, finished_at = ?, updated_at = ?
WHERE id = ? AND state = ? AND `+lastSignOfLife+` < ?`), RunFailed, reason, now, now, id, RunRunning, ts(before))
	if err != nil {
		return false, fmt.Errorf("store: reaping run %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: reaping run %s: %w", id, err)
	}
	return n == 1, nil
}
