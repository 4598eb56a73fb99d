package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Snapshot states. A snapshot moves active → trash → purging → purged, and
// back from trash to active when an operator restores it. Trash keeps the
// blob; purging means its blob is being deleted; purged rows are
// tombstones kept for the audit trail.
const (
	SnapshotActive  = "active"
	SnapshotTrash   = "trash"
	SnapshotPurging = "purging"
	SnapshotPurged  = "purged"
)

// SnapshotStates lists every state in lifecycle order.
var SnapshotStates = []string{SnapshotActive, SnapshotTrash, SnapshotPurging, SnapshotPurged}

// BackupSource is something an account backs up: a database, a bucket, a
// file tree.
type BackupSource struct {
	// ID is "src_…".
	ID string `json:"id"`
	// AccountID is the tenant that owns it.
	AccountID string `json:"account_id"`
	// Name is unique within the account.
	Name string `json:"name"`
	// Kind says what is backed up (postgres, files, …).
	Kind string `json:"kind"`
	// Schedule is a cron spec read in TimeZone.
	Schedule string `json:"schedule"`
	TimeZone string `json:"time_zone"`
	// Policy is the source's own retention policy as JSON; nil follows
	// the default policy of the account's tier.
	Policy json.RawMessage `json:"policy"`
	// BlockedSince is set while sweeps refuse to delete because they
	// would remove too large a share of the source at once.
	BlockedSince *time.Time `json:"blocked_since,omitempty"`
	// Config is the settings of a kind that runs (directory: {"path"},
	// postgres: {"dsn"}) as JSON; nil for record-only kinds. It may hold a
	// secret, so it is never marshalled: the API shows it redacted.
	Config json.RawMessage `json:"-"`
	// PausedAt is set while the source is paused: no scheduled runs, no
	// overdue alerts.
	PausedAt *time.Time `json:"paused_at,omitempty"`
	// OverdueIncident is the overdue incident last raised for the source.
	OverdueIncident string `json:"-"`
	// CreatedAt and UpdatedAt are set by the store; zero means now.
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

type sourceRow struct {
	ID           string       `db:"id"`
	AccountID    string       `db:"account_id"`
	Name         string       `db:"name"`
	Kind         string       `db:"kind"`
	Schedule     string       `db:"schedule"`
	TimeZone     string       `db:"time_zone"`
	Policy       []byte       `db:"policy"`
	BlockedSince sql.NullTime `db:"blocked_since"`
	CreatedAt    time.Time    `db:"created_at"`
	UpdatedAt    time.Time    `db:"updated_at"`
	Config       []byte       `db:"config"`
	PausedAt     sql.NullTime `db:"paused_at"`
	Overdue      string       `db:"overdue_incident"`
}

func (r sourceRow) source() BackupSource {
	s := BackupSource{
		ID: r.ID, AccountID: r.AccountID, Name: r.Name, Kind: r.Kind, Schedule: r.Schedule, TimeZone: r.TimeZone,
		BlockedSince: fromNull(r.BlockedSince), CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
		PausedAt: fromNull(r.PausedAt), OverdueIncident: r.Overdue,
	}
	if len(r.Policy) > 0 {
		s.Policy = json.RawMessage(r.Policy)
	}
	if len(r.Config) > 0 {
		s.Config = json.RawMessage(r.Config)
	}
	return s
}

const sourceColumns = `id, account_id, name, kind, schedule, time_zone, policy, blocked_since, created_at, updated_at,
config, paused_at, overdue_incident`

const insertSourceSQL = `INSERT INTO backup_sources (` + sourceColumns + `)
VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, NULL, '')
ON CONFLICT DO NOTHING`

// InsertSource adds s within tx and reports whether it was new: false when
// a source with its id, or with its name in the account, exists already.
func (tx *Tx) InsertSource(ctx context.Context, s BackupSource) (bool, error) {
	if s.ID == "" || s.AccountID == "" || s.Name == "" || s.Kind == "" || s.Schedule == "" || s.TimeZone == "" {
		return false, errors.New("store: inserting source: id, account, name, kind, schedule and time zone are required")
	}
	policy, err := nullJSON(s.Policy)
	if err != nil {
		return false, fmt.Errorf("store: inserting source %s: policy: %w", s.ID, err)
	}
	config, err := nullJSON(s.Config)
	if err != nil {
		return false, fmt.Errorf("store: inserting source %s: config: %w", s.ID, err)
	}
	at := ts(orNow(s.CreatedAt))
	res, err := tx.tx.ExecContext(ctx, tx.rebind(insertSourceSQL),
		s.ID, s.AccountID, s.Name, s.Kind, s.Schedule, s.TimeZone, policy, at, at, config)
	if err != nil {
		return false, fmt.Errorf("store: inserting source %s: %w", s.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: inserting source %s: %w", s.ID, err)
	}
	return n == 1, nil
}

const getSourceSQL = `SELECT ` + sourceColumns + ` FROM backup_sources WHERE id = ?`

// GetSource returns source id, or an error wrapping ErrNotFound.
func (q Querier) GetSource(ctx context.Context, id string) (*BackupSource, error) {
	return getSource(ctx, q.db, q.rebind(getSourceSQL), id)
}

// LockSource is GetSource that also locks the source's row until tx ends
// (SELECT … FOR UPDATE on PostgreSQL; SQLite serializes writers anyway).
// Every change to a source's snapshots or holds takes this lock first, so
// a sweep never acts on holds that changed after it read them.
func (tx *Tx) LockSource(ctx context.Context, id string) (*BackupSource, error) {
	q := getSourceSQL
	if tx.tx.DriverName() == DialectPostgres {
		q += ` FOR UPDATE`
	}
	return getSource(ctx, tx.tx, tx.rebind(q), id)
}

func getSource(ctx context.Context, q dbtx, query, id string) (*BackupSource, error) {
	var r sourceRow
	err := q.GetContext(ctx, &r, query, id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: source %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: getting source %s: %w", id, err)
	}
	src := r.source()
	return &src, nil
}

// SourceByName returns the account's source called name, or an error
// wrapping ErrNotFound.
func (tx *Tx) SourceByName(ctx context.Context, accountID, name string) (*BackupSource, error) {
	var r sourceRow
	err := tx.tx.GetContext(ctx, &r, tx.rebind(`SELECT `+sourceColumns+` FROM backup_sources WHERE account_id = ? AND name = ?`), accountID, name)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: source %q of %s: %w", name, accountID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: getting source %q of %s: %w", name, accountID, err)
	}
	src := r.source()
	return &src, nil
}

