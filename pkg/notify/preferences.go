package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/store"
)

// ActionSetPreferences replaces an account's notification preferences.
const ActionSetPreferences = "set_preferences"

// Mandatory are the events an account cannot mute: what it must hear
// before something irreversible happens to its data or its service.
var Mandatory = []events.Name{
	events.NameAccountSuspended,
	events.NameErasureDue,
	events.NameBackupCorrupt,
}

// MutedReason is the reason of a notification not sent because the
// account muted its event.
const MutedReason = "not sent: the account muted this event (notification preferences)"

// SetPreferencesParams are the parameters of notifications.set_preferences:
// the whole preferences, replacing what was set.
type SetPreferencesParams struct {
	// AccountID is the account; an account key may leave it out.
	AccountID string `json:"account_id,omitempty"`
	// MutedEvents are the events the account's people are not emailed
	// about (webhooks still receive them).
	MutedEvents []string `json:"muted_events"`
	// QuietHours, when set, delays the account's emails that fall inside
	// them until they end.
	QuietHours *QuietHours `json:"quiet_hours,omitempty"`
}

// QuietHours are daily hours, in a time zone, during which an account's
// emails wait. Start after End spans midnight (22:00 to 07:00).
type QuietHours struct {
	Start    string `json:"start"`
	End      string `json:"end"`
	TimeZone string `json:"time_zone"`
}

// Normalize trims and sorts.
func (p *SetPreferencesParams) Normalize() {
	p.AccountID = strings.TrimSpace(p.AccountID)
	if p.MutedEvents != nil { // left out is an error Validate names
		p.MutedEvents = normalizeTypes(p.MutedEvents)
	}
	if p.QuietHours != nil {
		p.QuietHours.Start, p.QuietHours.End = strings.TrimSpace(p.QuietHours.Start), strings.TrimSpace(p.QuietHours.End)
		p.QuietHours.TimeZone = strings.TrimSpace(p.QuietHours.TimeZone)
		if p.QuietHours.TimeZone == "" {
			p.QuietHours.TimeZone = "UTC"
		}
	}
}

// Validate refuses unknown or mandatory events and malformed quiet hours,
// naming the field.
func (p *SetPreferencesParams) Validate() error {
	if p.MutedEvents == nil {
		return invalid("muted_events", "muted_events is required: the events not to be emailed about ([] for none)")
	}
	known := events.Names()
	for _, e := range p.MutedEvents {
		switch {
		case !slices.Contains(known, events.Name(e)):
			return invalid("muted_events", fmt.Sprintf("%q is not an event Levqor sends", e))
		case slices.Contains(Mandatory, events.Name(e)):
			return invalid("muted_events", fmt.Sprintf("%q cannot be muted: it warns before something irreversible happens", e))
		}
	}
	if q := p.QuietHours; q != nil {
		if _, err := clock(q.Start); err != nil {
			return invalid("quiet_hours.start", "quiet_hours.start must be HH:MM (24-hour)")
		}
		if _, err := clock(q.End); err != nil {
			return invalid("quiet_hours.end", "quiet_hours.end must be HH:MM (24-hour)")
		}
		if q.Start == q.End {
			return invalid("quiet_hours.end", "quiet_hours.end must differ from start")
		}
		if _, err := time.LoadLocation(q.TimeZone); err != nil {
			return invalid("quiet_hours.time_zone", fmt.Sprintf("%q is not a time zone (e.g. Europe/London)", q.TimeZone))
		}
	}
	return nil
}

// clock parses "HH:MM" into minutes after midnight.
func clock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != 5 {
		return 0, errors.New("not HH:MM")
	}
	return t.Hour()*60 + t.Minute(), nil
}

// QuietUntil reports whether at falls in p's quiet hours and, if so, when
// they end.
func QuietUntil(p store.Preferences, at time.Time) (time.Time, bool) {
	if p.QuietStart == "" || p.QuietEnd == "" {
		return time.Time{}, false
	}
	loc, err := time.LoadLocation(p.TimeZone)
	if err != nil {
		return time.Time{}, false
	}
	start, err1 := clock(p.QuietStart)
	end, err2 := clock(p.QuietEnd)
	if err1 != nil || err2 != nil {
		return time.Time{}, false
	}
	local := at.In(loc)
	now := local.Hour()*60 + local.Minute()
	midnight := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, loc)
	switch {
	case start < end && now >= start && now < end:
		return midnight.Add(time.Duration(end) * time.Minute), true
	case start > end && now >= start: // before midnight, ends tomorrow
		return midnight.AddDate(0, 0, 1).Add(time.Duration(end) * time.Minute), true
	case start > end && now < end: // after midnight
		return midnight.Add(time.Duration(end) * time.Minute), true
	}
	return time.Time{}, false
}

// setPreferences carries out notifications.set_preferences.
func (w *Worker) setPreferences(_ context.Context, e *command.Envelope, p SetPreferencesParams) (command.Effect, error) {
	switch {
	case e.AccountID == "":
		return nil, invalid("account_id", "account_id is required: the account the preferences are of")
	case p.AccountID != "" && p.AccountID != e.AccountID:
		return nil, invalid("account_id", "account_id does not match the command's account")
	}
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		if _, err := tx.GetAccount(ctx, e.AccountID); errors.Is(err, store.ErrNotFound) {
			return command.Outcome{}, command.Fail(http.StatusNotFound, "not_found", "account_id", "no account "+e.AccountID)
		} else if err != nil {
			return command.Outcome{}, err
		}
		prefs := store.Preferences{AccountID: e.AccountID, Muted: p.MutedEvents, TimeZone: "UTC", UpdatedAt: w.now()}
		if q := p.QuietHours; q != nil {
			prefs.QuietStart, prefs.QuietEnd, prefs.TimeZone = q.Start, q.End, q.TimeZone
		}
		return putPreferences(ctx, tx, prefs)
	}, nil
}

// putPreferences saves prefs and answers them as stored.
func putPreferences(ctx context.Context, tx *store.Tx, prefs store.Preferences) (command.Outcome, error) {
	if err := tx.PutPreferences(ctx, prefs); err != nil {
		return command.Outcome{}, err
	}
	got, err := tx.GetPreferences(ctx, prefs.AccountID)
	if err != nil {
		return command.Outcome{}, err
	}
	return command.Outcome{Status: http.StatusOK, Result: got}, nil
}
