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
// is unsent, with the reason in LastError. One whose delivery failed its
// last attempt is failed: its delivery is in the DLQ, and a replay sends
// it again.
const (
	NotificationPending = "pending"
	NotificationSent    = "sent"
	NotificationUnsent  = "unsent"
	NotificationFailed  = "failed"
	// NotificationHeld is a notification of a burst, waiting for its
	// digest (DigestID) to tell it; NotificationDigested, one its digest
	// told.
	NotificationHeld     = "held"
	NotificationDigested = "digested"
)

// Digest states of a digest notification: open while it collects the
// burst's notifications, closed once it is rendered from them.
const (
	DigestOpen   = "open"
	DigestClosed = "closed"
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
	// Status is NotificationPending, NotificationSent, NotificationUnsent,
	// NotificationFailed, NotificationHeld or NotificationDigested.
	Status string `json:"status"`
	// Attempts counts deliveries tried; LastError says why the last failed.
	Attempts  int        `json:"attempts"`
	LastError string     `json:"last_error,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	SentAt    *time.Time `json:"sent_at,omitempty"`
	// DigestID is, for a held or digested notification, the digest that
	// tells it.
	DigestID string `json:"digest_id,omitempty"`
	// DigestState is DigestOpen or DigestClosed for a digest, "" for any
	// other notification; NotBefore is when a digest is delivered.
	DigestState string     `json:"digest_state,omitempty"`
	NotBefore   *time.Time `json:"not_before,omitempty"`
	// UnsubscribeURL is the link that stops the event's emails to the
	// customer; "" where there is none (staff, mandatory events).
	UnsubscribeURL string `json:"-"`
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
	DigestID  string       `db:"digest_id"`
	DigestSt  string       `db:"digest_state"`
	NotBefore sql.NullTime `db:"not_before"`
	Unsub     string       `db:"unsubscribe_url"`
}

const notificationColumns = `id, account_id, event, event_id, incident, channel, recipient, audience, subject, body_text, body_html,
status, attempts, last_error, created_at, updated_at, sent_at, digest_id, digest_state, not_before, unsubscribe_url`

func (r notificationRow) notification() Notification {
	return Notification{
		ID: r.ID, AccountID: r.AccountID, Event: r.Event, EventID: r.EventID, Incident: r.Incident,
		Channel: r.Channel, Recipient: r.Recipient, Audience: r.Audience, Subject: r.Subject, BodyText: r.BodyText, BodyHTML: r.BodyHTML,
		Status: r.Status, Attempts: r.Attempts, LastError: r.LastError,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(), SentAt: fromNull(r.SentAt),
		DigestID: r.DigestID, DigestState: r.DigestSt, NotBefore: fromNull(r.NotBefore), UnsubscribeURL: r.Unsub,
	}
}

const insertNotificationSQL = `INSERT INTO notifications
(id, account_id, event, event_id, incident, channel, recipient, audience, subject, body_text, body_html, status, last_error, created_at, updated_at,
digest_id, digest_state, not_before, unsubscribe_url)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
		n.Status, n.LastError, at, at, n.DigestID, n.DigestState, nullTime(n.NotBefore), n.UnsubscribeURL)
	if err != nil {
		return false, fmt.Errorf("store: inserting notification %s: %w", n.ID, err)
	}
	rows, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: inserting notification %s: %w", n.ID, err)
	}
	return rows == 1, nil
}

const getNotificationSQL = `SELECT ` + notificationColumns + ` FROM notifications WHERE id = ?`

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

const listNotificationsSQL = `SELECT ` + notificationColumns + ` FROM notifications
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
WHERE id = ? AND status IN ('pending', 'failed')`

// Deliverable reports whether a notification in status may be sent:
// pending, or failed and replayed from the DLQ.
func Deliverable(status string) bool {
	return status == NotificationPending || status == NotificationFailed
}

// NoteNotificationAttempt records one delivery attempt of the deliverable
// notification id: sent when deliveryErr is nil, else pending with the
// error kept, or failed when final (the delivery goes to the DLQ). It
// reports false when the notification is not deliverable (sent already,
// by an earlier delivery of the same message).
func (s *Store) NoteNotificationAttempt(ctx context.Context, id string, deliveryErr error, final bool, at time.Time) (bool, error) {
	return noteNotificationAttempt(ctx, s.db, id, deliveryErr, final, at)
}

// NoteNotificationAttempt is Store.NoteNotificationAttempt within tx.
func (tx *Tx) NoteNotificationAttempt(ctx context.Context, id string, deliveryErr error, final bool, at time.Time) (bool, error) {
	return noteNotificationAttempt(ctx, tx.tx, id, deliveryErr, final, at)
}