// LockAccountForSources locks the account's row until tx ends (SELECT …
// FOR UPDATE on PostgreSQL; SQLite serializes writers anyway), so that two
// commands creating sources for one account count its sources one after
// the other and cannot both pass the limit, and two runs recording their
// snapshots sum the account's stored bytes one after the other. It fails
// wrapping ErrNotFound
// for an unknown account.
func (tx *Tx) LockAccountForSources(ctx context.Context, accountID string) error {
	q := `SELECT id FROM accounts WHERE id = ?`
	if tx.tx.DriverName() == DialectPostgres {
		q += ` FOR UPDATE`
	}
	var id string
	err := tx.tx.GetContext(ctx, &id, tx.rebind(q), accountID)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("store: account %s: %w", accountID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("store: locking account %s: %w", accountID, err)
	}
	return nil
}

// CountSources returns how many sources the account has.
func (tx *Tx) CountSources(ctx context.Context, accountID string) (int, error) {
	var n int
	if err := tx.tx.GetContext(ctx, &n, tx.rebind(`SELECT COUNT(*) FROM backup_sources WHERE account_id = ?`), accountID); err != nil {
		return 0, fmt.Errorf("store: counting sources of %s: %w", accountID, err)
	}
	return n, nil
}

// SourcesOfAccount returns every source of the account, oldest first.
func (tx *Tx) SourcesOfAccount(ctx context.Context, accountID string) ([]BackupSource, error) {
	var rows []sourceRow
	err := tx.tx.SelectContext(ctx, &rows, tx.rebind(`SELECT `+sourceColumns+` FROM backup_sources WHERE account_id = ? ORDER BY created_at, id`), accountID)
	if err != nil {
		return nil, fmt.Errorf("store: listing sources of %s: %w", accountID, err)
	}
	out := make([]BackupSource, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.source())
	}
	return out, nil
}

// SourceCursor is the position after which a page of sources starts: the
// last source of the previous page.
type SourceCursor struct {
	CreatedAt time.Time
	ID        string
}

// ListSourcesParams selects a page of sources, newest first.
type ListSourcesParams struct {
	// AccountID restricts the page to one account; "" lists all.
	AccountID string
	// Limit is the most sources to return; required.
	Limit int
	// After, when set, starts the page after that source.
	After *SourceCursor
}

// ListSources returns up to p.Limit sources, newest first.
func (s *Store) ListSources(ctx context.Context, p ListSourcesParams) ([]BackupSource, error) {
	if p.Limit <= 0 {
		return nil, fmt.Errorf("store: listing sources: limit must be positive, got %d", p.Limit)
	}
	var where []string
	var args []any
	if p.AccountID != "" {
		where = append(where, "account_id = ?")
		args = append(args, p.AccountID)
	}
	if p.After != nil {
		at := ts(p.After.CreatedAt)
		where = append(where, "(created_at < ? OR (created_at = ? AND id < ?))")
		args = append(args, at, at, p.After.ID)
	}
	q := `SELECT ` + sourceColumns + ` FROM backup_sources`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, p.Limit)
	var rows []sourceRow
	if err := s.db.SelectContext(ctx, &rows, s.rebind(q), args...); err != nil {
		return nil, fmt.Errorf("store: listing sources: %w", err)
	}
	out := make([]BackupSource, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.source())
	}
	return out, nil
}

