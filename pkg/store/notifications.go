package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Notification states. A notification is pending until its channel took
// it, then sent; one that cannot go anywhere (its channel is not set up)
// is unsent, with the reason in LastError.
const (
	NotificationPending = "pending"
	NotificationSent    = "sent"
	NotificationUnsent  = "unsent"
)

// Notification audiences: the account's own people, or Levqor's staff
// (on-call, the DFY team), whose notifications about an account the
// account does not see.
const (
	AudienceCustomer = "customer"
	AudienceStaff    = "staff"
)

// Notification is one message Levqor sends about an event: to one
// recipient, through one channel, rendered when the event was handled.
type Notification struct {
	// ID is "ntf_…".
	ID string `json:"id"`
	// AccountID is the account the event concerns; "" for the platform.
	AccountID string `json:"account_id,omitempty"`
	// Event is the event's name ("backup.run_failed") and EventID the id of
	// the message that carried it.
	Event   string `json:"event"`
	EventID string `json:"event_id"`
	// Incident keys the notification: one per (incident, channel,
	// recipient), however often the incident is reported.
	Incident  string `json:"incident"`
	Channel   string `json:"channel"`
	Recipient string `json:"recipient"`
	// Audience is AudienceCustomer or AudienceStaff.
	Audience string `json:"audience"`
	Subject  string `json:"subject"`
	BodyText string `json:"body_text"`
	BodyHTML string `json:"body_html"`
	// Status is NotificationPending, NotificationSent or NotificationUnsent.
	Status string `json:"status"`
	// Attempts counts deliveries tried; LastError says why the last failed.
	Attempts  int        `json:"attempts"`
	LastError string     `json:"last_error,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	SentAt    *time.Time `json:"sent_at,omitempty"`
}

type notificationRow struct {
	ID        string       `db:"id"`
	AccountID string       `db:"account_id"`
	Event     string       `db:"event"`
	EventID   string       `db:"event_id"`
	Incident  string       `db:"incident"`
	Channel   string       `db:"channel"`
	Recipient string       `db:"recipient"`
	Audience  string       `db:"audience"`
	Subject   string       `db:"subject"`
	BodyText  string       `db:"body_text"`
	BodyHTML  string       `db:"body_html"`
	Status    string       `db:"status"`
	Attempts  int          `db:"attempts"`
	LastError string       `db:"last_error"`
	CreatedAt time.Time    `db:"created_at"`
	UpdatedAt time.Time    `db:"updated_at"`
	SentAt    sql.NullTime `db:"sent_at"`
}

func (r notificationRow) notification() Notification {
	return Notification{
		ID: r.ID, AccountID: r.AccountID, Event: r.Event, EventID: r.EventID, Incident: r.Incident,
		Channel: r.Channel, Recipient: r.Recipient, Audience: r.Audience, Subject: r.Subject, BodyText: r.BodyText, BodyHTML: r.BodyHTML,
		Status: r.Status, Attempts: r.Attempts, LastError: r.LastError,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(), SentAt: fromNull(r.SentAt),
	}
}

const insertNotificationSQL = `INSERT INTO notifications
(id, account_id, event, event_id, incident, channel, recipient, audience, subject, body_text, body_html, status, last_error, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (incident, channel, recipient) DO NOTHING`

// InsertNotification records n within tx and reports whether it is new:
// false means the incident was already told to that recipient through that
// channel, and nothing changed.
func (tx *Tx) InsertNotification(ctx context.Context, n Notification) (bool, error) {
	if n.ID == "" || n.Event == "" || n.EventID == "" || n.Incident == "" || n.Channel == "" || n.Recipient == "" ||
		n.Subject == "" || n.Status == "" || (n.Audience != AudienceCustomer && n.Audience != AudienceStaff) {
		return false, errors.New("store: inserting notification: id, event, event id, incident, channel, recipient, audience, subject and status are required")
	}
	at := ts(orNow(n.CreatedAt))
	res, err := tx.tx.ExecContext(ctx, tx.rebind(insertNotificationSQL),
		n.ID, n.AccountID, n.Event, n.EventID, n.Incident, n.Channel, n.Recipient, n.Audience, n.Subject, n.BodyText, n.BodyHTML,
		n.Status, n.LastError, at, at)
	if err != nil {
		return false, fmt.Errorf("store: inserting notification %s: %w", n.ID, err)
	}
	rows, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: inserting notification %s: %w", n.ID, err)
	}
	return rows == 1, nil
}

const getNotificationSQL = `SELECT id, account_id, event, event_id, incident, channel, recipient, audience, subject, body_text, body_html,
status, attempts, last_error, created_at, updated_at, sent_at FROM notifications WHERE id = ?`

// GetNotification returns the notification id, or ErrNotFound.
func (s *Store) GetNotification(ctx context.Context, id string) (*Notification, error) {
	var r notificationRow
	err := s.db.GetContext(ctx, &r, s.rebind(getNotificationSQL), id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: notification %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: getting notification %s: %w", id, err)
	}
	n := r.notification()
	return &n, nil
}

const listNotificationsSQL = `SELECT id, account_id, event, event_id, incident, channel, recipient, audience, subject, body_text, body_html,
status, attempts, last_error, created_at, updated_at, sent_at FROM notifications
WHERE (? = '' OR account_id = ?) AND (? = '' OR audience = ?) ORDER BY created_at DESC, id DESC LIMIT ?`

// ListNotificationsParams selects notifications.
type ListNotificationsParams struct {
	// AccountID, when set, keeps one account's.
	AccountID string
	// Audience, when set, keeps those of one audience.
	Audience string
	// Limit is the most returned; required.
	Limit int
}

// ListNotifications returns the newest notifications first.
func (s *Store) ListNotifications(ctx context.Context, p ListNotificationsParams) ([]Notification, error) {
	var rows []notificationRow
	if err := s.db.SelectContext(ctx, &rows, s.rebind(listNotificationsSQL), p.AccountID, p.AccountID, p.Audience, p.Audience, p.Limit); err != nil {
		return nil, fmt.Errorf("store: listing notifications: %w", err)
	}
	out := make([]Notification, len(rows))
	for i, r := range rows {
		out[i] = r.notification()
	}
	return out, nil
}

const noteNotificationAttemptSQL = `UPDATE notifications
SET attempts = attempts + 1, status = ?, last_error = ?, updated_at = ?, sent_at = ?
WHERE id = ? AND status = 'pending'`

// NoteNotificationAttempt records one delivery attempt of the pending
// notification id: sent when deliveryErr is nil, else still pending with
// the error kept. It reports false when the notification is not pending
// (sent already, by an earlier delivery of the same message).
func (s *Store) NoteNotificationAttempt(ctx context.Context, id string, deliveryErr error, at time.Time) (bool, error) {
	return noteNotificationAttempt(ctx, s.db, id, deliveryErr, at)
}

// NoteNotificationAttempt is Store.NoteNotificationAttempt within tx.
func (tx *Tx) NoteNotificationAttempt(ctx context.Context, id string, deliveryErr error, at time.Time) (bool, error) {
	return noteNotificationAttempt(ctx, tx.tx, id, deliveryErr, at)
}

func noteNotificationAttempt(ctx context.Context, q dbtx, id string, deliveryErr error, at time.Time) (bool, error) {
	status, lastErr := NotificationSent, ""
	var sent any = ts(orNow(at))
	if deliveryErr != nil {
		status, lastErr, sent = NotificationPending, deliveryErr.Error(), nil
	}
	res, err := q.ExecContext(ctx, q.Rebind(noteNotificationAttemptSQL), status, lastErr, ts(orNow(at)), sent, id)
	if err != nil {
		return false, fmt.Errorf("store: noting delivery of notification %s: %w", id, err)
	}
	rows, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: noting delivery of notification %s: %w", id, err)
	}
	return rows == 1, nil
}

// AbandonNotification gives up the pending notification id: it becomes
// unsent with reason, counting one more attempt when attempted (the
// attempt that led to giving up). It reports false when the notification
// was not pending.
func (tx *Tx) AbandonNotification(ctx context.Context, id, reason string, attempted bool, at time.Time) (bool, error) {
	n := 0
	if attempted {
		n = 1
	}
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE notifications SET status = ?, last_error = ?, attempts = attempts + ?, updated_at = ?
WHERE id = ? AND status = 'pending'`), NotificationUnsent, reason, n, ts(orNow(at)), id)
	if err != nil {
		return false, fmt.Errorf("store: abandoning notification %s: %w", id, err)
	}
	rows, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: abandoning notification %s: %w", id, err)
	}
	return rows == 1, nil
}

// PruneNotifications deletes the notifications created before before
// that are not pending (a pending one may still be delivered, or replayed
// from the DLQ), and the webhook delivery log older than before; it
// returns how many of each it deleted.
func (s *Store) PruneNotifications(ctx context.Context, before time.Time) (notifications, attempts int64, err error) {
	res, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM notifications WHERE created_at < ? AND status <> ?`), ts(before), NotificationPending)
	if err != nil {
		return 0, 0, fmt.Errorf("store: pruning notifications: %w", err)
	}
	if notifications, err = res.RowsAffected(); err != nil {
		return 0, 0, err
	}
	res, err = s.db.ExecContext(ctx, s.rebind(`DELETE FROM webhook_attempts WHERE attempted_at < ?`), ts(before))
	if err != nil {
		return notifications, 0, fmt.Errorf("store: pruning webhook attempts: %w", err)
	}
	attempts, err = res.RowsAffected()
	return notifications, attempts, err
}