func noteNotificationAttempt(ctx context.Context, q dbtx, id string, deliveryErr error, final bool, at time.Time) (bool, error) {
	status, lastErr := NotificationSent, ""
	var sent any = ts(orNow(at))
	if deliveryErr != nil {
		status, lastErr, sent = NotificationPending, deliveryErr.Error(), nil
		if final {
			status = NotificationFailed
		}
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

// BurstKey names a burst: notifications of one event about one account,
// to one recipient through one channel.
type BurstKey struct {
	AccountID string
	Channel   string
	Recipient string
	Event     string
}

const burstWhere = `account_id = ? AND channel = ? AND recipient = ? AND event = ?`

// RecentlyTold reports whether a notification of k other than an unsent
// one was recorded at or after since: a new one then belongs to a burst.
func (tx *Tx) RecentlyTold(ctx context.Context, k BurstKey, since time.Time) (bool, error) {
	var n int
	err := tx.tx.GetContext(ctx, &n, tx.rebind(`SELECT COUNT(*) FROM (SELECT 1 FROM notifications
WHERE `+burstWhere+` AND created_at >= ? AND status <> ? LIMIT 1) AS recent`),
		k.AccountID, k.Channel, k.Recipient, k.Event, ts(since), NotificationUnsent)
	if err != nil {
		return false, fmt.Errorf("store: looking for recent notifications: %w", err)
	}
	return n > 0, nil
}

// OpenDigest returns k's open digest, locked until tx ends (SELECT … FOR
// UPDATE on PostgreSQL; SQLite serializes writers anyway), so that it
// cannot close between the caller's look and its adding a notification to
// it; ErrNotFound when k has none.
func (tx *Tx) OpenDigest(ctx context.Context, k BurstKey) (*Notification, error) {
	q := `SELECT ` + notificationColumns + ` FROM notifications WHERE ` + burstWhere + ` AND digest_state = ?`
	if tx.tx.DriverName() == DialectPostgres {
		q += ` FOR UPDATE`
	}
	var r notificationRow
	err := tx.tx.GetContext(ctx, &r, tx.rebind(q), k.AccountID, k.Channel, k.Recipient, k.Event, DigestOpen)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: open digest: %w", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: reading the open digest: %w", err)
	}
	n := r.notification()
	return &n, nil
}

// CloseDigest closes the open digest id: the notifications held for it
// become digested, and are returned oldest first for the caller to render
// the digest from (SetNotificationMessage). closed is false, and nothing
// changes, when the digest was not open.
func (tx *Tx) CloseDigest(ctx context.Context, id string, at time.Time) (members []Notification, closed bool, err error) {
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE notifications SET digest_state = ?, updated_at = ? WHERE id = ? AND digest_state = ?`),
		DigestClosed, ts(at), id, DigestOpen)
	if err != nil {
		return nil, false, fmt.Errorf("store: closing digest %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return nil, false, err
	}
	if _, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE notifications SET status = ?, updated_at = ? WHERE digest_id = ? AND status = ?`),
		NotificationDigested, ts(at), id, NotificationHeld); err != nil {
		return nil, false, fmt.Errorf("store: closing digest %s: %w", id, err)
	}
	var rows []notificationRow
	if err := tx.tx.SelectContext(ctx, &rows, tx.rebind(`SELECT `+notificationColumns+` FROM notifications WHERE digest_id = ? ORDER BY created_at, id`), id); err != nil {
		return nil, false, fmt.Errorf("store: reading digest %s: %w", id, err)
	}
	for _, r := range rows {
		members = append(members, r.notification())
	}
	return members, true, nil
}

// StaleDigests returns up to limit open digests that were due before
// dueBefore, oldest first.
func (s *Store) StaleDigests(ctx context.Context, dueBefore time.Time, limit int) ([]Notification, error) {
	var rows []notificationRow
	err := s.db.SelectContext(ctx, &rows, s.rebind(`SELECT `+notificationColumns+` FROM notifications
WHERE digest_state = ? AND not_before < ? ORDER BY not_before, id LIMIT ?`), DigestOpen, ts(dueBefore), limit)
	if err != nil {
		return nil, fmt.Errorf("store: listing stale digests: %w", err)
	}
	out := make([]Notification, len(rows))
	for i, r := range rows {
		out[i] = r.notification()
	}
	return out, nil
}

// PostponeDigest moves the delivery of the open digest id to notBefore.
func (s *Store) PostponeDigest(ctx context.Context, id string, notBefore time.Time) error {
	_, err := s.db.ExecContext(ctx, s.rebind(`UPDATE notifications SET not_before = ?, updated_at = ? WHERE id = ? AND digest_state = ?`),
		ts(notBefore), ts(time.Now()), id, DigestOpen)
	if err != nil {
		return fmt.Errorf("store: postponing digest %s: %w", id, err)
	}
	return nil
}

// SetNotificationMessage replaces what notification id says: a digest's,
// rendered when it closes.
func (tx *Tx) SetNotificationMessage(ctx context.Context, id, subject, text, html string, at time.Time) error {
	_, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE notifications SET subject = ?, body_text = ?, body_html = ?, updated_at = ? WHERE id = ?`),
		subject, text, html, ts(at), id)
	if err != nil {
		return fmt.Errorf("store: writing the message of notification %s: %w", id, err)
	}
	return nil
}

// AbandonNotification gives up the deliverable notification id: it
// becomes unsent with reason, counting one more attempt when attempted
// (the attempt that led to giving up). It reports false when the
// notification was not deliverable.
func (tx *Tx) AbandonNotification(ctx context.Context, id, reason string, attempted bool, at time.Time) (bool, error) {
	n := 0
	if attempted {
		n = 1
	}
	res, err := tx.tx.ExecContext(ctx, tx.rebind(`UPDATE notifications SET status = ?, last_error = ?, attempts = attempts + ?, updated_at = ?
WHERE id = ? AND status IN ('pending', 'failed')`), NotificationUnsent, reason, n, ts(orNow(at)), id)
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
// that are neither pending (a pending one may still be delivered) nor
// held for a digest, and the webhook delivery log older than before; it
// returns how many of each it deleted.
func (s *Store) PruneNotifications(ctx context.Context, before time.Time) (notifications, attempts int64, err error) {
	res, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM notifications WHERE created_at < ? AND status NOT IN (?, ?)`),
		ts(before), NotificationPending, NotificationHeld)
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