// SetSourcePolicyParams replaces a source's policy.
type SetSourcePolicyParams struct {
	// ID is the source.
	ID string
	// Policy is the new policy as JSON; nil returns the source to its
	// tier's default.
	Policy json.RawMessage
	// At is the time of the change; zero means now.
	At time.Time
}

// SetSourcePolicy sets the source's policy within tx, or fails wrapping
// ErrNotFound.
func (tx *Tx) SetSourcePolicy(ctx context.Context, p SetSourcePolicyParams) error {
	policy, err := nullJSON(p.Policy)
	if err != nil {
		return fmt.Errorf("store: setting policy of %s: %w", p.ID, err)
	}
	return tx.updateSource(ctx, p.ID, `policy = ?`, policy, ts(orNow(p.At)))
}

// SetSourceBlocked records that sweeps of the source are blocked since
// since, or (since nil) that they no longer are.
func (tx *Tx) SetSourceBlocked(ctx context.Context, id string, since *time.Time, at time.Time) error {
	return tx.updateSource(ctx, id, `blocked_since = ?`, nullTime(since), ts(orNow(at)))
}

func (tx *Tx) updateSource(ctx context.Context, id, set string, value any, at time.Time) error {
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE backup_sources SET `+set+`, updated_at = ? WHERE id = ?`), value, at, id)
	if err != nil {
		return fmt.Errorf("store: updating source %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: updating source %s: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("store: source %s: %w", id, ErrNotFound)
	}
	return nil
}

// Snapshot is one backup of a source, whose bytes are the blob BlobKey.
type Snapshot struct {
	// ID is "snap_…".
	ID string `json:"id"`
	// AccountID and SourceID say whose and of what.
	AccountID string `json:"account_id"`
	SourceID  string `json:"source_id"`
	// TakenAt is when it was taken, in the UTC offset it was recorded in.
	TakenAt time.Time `json:"taken_at"`
	// SizeBytes and SHA256 (lower-case hex) describe the blob.
	SizeBytes int64  `json:"size_bytes"`
	SHA256    string `json:"sha256"`
	// BlobKey is where the blob store keeps the bytes.
	BlobKey string `json:"blob_key"`
	// Tags are labels matched by keep_tags.
	Tags []string `json:"tags"`
	// State is one of SnapshotStates.
	State string `json:"state"`
	// RecordedBy is who recorded it (an API key id).
	RecordedBy string `json:"recorded_by"`
	// RecordedAt is when it was recorded; zero means now.
	RecordedAt time.Time `json:"recorded_at"`
	// TrashedAt is when a sweep moved it to the trash, PurgeAfter when its
	// grace period ends, PurgedAt when its blob was deleted.
	TrashedAt  *time.Time `json:"trashed_at,omitempty"`
	PurgeAfter *time.Time `json:"purge_after,omitempty"`
	PurgedAt   *time.Time `json:"purged_at,omitempty"`
	// UpdatedAt is when its state last changed.
	UpdatedAt time.Time `json:"updated_at"`
	// Integrity is what verification found: SnapshotUnverified,
	// SnapshotVerified or SnapshotCorrupt. A corrupt snapshot keeps its
	// state, but never counts as a source's good snapshot.
	Integrity string `json:"integrity"`
	// VerifiedAt is when it was last verified; VerifyError why it is
	// corrupt.
	VerifiedAt  *time.Time `json:"verified_at,omitempty"`
	VerifyError string     `json:"verify_error,omitempty"`
	// Manifest summarizes the archive of a snapshot a run made (kind,
	// files, source bytes); nil for snapshots recorded by agents.
	Manifest json.RawMessage `json:"manifest,omitempty"`
}

// Snapshot integrity, as verification finds it.
const (
	SnapshotUnverified = "unverified"
	SnapshotVerified   = "verified"
	SnapshotCorrupt    = "corrupt"
)

type snapshotRow struct {
	ID         string       `db:"id"`
	AccountID  string       `db:"account_id"`
	SourceID   string       `db:"source_id"`
	TakenAt    time.Time    `db:"taken_at"`
	UTCOffset  int          `db:"utc_offset"`
	SizeBytes  int64        `db:"size_bytes"`
	SHA256     string       `db:"sha256"`
	BlobKey    string       `db:"blob_key"`
	Tags       []byte       `db:"tags"`
	State      string       `db:"state"`
	RecordedBy string       `db:"recorded_by"`
	RecordedAt time.Time    `db:"recorded_at"`
	TrashedAt  sql.NullTime `db:"trashed_at"`
	PurgeAfter sql.NullTime `db:"purge_after"`
	PurgedAt   sql.NullTime `db:"purged_at"`
	UpdatedAt  time.Time    `db:"updated_at"`
	Integrity  string       `db:"integrity"`
	VerifiedAt sql.NullTime `db:"verified_at"`
	VerifyErr  string       `db:"verify_error"`
	Manifest   []byte       `db:"manifest"`
}

func (r snapshotRow) snapshot() (Snapshot, error) {
	s := Snapshot{
		ID: r.ID, AccountID: r.AccountID, SourceID: r.SourceID,
		TakenAt:   r.TakenAt.In(time.FixedZone("", r.UTCOffset)),
		SizeBytes: r.SizeBytes, SHA256: r.SHA256, BlobKey: r.BlobKey, State: r.State,
		RecordedBy: r.RecordedBy, RecordedAt: r.RecordedAt.UTC(),
		TrashedAt: fromNull(r.TrashedAt), PurgeAfter: fromNull(r.PurgeAfter), PurgedAt: fromNull(r.PurgedAt),
		UpdatedAt: r.UpdatedAt.UTC(), Integrity: r.Integrity, VerifiedAt: fromNull(r.VerifiedAt), VerifyError: r.VerifyErr,
	}
	if len(r.Manifest) > 0 {
		s.Manifest = json.RawMessage(r.Manifest)
	}
	if r.UTCOffset == 0 {
		s.TakenAt = r.TakenAt.UTC()
	}
	if err := json.Unmarshal(r.Tags, &s.Tags); err != nil {
		return Snapshot{}, fmt.Errorf("store: snapshot %s: decoding tags: %w", r.ID, err)
	}
	if s.Tags == nil {
		s.Tags = []string{}
	}
	return s, nil
}

func snapshots(rows []snapshotRow) ([]Snapshot, error) {
	out := make([]Snapshot, 0, len(rows))
	for _, r := range rows {
		s, err := r.snapshot()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

const snapshotColumns = `id, account_id, source_id, taken_at, utc_offset, size_bytes, sha256, blob_key, tags, state,
recorded_by, recorded_at, trashed_at, purge_after, purged_at, updated_at, integrity, verified_at, verify_error, manifest`

const insertSnapshotSQL = `INSERT INTO backup_snapshots (` + snapshotColumns + `)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?, 'unverified', NULL, '', ?)
ON CONFLICT DO NOTHING`

// InsertSnapshot adds s, active, within tx and reports whether it was new:
// false when a snapshot with its id, or one with its blob key, exists.
func (tx *Tx) InsertSnapshot(ctx context.Context, s Snapshot) (bool, error) {
	if s.ID == "" || s.AccountID == "" || s.SourceID == "" || s.TakenAt.IsZero() || s.SHA256 == "" || s.BlobKey == "" || s.RecordedBy == "" {
		return false, errors.New("store: inserting snapshot: id, account, source, time, sha256, blob key and recorder are required")
	}
	tags := s.Tags
	if tags == nil {
		tags = []string{}
	}
	tagJSON, err := json.Marshal(tags)
	if err != nil {
		return false, fmt.Errorf("store: inserting snapshot %s: tags: %w", s.ID, err)
	}
	manifest, err := nullJSON(s.Manifest)
	if err != nil {
		return false, fmt.Errorf("store: inserting snapshot %s: manifest: %w", s.ID, err)
	}
	_, offset := s.TakenAt.Zone()
	at := ts(orNow(s.RecordedAt))
	res, err := tx.tx.ExecContext(ctx, tx.rebind(insertSnapshotSQL),
		s.ID, s.AccountID, s.SourceID, ts(s.TakenAt), offset, s.SizeBytes, s.SHA256, s.BlobKey, string(tagJSON),
		SnapshotActive, s.RecordedBy, at, at, manifest)
	if err != nil {
		return false, fmt.Errorf("store: inserting snapshot %s: %w", s.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: inserting snapshot %s: %w", s.ID, err)
	}
	return n == 1, nil
}

const getSnapshotSQL = `SELECT ` + snapshotColumns + ` FROM backup_snapshots WHERE id = ?`

// GetSnapshot returns snapshot id, or an error wrapping ErrNotFound.
func (q Querier) GetSnapshot(ctx context.Context, id string) (*Snapshot, error) {
	return getSnapshot(ctx, q.db, q.rebind(getSnapshotSQL), id)
}

// SnapshotByBlobKey returns the snapshot whose blob is key, or an error
// wrapping ErrNotFound.
func (tx *Tx) SnapshotByBlobKey(ctx context.Context, key string) (*Snapshot, error) {
	return getSnapshot(ctx, tx.tx, tx.rebind(`SELECT `+snapshotColumns+` FROM backup_snapshots WHERE blob_key = ?`), key)
}

func getSnapshot(ctx context.Context, q dbtx, query, id string) (*Snapshot, error) {
	var r snapshotRow
	err := q.GetContext(ctx, &r, query, id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: snapshot %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: getting snapshot %s: %w", id, err)
	}
	s, err := r.snapshot()
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// SourceSnapshots returns every snapshot of the source in one of states
// (all states when none is given), newest first.
func (q Querier) SourceSnapshots(ctx context.Context, sourceID string, states ...string) ([]Snapshot, error) {
	return sourceSnapshots(ctx, q.db, q.rebind, sourceID, states)
}

func sourceSnapshots(ctx context.Context, q dbtx, rebind func(string) string, sourceID string, states []string) ([]Snapshot, error) {
	query := `SELECT ` + snapshotColumns + ` FROM backup_snapshots WHERE source_id = ?`
	args := []any{sourceID}
	if len(states) > 0 {
		query += ` AND state IN (?` + strings.Repeat(", ?", len(states)-1) + `)`
		for _, st := range states {
			args = append(args, st)
		}
	}
	query += ` ORDER BY taken_at DESC, id`
	var rows []snapshotRow
	if err := q.SelectContext(ctx, &rows, rebind(query), args...); err != nil {
		return nil, fmt.Errorf("store: listing snapshots of %s: %w", sourceID, err)
	}
	return snapshots(rows)
}

// SnapshotCursor is the position after which a page of snapshots starts.
type SnapshotCursor struct {
	TakenAt time.Time
	ID      string
}

// ListSnapshotsParams selects a page of snapshots, newest first (by the
// time they were taken).
type ListSnapshotsParams struct {
	// SourceID restricts the page to one source; AccountID to one
	// account. Either may be "".
	SourceID  string
	AccountID string
	// States restricts the page to these states; empty means all.
	States []string
	// Limit is the most snapshots to return; required.
	Limit int
	// After, when set, starts the page after that snapshot.
	After *SnapshotCursor
}

// ListSnapshots returns up to p.Limit snapshots, newest first.
func (s *Store) ListSnapshots(ctx context.Context, p ListSnapshotsParams) ([]Snapshot, error) {
	if p.Limit <= 0 {
		return nil, fmt.Errorf("store: listing snapshots: limit must be positive, got %d", p.Limit)
	}
	var where []string
	var args []any
	if p.SourceID != "" {
		where = append(where, "source_id = ?")
		args = append(args, p.SourceID)
	}
	if p.AccountID != "" {
		where = append(where, "account_id = ?")
		args = append(args, p.AccountID)
	}
	if len(p.States) > 0 {
		where = append(where, "state IN (?"+strings.Repeat(", ?", len(p.States)-1)+")")
		for _, st := range p.States {
			args = append(args, st)
		}
	}
	if p.After != nil {
		at := ts(p.After.TakenAt)
		where = append(where, "(taken_at < ? OR (taken_at = ? AND id > ?))")
		args = append(args, at, at, p.After.ID)
	}
	q := `SELECT ` + snapshotColumns + ` FROM backup_snapshots`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY taken_at DESC, id LIMIT ?`
	args = append(args, p.Limit)
	var rows []snapshotRow
	if err := s.db.SelectContext(ctx, &rows, s.rebind(q), args...); err != nil {
		return nil, fmt.Errorf("store: listing snapshots: %w", err)
	}
	return snapshots(rows)
}

