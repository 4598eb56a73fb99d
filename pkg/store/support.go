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

// Ticket statuses. A ticket moves open → pending → resolved → closed and
// may be reopened from resolved or closed.
const (
	TicketOpen     = "open"
	TicketPending  = "pending"
	TicketResolved = "resolved"
	TicketClosed   = "closed"
)

// TicketStatuses lists every status in lifecycle order.
var TicketStatuses = []string{TicketOpen, TicketPending, TicketResolved, TicketClosed}

// Ticket origins: who opened it.
const (
	TicketByCustomer = "customer"
	TicketByAgent    = "agent"
	TicketAutomatic  = "automatic"
)

// Message authors.
const (
	AuthorCustomer = "customer"
	AuthorAgent    = "agent"
	AuthorSystem   = "system"
)

// TicketPause is a span during which a ticket's resolution clock stood
// still (pending, or resolved until reopened). To is nil while it lasts.
type TicketPause struct {
	From time.Time  `json:"from"`
	To   *time.Time `json:"to"`
}

// Ticket is a support ticket with its triage decision and SLA clocks.
type Ticket struct {
	// ID is "tkt_…".
	ID        string `json:"id"`
	AccountID string `json:"account_id"`
	Subject   string `json:"subject"`
	// Status is one of TicketStatuses.
	Status   string `json:"status"`
	Category string `json:"category"`
	Severity string `json:"severity"`
	Queue    string `json:"queue"`
	// Tier, SLAClass and DFY are the account as routing and the SLA saw
	// it when the ticket opened.
	Tier     string `json:"tier"`
	SLAClass string `json:"sla_class"`
	DFY      bool   `json:"dfy"`
	// Origin is TicketByCustomer, TicketByAgent or TicketAutomatic.
	Origin string `json:"origin"`
	// IncidentKey identifies the incident an automatic ticket is about;
	// "" for tickets people opened.
	IncidentKey string `json:"incident_key,omitempty"`
	// Triage is the classifier's decision as JSON: category, severity,
	// queue and fired_rules.
	Triage json.RawMessage `json:"triage"`
	// OpenedAt starts both SLA clocks; FirstResponseAt stops the first,
	// ResolvedAt the second.
	OpenedAt        time.Time  `json:"opened_at"`
	FirstResponseAt *time.Time `json:"first_response_at"`
	ResolvedAt      *time.Time `json:"resolved_at"`
	ClosedAt        *time.Time `json:"closed_at"`
	// Pauses of the resolution clock, oldest first.
	Pauses []TicketPause `json:"pauses"`
	// FirstResponseDue and ResolutionDue are the due times as last
	// computed; nil while the clock is stopped or paused before its due
	// time.
	FirstResponseDue *time.Time `json:"first_response_due"`
	ResolutionDue    *time.Time `json:"resolution_due"`
	// FirstResponseState and ResolutionState (ok, at_risk, breached, met)
	// are as of SLACheckedAt.
	FirstResponseState string    `json:"first_response_state"`
	ResolutionState    string    `json:"resolution_state"`
	SLACheckedAt       time.Time `json:"sla_checked_at"`
	// Breached is set once a clock of the ticket breached.
	Breached  bool      `json:"breached"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

type ticketRow struct {
	ID                 string         `db:"id"`
	AccountID          string         `db:"account_id"`
	Subject            string         `db:"subject"`
	Status             string         `db:"status"`
	Category           string         `db:"category"`
	Severity           string         `db:"severity"`
	Queue              string         `db:"queue"`
	Tier               string         `db:"tier"`
	SLAClass           string         `db:"sla_class"`
	DFY                bool           `db:"dfy"`
	Origin             string         `db:"origin"`
	IncidentKey        sql.NullString `db:"incident_key"`
	Triage             []byte         `db:"triage"`
	OpenedAt           time.Time      `db:"opened_at"`
	FirstResponseAt    sql.NullTime   `db:"first_response_at"`
	ResolvedAt         sql.NullTime   `db:"resolved_at"`
	ClosedAt           sql.NullTime   `db:"closed_at"`
	Pauses             []byte         `db:"pauses"`
	FirstResponseDue   sql.NullTime   `db:"first_response_due"`
	ResolutionDue      sql.NullTime   `db:"resolution_due"`
	FirstResponseState string         `db:"first_response_state"`
	ResolutionState    string         `db:"resolution_state"`
	SLACheckedAt       time.Time      `db:"sla_checked_at"`
	Breached           bool           `db:"breached"`
	CreatedAt          time.Time      `db:"created_at"`
	UpdatedAt          time.Time      `db:"updated_at"`
}

func (r ticketRow) ticket() (Ticket, error) {
	t := Ticket{
		ID: r.ID, AccountID: r.AccountID, Subject: r.Subject, Status: r.Status, Category: r.Category,
		Severity: r.Severity, Queue: r.Queue, Tier: r.Tier, SLAClass: r.SLAClass, DFY: r.DFY, Origin: r.Origin,
		IncidentKey: r.IncidentKey.String, Triage: json.RawMessage(nonNil(r.Triage)), OpenedAt: r.OpenedAt.UTC(),
		FirstResponseAt: fromNull(r.FirstResponseAt), ResolvedAt: fromNull(r.ResolvedAt), ClosedAt: fromNull(r.ClosedAt),
		FirstResponseDue: fromNull(r.FirstResponseDue), ResolutionDue: fromNull(r.ResolutionDue),
		FirstResponseState: r.FirstResponseState, ResolutionState: r.ResolutionState, SLACheckedAt: r.SLACheckedAt.UTC(),
		Breached: r.Breached, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
	}
	t.Pauses = []TicketPause{}
	if len(r.Pauses) > 0 {
		if err := json.Unmarshal(r.Pauses, &t.Pauses); err != nil {
			return Ticket{}, fmt.Errorf("store: ticket %s: decoding pauses: %w", r.ID, err)
		}
	}
	for i := range t.Pauses {
		t.Pauses[i].From = t.Pauses[i].From.UTC()
		if t.Pauses[i].To != nil {
			to := t.Pauses[i].To.UTC()
			t.Pauses[i].To = &to
		}
	}
	return t, nil
}

const ticketColumns = `id, account_id, subject, status, category, severity, queue, tier, sla_class, dfy, origin,
incident_key, triage, opened_at, first_response_at, resolved_at, closed_at, pauses, first_response_due,
resolution_due, first_response_state, resolution_state, sla_checked_at, breached, created_at, updated_at`

const insertTicketSQL = `INSERT INTO support_tickets (` + ticketColumns + `)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING`

// pausesJSON encodes pauses for the pauses column, in UTC.
func pausesJSON(pauses []TicketPause) (string, error) {
	out := make([]TicketPause, 0, len(pauses))
	for _, p := range pauses {
		q := TicketPause{From: ts(p.From)}
		if p.To != nil {
			to := ts(*p.To)
			q.To = &to
		}
		out = append(out, q)
	}
	b, err := json.Marshal(out)
	return string(b), err
}

func stateOr(s string) string {
	if s == "" {
		return "ok"
	}
	return s
}

// InsertTicket adds t within tx and reports whether it was new: false when
// a ticket with its id, or with its incident key in the account, exists.
func (tx *Tx) InsertTicket(ctx context.Context, t Ticket) (bool, error) {
	if t.ID == "" || t.AccountID == "" || t.Subject == "" || t.Status == "" || t.Category == "" ||
		t.Severity == "" || t.Queue == "" || t.SLAClass == "" || t.Origin == "" || t.OpenedAt.IsZero() {
		return false, errors.New("store: inserting ticket: id, account, subject, status, category, severity, queue, SLA class, origin and opening time are required")
	}
	if !json.Valid(t.Triage) {
		return false, fmt.Errorf("store: inserting ticket %s: triage is not valid JSON", t.ID)
	}
	pauses, err := pausesJSON(t.Pauses)
	if err != nil {
		return false, fmt.Errorf("store: inserting ticket %s: %w", t.ID, err)
	}
	var incident any
	if t.IncidentKey != "" {
		incident = t.IncidentKey
	}
	created := ts(orNow(t.CreatedAt))
	updated := created
	if !t.UpdatedAt.IsZero() {
		updated = ts(t.UpdatedAt)
	}
	checked := ts(t.OpenedAt)
	if !t.SLACheckedAt.IsZero() {
		checked = ts(t.SLACheckedAt)
	}
	res, err := tx.tx.ExecContext(ctx, tx.rebind(insertTicketSQL),
		t.ID, t.AccountID, t.Subject, t.Status, t.Category, t.Severity, t.Queue, t.Tier, t.SLAClass, t.DFY, t.Origin,
		incident, string(t.Triage), ts(t.OpenedAt), nullTime(t.FirstResponseAt), nullTime(t.ResolvedAt), nullTime(t.ClosedAt),
		pauses, nullTime(t.FirstResponseDue), nullTime(t.ResolutionDue), stateOr(t.FirstResponseState),
		stateOr(t.ResolutionState), checked, t.Breached, created, updated)
	if err != nil {
		return false, fmt.Errorf("store: inserting ticket %s: %w", t.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: inserting ticket %s: %w", t.ID, err)
	}
	return n == 1, nil
}

const updateTicketSQL = `UPDATE support_tickets SET status = ?, category = ?, severity = ?, queue = ?,
first_response_at = ?, resolved_at = ?, closed_at = ?, pauses = ?, first_response_due = ?, resolution_due = ?,
first_response_state = ?, resolution_state = ?, sla_checked_at = ?, breached = ?, updated_at = ?
WHERE id = ?`

// UpdateTicket writes the changeable fields of t (status, category,
// severity, queue, the clocks, pauses, due times, states, breached and
// updated_at) within tx. It fails wrapping ErrNotFound for an unknown id.
func (tx *Tx) UpdateTicket(ctx context.Context, t Ticket) error {
	pauses, err := pausesJSON(t.Pauses)
	if err != nil {
		return fmt.Errorf("store: updating ticket %s: %w", t.ID, err)
	}
	checked := t.SLACheckedAt
	if checked.IsZero() {
		checked = t.OpenedAt
	}
	res, err := tx.tx.ExecContext(ctx, tx.rebind(updateTicketSQL),
		t.Status, t.Category, t.Severity, t.Queue, nullTime(t.FirstResponseAt), nullTime(t.ResolvedAt), nullTime(t.ClosedAt),
		pauses, nullTime(t.FirstResponseDue), nullTime(t.ResolutionDue), stateOr(t.FirstResponseState),
		stateOr(t.ResolutionState), ts(checked), t.Breached, ts(orNow(t.UpdatedAt)), t.ID)
	if err != nil {
		return fmt.Errorf("store: updating ticket %s: %w", t.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: updating ticket %s: %w", t.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("store: ticket %s: %w", t.ID, ErrNotFound)
	}
	return nil
}

const getTicketSQL = `SELECT ` + ticketColumns + ` FROM support_tickets WHERE id = ?`

func getTicket(ctx context.Context, q dbtx, query string, args ...any) (*Ticket, error) {
	var r ticketRow
	err := q.GetContext(ctx, &r, query, args...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: ticket %v: %w", args, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: getting ticket %v: %w", args, err)
	}
	t, err := r.ticket()
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// GetTicket returns ticket id, or an error wrapping ErrNotFound.
func (s *Store) GetTicket(ctx context.Context, id string) (*Ticket, error) {
	return getTicket(ctx, s.db, s.rebind(getTicketSQL), id)
}

// LockTicket returns ticket id and locks its row until tx ends (SELECT …
// FOR UPDATE on PostgreSQL; SQLite serializes writers anyway), so that a
// message, a status change and the SLA check never overwrite each other.
func (tx *Tx) LockTicket(ctx context.Context, id string) (*Ticket, error) {
	q := getTicketSQL
	if tx.tx.DriverName() == DialectPostgres {
		q += ` FOR UPDATE`
	}
	return getTicket(ctx, tx.tx, tx.rebind(q), id)
}

// LockTicketByIncident returns, locked, the account's ticket about
// incident, or an error wrapping ErrNotFound.
func (tx *Tx) LockTicketByIncident(ctx context.Context, accountID, incident string) (*Ticket, error) {
	q := `SELECT ` + ticketColumns + ` FROM support_tickets WHERE account_id = ? AND incident_key = ?`
	if tx.tx.DriverName() == DialectPostgres {
		q += ` FOR UPDATE`
	}
	return getTicket(ctx, tx.tx, tx.rebind(q), accountID, incident)
}

// TicketCursor is the position after which a page of tickets starts
// (newest first by opening time, then id).
type TicketCursor struct {
	OpenedAt time.Time
	ID       string
}

// ListTicketsParams filters ListTickets. Empty fields match everything.
type ListTicketsParams struct {
	// AccountID keeps one account's tickets.
	AccountID string
	// Statuses keeps tickets in one of these statuses.
	Statuses []string
	// Queue keeps one queue's tickets.
	Queue string
	// Breached, when set, keeps tickets that have (true) or have not
	// (false) breached a clock: recorded breaches and running clocks past
	// their due time at Now.
	Breached *bool
	// Now is the instant Breached is judged at; zero means now.
	Now time.Time
	// Limit is the page size; required.
	Limit int
	// After continues from a previous page.
	After *TicketCursor
}

// ListTickets returns up to p.Limit tickets, newest first.
func (s *Store) ListTickets(ctx context.Context, p ListTicketsParams) ([]Ticket, error) {
	if p.Limit <= 0 {
		return nil, fmt.Errorf("store: listing tickets: limit must be positive, got %d", p.Limit)
	}
	var where []string
	var args []any
	if p.AccountID != "" {
		where = append(where, "account_id = ?")
		args = append(args, p.AccountID)
	}
	if len(p.Statuses) > 0 {
		where = append(where, "status IN (?"+strings.Repeat(", ?", len(p.Statuses)-1)+")")
		for _, st := range p.Statuses {
			args = append(args, st)
		}
	}
	if p.Queue != "" {
		where = append(where, "queue = ?")
		args = append(args, p.Queue)
	}
	if p.Breached != nil {
		now := ts(orNow(p.Now))
		cond := `(breached
OR (first_response_at IS NULL AND status IN ('open', 'pending') AND first_response_due IS NOT NULL AND first_response_due < ?)
OR (status = 'open' AND resolution_due IS NOT NULL AND resolution_due < ?))`
		if !*p.Breached {
			cond = `NOT ` + cond
		}
		where = append(where, cond)
		args = append(args, now, now)
	}
	if p.After != nil {
		at := ts(p.After.OpenedAt)
		where = append(where, "(opened_at < ? OR (opened_at = ? AND id < ?))")
		args = append(args, at, at, p.After.ID)
	}
	q := `SELECT ` + ticketColumns + ` FROM support_tickets`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY opened_at DESC, id DESC LIMIT ?`
	args = append(args, p.Limit)
	var rows []ticketRow
	if err := s.db.SelectContext(ctx, &rows, s.rebind(q), args...); err != nil {
		return nil, fmt.Errorf("store: listing tickets: %w", err)
	}
	return tickets(rows)
}

