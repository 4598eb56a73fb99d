package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// AuditEntry is one operator action in the audit trail: who did what, with
// which parameters (filters, sequences, flags), and what came of it.
type AuditEntry struct {
	// ID is assigned by the database.
	ID int64 `json:"id"`
	// At is when the action finished; zero means now.
	At time.Time `json:"at"`
	// Actor is who acted: the operator's login for the CLI, the
	// authenticated principal for the admin API.
	Actor string `json:"actor"`
	// Action names what was done, e.g. "dlq.replay" or "stripe.backfill".
	Action string `json:"action"`
	// Params are the action's inputs as a JSON object; empty means {}.
	Params json.RawMessage `json:"params"`
	// Counts are the action's results as a JSON object, e.g.
	// {"selected":3,"replayed":2,"failed":1}; empty means {}.
	Counts json.RawMessage `json:"counts"`
	// Outcome sums the action up: AuditOutcomeOK, AuditOutcomePartial,
	// AuditOutcomeFailed or AuditOutcomeDryRun.
	Outcome string `json:"outcome"`
}

// Audit outcomes.
const (
	// AuditOutcomeOK means the action did all it was asked.
	AuditOutcomeOK = "ok"
	// AuditOutcomePartial means some items succeeded and some failed.
	AuditOutcomePartial = "partial"
	// AuditOutcomeFailed means nothing the action was asked to change was
	// changed.
	AuditOutcomeFailed = "failed"
	// AuditOutcomeDryRun means the action only reported what it would do.
	AuditOutcomeDryRun = "dry_run"
	// AuditOutcomeAccepted means the action became a command a worker
	// carries out; its result is the command's (GET /v1/commands/{id}).
	AuditOutcomeAccepted = "accepted"
)

// MaxAuditFieldLength bounds actor and action so that a hostile or broken
// caller cannot bloat the audit table through them.
const MaxAuditFieldLength = 200

const recordAuditSQL = `INSERT INTO operator_audit (at, actor, action, params, counts, outcome)
VALUES (?, ?, ?, ?, ?, ?)
RETURNING id`

// RecordAudit appends e to the audit trail and returns its id. Actor and
// Action are required; Params and Counts must be JSON objects when set.
func (s *Store) RecordAudit(ctx context.Context, e AuditEntry) (int64, error) {
	if strings.TrimSpace(e.Actor) == "" || strings.TrimSpace(e.Action) == "" {
		return 0, fmt.Errorf("store: recording audit entry: actor and action are required (got %q, %q)", e.Actor, e.Action)
	}
	if len(e.Actor) > MaxAuditFieldLength || len(e.Action) > MaxAuditFieldLength {
		return 0, fmt.Errorf("store: recording audit entry: actor and action are limited to %d bytes", MaxAuditFieldLength)
	}
	params, err := jsonObject(e.Params)
	if err != nil {
		return 0, fmt.Errorf("store: recording audit entry %s: params: %w", e.Action, err)
	}
	counts, err := jsonObject(e.Counts)
	if err != nil {
		return 0, fmt.Errorf("store: recording audit entry %s: counts: %w", e.Action, err)
	}
	var id int64
	err = s.db.GetContext(ctx, &id, s.rebind(recordAuditSQL),
		ts(orNow(e.At)), cleanError(e.Actor), cleanError(e.Action), params, counts, e.Outcome)
	if err != nil {
		return 0, fmt.Errorf("store: recording audit entry %s by %s: %w", e.Action, e.Actor, err)
	}
	return id, nil
}

// jsonObject returns raw as text to store in a JSON column: "{}" when
// empty, an error unless it is a JSON object.
func jsonObject(raw json.RawMessage) (string, error) {
	if len(raw) == 0 {
		return "{}", nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return "", fmt.Errorf("want a JSON object: %w", err)
	}
	return string(raw), nil
}

// ListAuditParams selects audit entries. Zero fields do not filter.
type ListAuditParams struct {
	// Action keeps entries of this action only.
	Action string
	// Actor keeps entries by this actor only.
	Actor string
	// Since keeps entries at or after this time.
	Since time.Time
	// Limit caps the number of entries, newest first; 0 means
	// ListAuditLimitDefault.
	Limit int
}

// ListAuditLimitDefault is how many entries ListAudit returns when the
// caller sets no limit.
const ListAuditLimitDefault = 100

type auditRow struct {
	ID      int64     `db:"id"`
	At      time.Time `db:"at"`
	Actor   string    `db:"actor"`
	Action  string    `db:"action"`
	Params  []byte    `db:"params"`
	Counts  []byte    `db:"counts"`
	Outcome string    `db:"outcome"`
}

// ListAudit returns audit entries matching p, newest first.
func (s *Store) ListAudit(ctx context.Context, p ListAuditParams) ([]AuditEntry, error) {
	var where []string
	var args []any
	if p.Action != "" {
		where = append(where, "action = ?")
		args = append(args, p.Action)
	}
	if p.Actor != "" {
		where = append(where, "actor = ?")
		args = append(args, p.Actor)
	}
	if !p.Since.IsZero() {
		where = append(where, "at >= ?")
		args = append(args, ts(p.Since))
	}
	limit := p.Limit
	if limit <= 0 {
		limit = ListAuditLimitDefault
	}
	q := `SELECT id, at, actor, action, params, counts, outcome FROM operator_audit`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, limit)
	var rows []auditRow
	if err := s.db.SelectContext(ctx, &rows, s.rebind(q), args...); err != nil {
		return nil, fmt.Errorf("store: listing audit entries: %w", err)
	}
	out := make([]AuditEntry, 0, len(rows))
	for _, r := range rows {
		out = append(out, AuditEntry{
			ID: r.ID, At: r.At.UTC(), Actor: r.Actor, Action: r.Action,
			Params: json.RawMessage(r.Params), Counts: json.RawMessage(r.Counts), Outcome: r.Outcome,
		})
	}
	return out, nil
}