// SnapshotTally counts a source's snapshots in one state.
type SnapshotTally struct {
	Count int64 `json:"count" db:"n"`
	Bytes int64 `json:"bytes" db:"bytes"`
}

// SnapshotTallies counts the source's snapshots and their bytes by state;
// every state is present.
func (s *Store) SnapshotTallies(ctx context.Context, sourceID string) (map[string]SnapshotTally, error) {
	var rows []struct {
		State string `db:"state"`
		SnapshotTally
	}
	err := s.db.SelectContext(ctx, &rows, s.rebind(`SELECT state, COUNT(*) AS n, COALESCE(SUM(size_bytes), 0) AS bytes
FROM backup_snapshots WHERE source_id = ? GROUP BY state`), sourceID)
	if err != nil {
		return nil, fmt.Errorf("store: counting snapshots of %s: %w", sourceID, err)
	}
	out := make(map[string]SnapshotTally, len(SnapshotStates))
	for _, st := range SnapshotStates {
		out[st] = SnapshotTally{}
	}
	for _, r := range rows {
		out[r.State] = r.SnapshotTally
	}
	return out, nil
}

// MoveSnapshotParams moves a snapshot from one state to the next.
type MoveSnapshotParams struct {
	// ID is the snapshot.
	ID string
	// From is the state it must be in; To the state it goes to.
	From, To string
	// At is the time of the move; zero means now. Moving to trash sets
	// trashed_at, to purged sets purged_at, back to active clears both
	// trash times.
	At time.Time
	// PurgeAfter is when a trashed snapshot's grace period ends; required
	// when To is SnapshotTrash.
	PurgeAfter time.Time
}

