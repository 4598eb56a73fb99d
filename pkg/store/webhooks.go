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

// WebhookEndpoint is a URL an account asks Levqor to POST its events to.
// It holds no secret: the signing secret of each generation is derived
// from the deployment's key (package notify).
type WebhookEndpoint struct {
	// ID is "whe_…".
	ID          string `json:"id"`
	AccountID   string `json:"account_id"`
	URL         string `json:"url"`
	Description string `json:"description"`
	// EventTypes are the events delivered; empty means every event an
	// endpoint may receive.
	EventTypes []string `json:"event_types"`
	Enabled    bool     `json:"enabled"`
	// DisabledReason says why a disabled endpoint is: its owner's choice,
	// or deliveries failing for too long.
	DisabledReason string `json:"disabled_reason,omitempty"`
	// SecretGeneration counts rotations (1 at creation). While
	// PreviousExpiresAt is ahead, PreviousGeneration signs too.
	SecretGeneration   int        `json:"secret_generation"`
	PreviousGeneration int        `json:"-"`
	PreviousExpiresAt  *time.Time `json:"previous_secret_expires_at,omitempty"`
	// FailingSince is when the current run of failed deliveries began;
	// nil while deliveries succeed.
	FailingSince *time.Time `json:"failing_since,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
}

// Wants reports whether the endpoint takes the event name.
func (e *WebhookEndpoint) Wants(event string) bool {
	if len(e.EventTypes) == 0 {
		return true
	}
	for _, t := range e.EventTypes {
		if t == event {
			return true
		}
	}
	return false
}

// Generations are the secret generations that sign a delivery at now: the
// current one, and the previous one during its overlap.
func (e *WebhookEndpoint) Generations(now time.Time) []int {
	gens := []int{e.SecretGeneration}
	if e.PreviousGeneration > 0 && e.PreviousExpiresAt != nil && now.Before(*e.PreviousExpiresAt) {
		gens = append(gens, e.PreviousGeneration)
	}
	return gens
}

type webhookEndpointRow struct {
	ID                 string       `db:"id"`
	AccountID          string       `db:"account_id"`
	URL                string       `db:"url"`
	Description        string       `db:"description"`
	EventTypes         string       `db:"event_types"`
	Enabled            bool         `db:"enabled"`
	DisabledReason     string       `db:"disabled_reason"`
	SecretGeneration   int          `db:"secret_generation"`
	PreviousGeneration int          `db:"previous_generation"`
	PreviousExpiresAt  sql.NullTime `db:"previous_expires_at"`
	FailingSince       sql.NullTime `db:"failing_since"`
	CreatedAt          time.Time    `db:"created_at"`
	UpdatedAt          time.Time    `db:"updated_at"`
}

func (r webhookEndpointRow) endpoint() (WebhookEndpoint, error) {
	e := WebhookEndpoint{
		ID: r.ID, AccountID: r.AccountID, URL: r.URL, Description: r.Description, Enabled: r.Enabled,
		DisabledReason: r.DisabledReason, SecretGeneration: r.SecretGeneration, PreviousGeneration: r.PreviousGeneration,
		PreviousExpiresAt: fromNull(r.PreviousExpiresAt), FailingSince: fromNull(r.FailingSince),
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
	}
	if err := json.Unmarshal([]byte(r.EventTypes), &e.EventTypes); err != nil {
		return e, fmt.Errorf("store: webhook endpoint %s: event types: %w", r.ID, err)
	}
	if e.EventTypes == nil {
		e.EventTypes = []string{}
	}
	return e, nil
}

const webhookEndpointColumns = `id, account_id, url, description, event_types, enabled, disabled_reason, secret_generation,
previous_generation, previous_expires_at, failing_since, created_at, updated_at`

// InsertWebhookEndpoint records e, a new endpoint with secret generation
// 1. It reports false, changing nothing, when e.ID exists already (the
// command that creates it was redelivered).
func (tx *Tx) InsertWebhookEndpoint(ctx context.Context, e WebhookEndpoint) (bool, error) {
	if e.ID == "" || e.AccountID == "" || e.URL == "" {
		return false, errors.New("store: inserting webhook endpoint: id, account and url are required")
	}
	types, err := json.Marshal(orEmpty(e.EventTypes))
	if err != nil {
		return false, err
	}
	at := ts(orNow(e.CreatedAt))
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`INSERT INTO webhook_endpoints
(id, account_id, url, description, event_types, enabled, disabled_reason, secret_generation, previous_generation, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, 1, 0, ?, ?) ON CONFLICT (id) DO NOTHING`),
		e.ID, e.AccountID, e.URL, e.Description, string(types), e.Enabled, e.DisabledReason, at, at)
	if err != nil {
		return false, fmt.Errorf("store: inserting webhook endpoint %s: %w", e.ID, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// CountWebhookEndpoints counts an account's enabled endpoints.
func (tx *Tx) CountWebhookEndpoints(ctx context.Context, accountID string) (int, error) {
	var n int
	if err := tx.tx.GetContext(ctx, &n, tx.rebind(`SELECT COUNT(*) FROM webhook_endpoints WHERE account_id = ? AND enabled = ?`), accountID, true); err != nil {
		return 0, fmt.Errorf("store: counting webhook endpoints: %w", err)
	}
	return n, nil
}

// LockWebhookEndpoint reads endpoint id for an update within tx (the row
// is locked on PostgreSQL), or ErrNotFound.
func (tx *Tx) LockWebhookEndpoint(ctx context.Context, id string) (*WebhookEndpoint, error) {
	q := getWebhookEndpointSQL
	if tx.tx.DriverName() == DialectPostgres {
		q += ` FOR UPDATE`
	}
	return getWebhookEndpoint(ctx, tx.tx, tx.rebind(q), id)
}

const getWebhookEndpointSQL = `SELECT ` + webhookEndpointColumns + ` FROM webhook_endpoints WHERE id = ?`

func getWebhookEndpoint(ctx context.Context, q dbtx, query, id string) (*WebhookEndpoint, error) {
	var r webhookEndpointRow
	err := q.GetContext(ctx, &r, query, id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: webhook endpoint %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: reading webhook endpoint %s: %w", id, err)
	}
	e, err := r.endpoint()
	return &e, err
}

// UpdateWebhookEndpoint writes e's URL, description, event types, state,
// secret generations and failure clock, as the caller changed them on the
// endpoint it locked.
func (tx *Tx) UpdateWebhookEndpoint(ctx context.Context, e *WebhookEndpoint, at time.Time) error {
	types, err := json.Marshal(orEmpty(e.EventTypes))
	if err != nil {
		return err
	}
	e.UpdatedAt = ts(orNow(at))
	_, err = tx.tx.ExecContext(ctx, tx.rebind(`UPDATE webhook_endpoints SET url = ?, description = ?, event_types = ?, enabled = ?,
disabled_reason = ?, secret_generation = ?, previous_generation = ?, previous_expires_at = ?, failing_since = ?, updated_at = ?
WHERE id = ?`), e.URL, e.Description, string(types), e.Enabled, e.DisabledReason, e.SecretGeneration, e.PreviousGeneration,
		nullTime(e.PreviousExpiresAt), nullTime(e.FailingSince), e.UpdatedAt, e.ID)
	if err != nil {
		return fmt.Errorf("store: updating webhook endpoint %s: %w", e.ID, err)
	}
	return nil
}

// GetWebhookEndpoint returns endpoint id, or ErrNotFound.
func (q Querier) GetWebhookEndpoint(ctx context.Context, id string) (*WebhookEndpoint, error) {
	return getWebhookEndpoint(ctx, q.db, q.rebind(getWebhookEndpointSQL), id)
}

// WebhookEndpointCursor is where a page of endpoints starts: after the
// last endpoint of the previous page.
type WebhookEndpointCursor struct {
	CreatedAt time.Time
	ID        string
}

// ListWebhookEndpointsParams selects endpoints, newest first.
type ListWebhookEndpointsParams struct {
	// AccountID keeps one account's; "" lists all.
	AccountID string
	// EnabledOnly keeps the enabled ones.
	EnabledOnly bool
	// Limit is the most returned; required.
	Limit int
	// After starts the page after that endpoint.
	After *WebhookEndpointCursor
}

// ListWebhookEndpoints returns a page of endpoints.
func (q Querier) ListWebhookEndpoints(ctx context.Context, p ListWebhookEndpointsParams) ([]WebhookEndpoint, error) {
	if p.Limit <= 0 {
		return nil, fmt.Errorf("store: listing webhook endpoints: limit must be positive, got %d", p.Limit)
	}
	var where []string
	var args []any
	if p.AccountID != "" {
		where, args = append(where, "account_id = ?"), append(args, p.AccountID)
	}
	if p.EnabledOnly {
		where, args = append(where, "enabled = ?"), append(args, true)
	}
	if p.After != nil {
		at := ts(p.After.CreatedAt)
		where, args = append(where, "(created_at < ? OR (created_at = ? AND id < ?))"), append(args, at, at, p.After.ID)
	}
	query := `SELECT ` + webhookEndpointColumns + ` FROM webhook_endpoints`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY created_at DESC, id DESC LIMIT ?"
	args = append(args, p.Limit)
	var rows []webhookEndpointRow
	if err := q.db.SelectContext(ctx, &rows, q.rebind(query), args...); err != nil {
		return nil, fmt.Errorf("store: listing webhook endpoints: %w", err)
	}
	out := make([]WebhookEndpoint, 0, len(rows))
	for _, r := range rows {
		e, err := r.endpoint()
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// WebhookAttempt is one try at delivering a webhook notification: a line
// of its endpoint's delivery log.
type WebhookAttempt struct {
	ID             int64     `json:"id" db:"id"`
	EndpointID     string    `json:"endpoint_id" db:"endpoint_id"`
	NotificationID string    `json:"notification_id" db:"notification_id"`
	Event          string    `json:"event" db:"event"`
	AttemptedAt    time.Time `json:"attempted_at" db:"attempted_at"`
	// StatusCode is the receiver's answer; 0 when there was none.
	StatusCode int   `json:"status_code" db:"status_code"`
	DurationMS int64 `json:"duration_ms" db:"duration_ms"`
	OK         bool  `json:"ok" db:"ok"`
	// Error says why the attempt failed; Response is the start of the
	// receiver's answer.
	Error    string `json:"error,omitempty" db:"error"`
	Response string `json:"response,omitempty" db:"response"`
}

// InsertWebhookAttempt appends a to its endpoint's delivery log.
func (tx *Tx) InsertWebhookAttempt(ctx context.Context, a WebhookAttempt) error {
	_, err := tx.tx.ExecContext(ctx, tx.rebind(`INSERT INTO webhook_attempts
(endpoint_id, notification_id, event, attempted_at, status_code, duration_ms, ok, error, response) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		a.EndpointID, a.NotificationID, a.Event, ts(orNow(a.AttemptedAt)), a.StatusCode, a.DurationMS, a.OK, a.Error, a.Response)
	if err != nil {
		return fmt.Errorf("store: recording webhook attempt on %s: %w", a.EndpointID, err)
	}
	return nil
}

// ListWebhookAttempts returns an endpoint's newest attempts first, up to
// limit, starting below the attempt id before when it is positive.
func (q Querier) ListWebhookAttempts(ctx context.Context, endpointID string, before int64, limit int) ([]WebhookAttempt, error) {
	query := `SELECT id, endpoint_id, notification_id, event, attempted_at, status_code,
duration_ms, ok, error, response FROM webhook_attempts WHERE endpoint_id = ?`
	args := []any{endpointID}
	if before > 0 {
		query, args = query+` AND id < ?`, append(args, before)
	}
	var out []WebhookAttempt
	err := q.db.SelectContext(ctx, &out, q.rebind(query+` ORDER BY id DESC LIMIT ?`), append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("store: listing attempts of webhook endpoint %s: %w", endpointID, err)
	}
	for i := range out {
		out[i].AttemptedAt = out[i].AttemptedAt.UTC()
	}
	return out, nil
}