func tickets(rows []ticketRow) ([]Ticket, error) {
	out := make([]Ticket, 0, len(rows))
	for _, r := range rows {
		t, err := r.ticket()
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// ActiveTicketIDs returns up to limit ids of open and pending tickets
// (the ones whose SLA clocks can still escalate) after the id after, in
// id order, for the SLA check to page through.
func (s *Store) ActiveTicketIDs(ctx context.Context, after string, limit int) ([]string, error) {
	var ids []string
	err := s.db.SelectContext(ctx, &ids, s.rebind(`SELECT id FROM support_tickets
WHERE status IN ('open', 'pending') AND id > ? ORDER BY id LIMIT ?`), after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: listing active tickets: %w", err)
	}
	return ids, nil
}

// ResolvedTicketIDs returns, in id order after after, up to limit ids of
// tickets resolved before before and still resolved (not closed, not
// reopened).
func (s *Store) ResolvedTicketIDs(ctx context.Context, before time.Time, after string, limit int) ([]string, error) {
	var ids []string
	err := s.db.SelectContext(ctx, &ids, s.rebind(`SELECT id FROM support_tickets
WHERE status = ? AND resolved_at < ? AND id > ? ORDER BY id LIMIT ?`), TicketResolved, ts(before), after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: listing resolved tickets: %w", err)
	}
	return ids, nil
}

// StalledIncidentTicketIDs returns, in id order after after, up to limit
// ids of open or pending tickets whose incident key starts with prefix and
// whose last change is before before.
func (s *Store) StalledIncidentTicketIDs(ctx context.Context, prefix string, before time.Time, after string, limit int) ([]string, error) {
	var ids []string
	err := s.db.SelectContext(ctx, &ids, s.rebind(`SELECT id FROM support_tickets
WHERE substr(incident_key, 1, ?) = ? AND status IN (?, ?) AND updated_at < ? AND id > ? ORDER BY id LIMIT ?`),
		len(prefix), prefix, TicketOpen, TicketPending, ts(before), after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: listing stalled tickets: %w", err)
	}
	return ids, nil
}

// TicketMessage is one message of a ticket's conversation.
type TicketMessage struct {
	ID       int64  `json:"id" db:"id"`
	TicketID string `json:"ticket_id" db:"ticket_id"`
	// AccountID is the ticket's account.
	AccountID string `json:"account_id" db:"account_id"`
	// Author is AuthorCustomer, AuthorAgent or AuthorSystem.
	Author string `json:"author" db:"author"`
	// KeyID is the API key that wrote it; "" for system messages.
	KeyID string    `json:"key_id,omitempty" db:"key_id"`
	Body  string    `json:"body" db:"body"`
	At    time.Time `json:"at" db:"at"`
}

// AppendTicketMessage adds m within tx and returns its id.
func (tx *Tx) AppendTicketMessage(ctx context.Context, m TicketMessage) (int64, error) {
	if m.TicketID == "" || m.AccountID == "" || m.Author == "" || m.Body == "" {
		return 0, errors.New("store: appending ticket message: ticket, account, author and body are required")
	}
	return tx.insertReturningID(ctx, `INSERT INTO support_messages (ticket_id, account_id, author, key_id, body, at)
VALUES (?, ?, ?, ?, ?, ?)`, m.TicketID, m.AccountID, m.Author, m.KeyID, m.Body, ts(orNow(m.At)))
}

// insertReturningID runs an INSERT and returns the new row's id.
func (tx *Tx) insertReturningID(ctx context.Context, query string, args ...any) (int64, error) {
	var id int64
	if err := tx.tx.GetContext(ctx, &id, tx.rebind(query+` RETURNING id`), args...); err != nil {
		return 0, fmt.Errorf("store: %s: %w", strings.Fields(query)[2], err)
	}
	return id, nil
}

// TicketMessages returns up to limit of a ticket's messages after the
// message id after (0 for the first), oldest first.
func (s *Store) TicketMessages(ctx context.Context, ticketID string, after int64, limit int) ([]TicketMessage, error) {
	out := []TicketMessage{}
	err := s.db.SelectContext(ctx, &out, s.rebind(`SELECT id, ticket_id, account_id, author, key_id, body, at
FROM support_messages WHERE ticket_id = ? AND id > ? ORDER BY id LIMIT ?`), ticketID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: listing messages of %s: %w", ticketID, err)
	}
	for i := range out {
		out[i].At = out[i].At.UTC()
	}
	return out, nil
}

// TicketEvent is one entry of a ticket's history.
type TicketEvent struct {
	ID        int64  `json:"id"`
	TicketID  string `json:"ticket_id"`
	AccountID string `json:"account_id"`
	// Kind says what happened: opened, message_added, status_changed,
	// reopened, escalated, sla_at_risk, incident_repeated.
	Kind string `json:"kind"`
	// Actor is who or what acted: "key:<key id>", "sla_check",
	// "event:<subject>".
	Actor string `json:"actor"`
	// Detail is a JSON object.
	Detail json.RawMessage `json:"detail"`
	At     time.Time       `json:"at"`
}

type ticketEventRow struct {
	ID        int64     `db:"id"`
	TicketID  string    `db:"ticket_id"`
	AccountID string    `db:"account_id"`
	Kind      string    `db:"kind"`
	Actor     string    `db:"actor"`
	Detail    []byte    `db:"detail"`
	At        time.Time `db:"at"`
}

// AppendTicketEvent adds e to its ticket's history within tx.
func (tx *Tx) AppendTicketEvent(ctx context.Context, e TicketEvent) (int64, error) {
	if e.TicketID == "" || e.AccountID == "" || e.Kind == "" || e.Actor == "" {
		return 0, errors.New("store: appending ticket event: ticket, account, kind and actor are required")
	}
	detail, err := auditDetail(e.Detail)
	if err != nil {
		return 0, fmt.Errorf("store: appending ticket event: %w", err)
	}
	return tx.insertReturningID(ctx, `INSERT INTO support_ticket_events (ticket_id, account_id, kind, actor, detail, at)
VALUES (?, ?, ?, ?, ?, ?)`, e.TicketID, e.AccountID, e.Kind, e.Actor, detail, ts(orNow(e.At)))
}

// TicketEvents returns a ticket's history, oldest first.
func (s *Store) TicketEvents(ctx context.Context, ticketID string) ([]TicketEvent, error) {
	var rows []ticketEventRow
	err := s.db.SelectContext(ctx, &rows, s.rebind(`SELECT id, ticket_id, account_id, kind, actor, detail, at
FROM support_ticket_events WHERE ticket_id = ? ORDER BY id`), ticketID)
	if err != nil {
		return nil, fmt.Errorf("store: listing history of %s: %w", ticketID, err)
	}
	out := make([]TicketEvent, 0, len(rows))
	for _, r := range rows {
		out = append(out, TicketEvent{ID: r.ID, TicketID: r.TicketID, AccountID: r.AccountID, Kind: r.Kind, Actor: r.Actor,
			Detail: json.RawMessage(nonNil(r.Detail)), At: r.At.UTC()})
	}
	return out, nil
}

// TicketEscalation is one escalation the SLA check raised on a ticket.
type TicketEscalation struct {
	ID        int64  `json:"id" db:"id"`
	TicketID  string `json:"ticket_id" db:"ticket_id"`
	AccountID string `json:"account_id" db:"account_id"`
	// Key is "<clock>.<state>"; a ticket has at most one escalation per
	// key.
	Key   string `json:"key" db:"key"`
	Clock string `json:"clock" db:"clock"`
	// State is at_risk or breached.
	State          string     `json:"state" db:"state"`
	SeverityBefore string     `json:"severity_before" db:"severity_before"`
	SeverityAfter  string     `json:"severity_after" db:"severity_after"`
	QueueBefore    string     `json:"queue_before" db:"queue_before"`
	QueueAfter     string     `json:"queue_after" db:"queue_after"`
	DueAt          *time.Time `json:"due_at" db:"-"`
	At             time.Time  `json:"at" db:"at"`
}

type escalationRow struct {
	TicketEscalation
	Due sql.NullTime `db:"due_at"`
}

// RecordEscalation adds e within tx and reports whether it was new: false
// when the ticket already has an escalation with e's key, in which case
// nothing changes.
func (tx *Tx) RecordEscalation(ctx context.Context, e TicketEscalation) (bool, error) {
	if e.TicketID == "" || e.AccountID == "" || e.Key == "" || e.Clock == "" || e.State == "" {
		return false, errors.New("store: recording escalation: ticket, account, key, clock and state are required")
	}
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`INSERT INTO support_escalations
(ticket_id, account_id, key, clock, state, severity_before, severity_after, queue_before, queue_after, due_at, at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ticket_id, key) DO NOTHING`),
		e.TicketID, e.AccountID, e.Key, e.Clock, e.State, e.SeverityBefore, e.SeverityAfter, e.QueueBefore, e.QueueAfter,
		nullTime(e.DueAt), ts(orNow(e.At)))
	if err != nil {
		return false, fmt.Errorf("store: recording escalation %s of %s: %w", e.Key, e.TicketID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: recording escalation %s of %s: %w", e.Key, e.TicketID, err)
	}
	return n == 1, nil
}

const escalationColumns = `id, ticket_id, account_id, key, clock, state, severity_before, severity_after, queue_before, queue_after, due_at, at`

func escalations(rows []escalationRow) []TicketEscalation {
	out := make([]TicketEscalation, 0, len(rows))
	for _, r := range rows {
		e := r.TicketEscalation
		e.DueAt = fromNull(r.Due)
		e.At = e.At.UTC()
		out = append(out, e)
	}
	return out
}

// TicketEscalations returns a ticket's escalations, oldest first.
func (s *Store) TicketEscalations(ctx context.Context, ticketID string) ([]TicketEscalation, error) {
	var rows []escalationRow
	err := s.db.SelectContext(ctx, &rows, s.rebind(`SELECT `+escalationColumns+` FROM support_escalations WHERE ticket_id = ? ORDER BY id`), ticketID)
	if err != nil {
		return nil, fmt.Errorf("store: listing escalations of %s: %w", ticketID, err)
	}
	return escalations(rows), nil
}

// EscalationKeys returns the keys a ticket has been escalated for, within
// tx.
func (tx *Tx) EscalationKeys(ctx context.Context, ticketID string) ([]string, error) {
	keys := []string{}
	err := tx.tx.SelectContext(ctx, &keys, tx.rebind(`SELECT key FROM support_escalations WHERE ticket_id = ? ORDER BY id`), ticketID)
	if err != nil {
		return nil, fmt.Errorf("store: listing escalation keys of %s: %w", ticketID, err)
	}
	return keys, nil
}

// HasDFYPurchase reports whether the account has bought a Done-For-You
// package, for routing its tickets.
func (tx *Tx) HasDFYPurchase(ctx context.Context, accountID string) (bool, error) {
	var n int
	err := tx.tx.GetContext(ctx, &n, tx.rebind(`SELECT COUNT(*) FROM billing_dfy_purchases WHERE account_id = ?`), accountID)
	if err != nil {
		return false, fmt.Errorf("store: reading DFY purchases of %s: %w", accountID, err)
	}
	return n > 0, nil
}