// MoveSnapshot moves the snapshot within tx and reports whether it moved:
// false when it was not in p.From (another sweep moved it first, or it
// does not exist), so a repeated step changes nothing.
func (tx *Tx) MoveSnapshot(ctx context.Context, p MoveSnapshotParams) (bool, error) {
	at := ts(orNow(p.At))
	var set string
	args := []any{p.To, at}
	switch p.To {
	case SnapshotTrash:
		if p.PurgeAfter.IsZero() {
			return false, fmt.Errorf("store: trashing snapshot %s: purge-after time required", p.ID)
		}
		set = `, trashed_at = ?, purge_after = ?`
		args = append(args, at, ts(p.PurgeAfter))
	case SnapshotActive:
		set = `, trashed_at = NULL, purge_after = NULL`
	case SnapshotPurging:
	case SnapshotPurged:
		set = `, purged_at = ?`
		args = append(args, at)
	default:
		return false, fmt.Errorf("store: moving snapshot %s: unknown state %q", p.ID, p.To)
	}
	args = append(args, p.ID, p.From)
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE backup_snapshots SET state = ?, updated_at = ?`+set+` WHERE id = ? AND state = ?`), args...)
	if err != nil {
		return false, fmt.Errorf("store: moving snapshot %s from %s to %s: %w", p.ID, p.From, p.To, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: moving snapshot %s: %w", p.ID, err)
	}
	return n == 1, nil
}

// LegalHold keeps a snapshot, or every snapshot of a source, from being
// deleted until it is released.
type LegalHold struct {
	// ID is "hold_…".
	ID string `json:"id"`
	// AccountID and SourceID say whose; SnapshotID is "" for a hold on the
	// whole source.
	AccountID  string `json:"account_id"`
	SourceID   string `json:"source_id"`
	SnapshotID string `json:"snapshot_id,omitempty"`
	// Reason says why, as the person placing it gave it.
	Reason string `json:"reason"`
	// PlacedBy is the API key that placed it; PlacedByOperator is true for
	// operator keys, whose holds only operators may release.
	PlacedBy         string    `json:"placed_by"`
	PlacedByOperator bool      `json:"placed_by_operator"`
	PlacedAt         time.Time `json:"placed_at"`
	// ReleasedAt, ReleasedBy and ReleaseReason are set when it is
	// released.
	ReleasedAt    *time.Time `json:"released_at,omitempty"`
	ReleasedBy    string     `json:"released_by,omitempty"`
	ReleaseReason string     `json:"release_reason,omitempty"`
}

// Target is what the hold keeps: the snapshot id, or the source id for a
// source hold.
func (h LegalHold) Target() string {
	if h.SnapshotID != "" {
		return h.SnapshotID
	}
	return h.SourceID
}

type holdRow struct {
	ID               string         `db:"id"`
	AccountID        string         `db:"account_id"`
	SourceID         string         `db:"source_id"`
	SnapshotID       sql.NullString `db:"snapshot_id"`
	Reason           string         `db:"reason"`
	PlacedBy         string         `db:"placed_by"`
	PlacedByOperator bool           `db:"placed_by_operator"`
	PlacedAt         time.Time      `db:"placed_at"`
	ReleasedAt       sql.NullTime   `db:"released_at"`
	ReleasedBy       string         `db:"released_by"`
	ReleaseReason    string         `db:"release_reason"`
}

func (r holdRow) hold() LegalHold {
	return LegalHold{
		ID: r.ID, AccountID: r.AccountID, SourceID: r.SourceID, SnapshotID: r.SnapshotID.String, Reason: r.Reason,
		PlacedBy: r.PlacedBy, PlacedByOperator: r.PlacedByOperator, PlacedAt: r.PlacedAt.UTC(),
		ReleasedAt: fromNull(r.ReleasedAt), ReleasedBy: r.ReleasedBy, ReleaseReason: r.ReleaseReason,
	}
}

const holdColumns = `id, account_id, source_id, snapshot_id, reason, placed_by, placed_by_operator, placed_at,
released_at, released_by, release_reason`

// InsertHold places h within tx and reports whether it was placed: false
// when its target already has an active hold (or h.ID exists).
func (tx *Tx) InsertHold(ctx context.Context, h LegalHold) (bool, error) {
	if h.ID == "" || h.AccountID == "" || h.SourceID == "" || h.Reason == "" || h.PlacedBy == "" {
		return false, errors.New("store: placing hold: id, account, source, reason and placer are required")
	}
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`INSERT INTO legal_holds
(id, account_id, source_id, snapshot_id, target, reason, placed_by, placed_by_operator, placed_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING`),
		h.ID, h.AccountID, h.SourceID, nullString(h.SnapshotID), h.Target(), h.Reason, h.PlacedBy, h.PlacedByOperator, ts(orNow(h.PlacedAt)))
	if err != nil {
		return false, fmt.Errorf("store: placing hold %s: %w", h.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: placing hold %s: %w", h.ID, err)
	}
	return n == 1, nil
}

// ActiveHold returns the active hold on target (a snapshot or source id),
// or an error wrapping ErrNotFound.
func (tx *Tx) ActiveHold(ctx context.Context, target string) (*LegalHold, error) {
	var r holdRow
	err := tx.tx.GetContext(ctx, &r, tx.rebind(`SELECT `+holdColumns+` FROM legal_holds WHERE target = ? AND released_at IS NULL`), target)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: hold on %s: %w", target, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: getting hold on %s: %w", target, err)
	}
	h := r.hold()
	return &h, nil
}

// GetHold returns hold id, active or released, or an error wrapping
// ErrNotFound.
func (tx *Tx) GetHold(ctx context.Context, id string) (*LegalHold, error) {
	var r holdRow
	err := tx.tx.GetContext(ctx, &r, tx.rebind(`SELECT `+holdColumns+` FROM legal_holds WHERE id = ?`), id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: hold %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: getting hold %s: %w", id, err)
	}
	h := r.hold()
	return &h, nil
}

const sourceHoldsSQL = `SELECT ` + holdColumns + ` FROM legal_holds
WHERE source_id = ? AND released_at IS NULL ORDER BY placed_at, id`

// SourceHolds returns the active holds on the source and on its
// snapshots, oldest first.
func (q Querier) SourceHolds(ctx context.Context, sourceID string) ([]LegalHold, error) {
	return sourceHolds(ctx, q.db, q.rebind(sourceHoldsSQL), sourceID)
}

func sourceHolds(ctx context.Context, q dbtx, query, sourceID string) ([]LegalHold, error) {
	var rows []holdRow
	if err := q.SelectContext(ctx, &rows, query, sourceID); err != nil {
		return nil, fmt.Errorf("store: listing holds of %s: %w", sourceID, err)
	}
	out := make([]LegalHold, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.hold())
	}
	return out, nil
}

// ReleaseHoldParams releases an active hold.
type ReleaseHoldParams struct {
	// ID is the hold.
	ID string
	// By is the API key releasing it; Reason says why (may be "").
	By, Reason string
	// At is the time of release; zero means now.
	At time.Time
}

// ReleaseHold releases the hold within tx and reports whether it was
// active.
func (tx *Tx) ReleaseHold(ctx context.Context, p ReleaseHoldParams) (bool, error) {
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE legal_holds SET released_at = ?, released_by = ?, release_reason = ?
WHERE id = ? AND released_at IS NULL`), ts(orNow(p.At)), p.By, p.Reason, p.ID)
	if err != nil {
		return false, fmt.Errorf("store: releasing hold %s: %w", p.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: releasing hold %s: %w", p.ID, err)
	}
	return n == 1, nil
}

