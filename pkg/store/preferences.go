package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Preferences are what an account asks of its notifications.
type Preferences struct {
	AccountID string `json:"account_id"`
	// Muted are the events the account's people are not emailed about.
	Muted []string `json:"muted_events"`
	// QuietStart and QuietEnd ("HH:MM" in TimeZone) bound the quiet
	// hours, during which the account's emails wait; both "" for none.
	QuietStart string    `json:"quiet_start,omitempty"`
	QuietEnd   string    `json:"quiet_end,omitempty"`
	TimeZone   string    `json:"time_zone"`
	UpdatedAt  time.Time `json:"updated_at"`
}

type preferencesRow struct {
	AccountID  string    `db:"account_id"`
	Muted      string    `db:"muted"`
	QuietStart string    `db:"quiet_start"`
	QuietEnd   string    `db:"quiet_end"`
	TimeZone   string    `db:"time_zone"`
	UpdatedAt  time.Time `db:"updated_at"`
}

// GetPreferences returns the account's preferences; an account that set
// none has the defaults: nothing muted, no quiet hours.
func (q Querier) GetPreferences(ctx context.Context, accountID string) (Preferences, error) {
	var r preferencesRow
	err := q.db.GetContext(ctx, &r, q.rebind(`SELECT account_id, muted, quiet_start, quiet_end, time_zone, updated_at
FROM notification_preferences WHERE account_id = ?`), accountID)
	if errors.Is(err, sql.ErrNoRows) {
		return Preferences{AccountID: accountID, Muted: []string{}, TimeZone: "UTC"}, nil
	}
	if err != nil {
		return Preferences{}, fmt.Errorf("store: reading preferences of %s: %w", accountID, err)
	}
	p := Preferences{AccountID: r.AccountID, QuietStart: r.QuietStart, QuietEnd: r.QuietEnd, TimeZone: r.TimeZone, UpdatedAt: r.UpdatedAt.UTC()}
	if err := json.Unmarshal([]byte(r.Muted), &p.Muted); err != nil || p.Muted == nil {
		p.Muted = []string{}
	}
	return p, nil
}

// PutPreferences replaces, within tx, the account's preferences.
func (tx *Tx) PutPreferences(ctx context.Context, p Preferences) error {
	muted, err := json.Marshal(orEmpty(p.Muted))
	if err != nil {
		return err
	}
	_, err = tx.tx.ExecContext(ctx, tx.rebind(`INSERT INTO notification_preferences (account_id, muted, quiet_start, quiet_end, time_zone, updated_at)
VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET muted = excluded.muted, quiet_start = excluded.quiet_start,
quiet_end = excluded.quiet_end, time_zone = excluded.time_zone, updated_at = excluded.updated_at`),
		p.AccountID, string(muted), p.QuietStart, p.QuietEnd, p.TimeZone, ts(orNow(p.UpdatedAt)))
	if err != nil {
		return fmt.Errorf("store: saving preferences of %s: %w", p.AccountID, err)
	}
	return nil
}
