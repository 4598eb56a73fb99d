package notify_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/notify"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func TestQuietHours(t *testing.T) {
	t.Parallel()
	london, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	overnight := store.Preferences{QuietStart: "22:00", QuietEnd: "07:00", TimeZone: "Europe/London"}
	lunch := store.Preferences{QuietStart: "12:00", QuietEnd: "13:30", TimeZone: "Europe/London"}
	for name, tc := range map[string]struct {
		p     store.Preferences
		at    time.Time
		until time.Time
	}{
		"BeforeMidnight": {overnight, time.Date(2026, 12, 6, 23, 10, 0, 0, london), time.Date(2026, 12, 7, 7, 0, 0, 0, london)},
		"AfterMidnight":  {overnight, time.Date(2026, 12, 7, 3, 0, 0, 0, london), time.Date(2026, 12, 7, 7, 0, 0, 0, london)},
		"Morning":        {overnight, time.Date(2026, 12, 7, 7, 0, 0, 0, london), time.Time{}},
		"Lunch":          {lunch, time.Date(2026, 12, 7, 12, 45, 0, 0, london), time.Date(2026, 12, 7, 13, 30, 0, 0, london)},
		"AfterLunch":     {lunch, time.Date(2026, 12, 7, 13, 30, 0, 0, london), time.Time{}},
		"None":           {store.Preferences{TimeZone: "UTC"}, time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC), time.Time{}},
	} {
		t.Run(name, func(t *testing.T) {
			until, quiet := notify.QuietUntil(tc.p, tc.at)
			require.Equal(t, !tc.until.IsZero(), quiet)
			require.True(t, until.Equal(tc.until), "until %s, want %s", until, tc.until)
		})
	}
}

func TestPreferencesAreChecked(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		p     notify.SetPreferencesParams
		field string
	}{
		"NoMuted":     {notify.SetPreferencesParams{}, "muted_events"},
		"Unknown":     {notify.SetPreferencesParams{MutedEvents: []string{"backup.exploded"}}, "muted_events"},
		"Mandatory":   {notify.SetPreferencesParams{MutedEvents: []string{"accounts.erasure_due"}}, "muted_events"},
		"BadStart":    {notify.SetPreferencesParams{MutedEvents: []string{}, QuietHours: &notify.QuietHours{Start: "10pm", End: "07:00"}}, "quiet_hours.start"},
		"SameEnds":    {notify.SetPreferencesParams{MutedEvents: []string{}, QuietHours: &notify.QuietHours{Start: "07:00", End: "07:00"}}, "quiet_hours.end"},
		"BadTimeZone": {notify.SetPreferencesParams{MutedEvents: []string{}, QuietHours: &notify.QuietHours{Start: "22:00", End: "07:00", TimeZone: "Mars/Olympus"}}, "quiet_hours.time_zone"},
	} {
		t.Run(name, func(t *testing.T) {
			tc.p.Normalize()
			err := tc.p.Validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.field)
		})
	}
	ok := notify.SetPreferencesParams{MutedEvents: []string{"billing.trial_reminder"}, QuietHours: &notify.QuietHours{Start: "22:00", End: "07:00"}}
	ok.Normalize()
	require.NoError(t, ok.Validate())
	require.Equal(t, "UTC", ok.QuietHours.TimeZone)
}

// TestMutedEventsAreNotEmailedAndQuietHoursDelay: a muted event is
// recorded unsent, saying why; a mandatory one is told anyway; during
// quiet hours the customer's email waits for their end.
func TestMutedEventsAreNotEmailedAndQuietHoursDelay(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	b := setup(t, st, func(*mailServer) notify.Sender { return notify.DirMailer{Dir: t.TempDir()} })
	ctx := t.Context()
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		return tx.PutPreferences(ctx, store.Preferences{AccountID: b.acc, Muted: []string{"backup.corrupt", "backup.run_failed"}, TimeZone: "UTC"})
	}))
	b.emit(samples(b.acc, b.src)[events.NameBackupRunFailed])
	b.delivered()
	n := b.notifications()
	require.Len(t, n, 1)
	require.Equal(t, store.NotificationUnsent, n[0].Status)
	require.Equal(t, notify.MutedReason, n[0].LastError)

	b.emit(samples(b.acc, b.src)[events.NameBackupCorrupt])
	b.delivered()
	for _, x := range b.notifications() {
		if x.Event != string(events.NameBackupCorrupt) {
			continue
		}
		require.Equal(t, store.NotificationSent, x.Status, "a mandatory event is told however the list came to hold it: %s", x.Recipient)
	}

	// Quiet hours: all day long, in effect.
	now := time.Now().UTC()
	start := now.Add(-time.Hour).Format("15:04")
	end := now.Add(time.Hour).Format("15:04")
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		return tx.PutPreferences(ctx, store.Preferences{AccountID: b.acc, Muted: []string{}, QuietStart: start, QuietEnd: end, TimeZone: "UTC"})
	}))
	w := &notify.Worker{Store: st, Rules: b.worker.Rules, Mailer: b.worker.Mailer, Now: func() time.Time { return now }}
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.InsertNotification(ctx, store.Notification{ID: "ntf_quiet", AccountID: b.acc, Event: "backup.run_failed", EventID: "outbox-9",
			Incident: "quiet", Channel: notify.ChannelEmail, Recipient: "ops@ada.example", Audience: store.AudienceCustomer, Subject: "s",
			BodyText: "b", Status: store.NotificationPending})
		return err
	}))
	payload, _ := json.Marshal(map[string]string{"notification_id": "ntf_quiet"})
	err := w.HandleDelivery(ctx, &bus.Message{Subject: "levqor.cmd.notify.deliver", Data: payload, Header: nats.Header{}, Deliveries: 1})
	require.ErrorContains(t, err, "quiet hours last until")
	var de *bus.DeferError
	require.ErrorAs(t, err, &de, "a wait, not a failure")
	require.InDelta(t, time.Hour.Seconds(), de.Delay.Seconds(), 61, "until the quiet hours end")
	got, err := st.GetNotification(ctx, "ntf_quiet")
	require.NoError(t, err)
	require.Equal(t, store.NotificationPending, got.Status, "waits, unsent")
	require.Zero(t, got.Attempts)
}