// RetentionAudit is one entry of a source's retention audit trail: a
// snapshot recorded, trashed, purged or restored, a hold placed or
// released, a policy changed, a sweep blocked.
type RetentionAudit struct {
	// ID is assigned by the database; larger is later.
	ID int64 `json:"id"`
	// AccountID and SourceID say whose; SnapshotID is "" for entries
	// about the whole source.
	AccountID  string `json:"account_id"`
	SourceID   string `json:"source_id"`
	SnapshotID string `json:"snapshot_id,omitempty"`
	// Action says what happened, e.g. "snapshot.trashed".
	Action string `json:"action"`
	// Actor is who or what did it: "key:<id>", "sweep:<slot>", …
	Actor string `json:"actor"`
	// Policy is the retention policy a decision was made under.
	Policy json.RawMessage `json:"policy,omitempty"`
	// Reasons say why, in words.
	Reasons []string `json:"reasons"`
	// Detail holds the entry's facts as a JSON object.
	Detail json.RawMessage `json:"detail"`
	// At is when it happened; zero means now.
	At time.Time `json:"at"`
}

type auditEntryRow struct {
	ID         int64     `db:"id"`
	AccountID  string    `db:"account_id"`
	SourceID   string    `db:"source_id"`
	SnapshotID string    `db:"snapshot_id"`
	Action     string    `db:"action"`
	Actor      string    `db:"actor"`
	Policy     []byte    `db:"policy"`
	Reasons    []byte    `db:"reasons"`
	Detail     []byte    `db:"detail"`
	At         time.Time `db:"at"`
}

// AppendRetentionAudit writes e within tx and returns its id.
func (tx *Tx) AppendRetentionAudit(ctx context.Context, e RetentionAudit) (int64, error) {
	if e.AccountID == "" || e.SourceID == "" || e.Action == "" || e.Actor == "" {
		return 0, errors.New("store: auditing: account, source, action and actor are required")
	}
	policy, err := nullJSON(e.Policy)
	if err != nil {
		return 0, fmt.Errorf("store: auditing %s: policy: %w", e.Action, err)
	}
	reasons := e.Reasons
	if reasons == nil {
		reasons = []string{}
	}
	reasonJSON, err := json.Marshal(reasons)
	if err != nil {
		return 0, fmt.Errorf("store: auditing %s: reasons: %w", e.Action, err)
	}
	detail, err := auditDetail(e.Detail)
	if err != nil {
		return 0, fmt.Errorf("store: auditing %s: detail: %w", e.Action, err)
	}
	var id int64
	err = tx.tx.QueryRowxContext(ctx, tx.rebind(`INSERT INTO retention_audit
(account_id, source_id, snapshot_id, action, actor, policy, reasons, detail, at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING id`), e.AccountID, e.SourceID, e.SnapshotID, e.Action, e.Actor, policy, string(reasonJSON), detail, ts(orNow(e.At))).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("store: auditing %s on %s: %w", e.Action, e.SourceID, err)
	}
	return id, nil
}

// ListRetentionAuditParams selects a page of a source's audit trail,
// newest first.
type ListRetentionAuditParams struct {
	// SourceID is required.
	SourceID string
	// SnapshotID, when set, keeps only entries about that snapshot.
	SnapshotID string
	// Limit is the most entries to return; required.
	Limit int
	// BeforeID, when positive, starts the page after (older than) that
	// entry.
	BeforeID int64
}

// ListRetentionAudit returns up to p.Limit entries, newest first.
func (s *Store) ListRetentionAudit(ctx context.Context, p ListRetentionAuditParams) ([]RetentionAudit, error) {
	if p.Limit <= 0 || p.SourceID == "" {
		return nil, fmt.Errorf("store: listing retention audit: source and a positive limit are required")
	}
	q := `SELECT id, account_id, source_id, snapshot_id, action, actor, policy, reasons, detail, at
FROM retention_audit WHERE source_id = ?`
	args := []any{p.SourceID}
	if p.SnapshotID != "" {
		q += ` AND snapshot_id = ?`
		args = append(args, p.SnapshotID)
	}
	if p.BeforeID > 0 {
		q += ` AND id < ?`
		args = append(args, p.BeforeID)
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, p.Limit)
	var rows []auditEntryRow
	if err := s.db.SelectContext(ctx, &rows, s.rebind(q), args...); err != nil {
		return nil, fmt.Errorf("store: listing retention audit of %s: %w", p.SourceID, err)
	}
	out := make([]RetentionAudit, 0, len(rows))
	for _, r := range rows {
		e := RetentionAudit{
			ID: r.ID, AccountID: r.AccountID, SourceID: r.SourceID, SnapshotID: r.SnapshotID,
			Action: r.Action, Actor: r.Actor, Detail: json.RawMessage(r.Detail), At: r.At.UTC(),
		}
		if len(r.Policy) > 0 {
			e.Policy = json.RawMessage(r.Policy)
		}
		if err := json.Unmarshal(r.Reasons, &e.Reasons); err != nil {
			return nil, fmt.Errorf("store: audit entry %d: reasons: %w", r.ID, err)
		}
		if e.Reasons == nil {
			e.Reasons = []string{}
		}
		out = append(out, e)
	}
	return out, nil
}

// nullJSON returns raw as text for a nullable JSON column: nil (and JSON
// null) become NULL; anything else must be valid JSON.
func nullJSON(raw json.RawMessage) (any, error) {
	trimmed := strings.TrimSpace(string(raw))
	if trimmed == "" || trimmed == "null" {
		return nil, nil
	}
	if !json.Valid(raw) {
		return nil, errors.New("not valid JSON")
	}
	return trimmed, nil
}

// auditDetail returns an audit entry's detail as text: "{}" when empty,
// otherwise it must be a JSON object.
func auditDetail(raw json.RawMessage) (string, error) {
	trimmed := strings.TrimSpace(string(raw))
	if trimmed == "" || trimmed == "null" {
		return "{}", nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return "", errors.New("want a JSON object")
	}
	return trimmed, nil
}

// BlobKeysInUse returns which of keys a snapshot not yet purged holds
// (active, in the trash, or being purged): the blobs garbage collection
// must keep.
func (s *Store) BlobKeysInUse(ctx context.Context, keys []string) (map[string]bool, error) {
	out := map[string]bool{}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		page := keys[:n]
		keys = keys[n:]
		query, args, err := sqlx.In(`SELECT DISTINCT blob_key FROM backup_snapshots WHERE state <> ? AND blob_key IN (?)`, SnapshotPurged, page)
		if err != nil {
			return nil, err
		}
		var used []string
		if err := s.db.SelectContext(ctx, &used, s.rebind(query), args...); err != nil {
			return nil, fmt.Errorf("store: reading the blobs snapshots hold: %w", err)
		}
		for _, k := range used {
			out[k] = true
		}
	}
	return out, nil
}
