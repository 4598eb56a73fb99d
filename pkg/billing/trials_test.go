package billing_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/stripesim"
)

// trialEvent is a subscription event of a trial on the growth tier that
// ends at end.
func trialEvent(t *testing.T, evID, sub, customer string, created, end time.Time) []byte {
	t.Helper()
	patch, _ := json.Marshal(map[string]any{"status": "trialing", "trial_end": end.Unix(), "items": map[string]any{"object": "list", "data": []map[string]any{{
		"id": "si_" + sub, "object": "subscription_item", "quantity": 1,
		"price": map[string]any{"id": "price_levqor_growth_monthly", "object": "price", "currency": "gbp", "metadata": map[string]any{}},
	}}}})
	b, err := stripesim.NewEvent("customer.subscription.created", stripesim.EventOptions{ID: evID, Created: created, Customer: customer, ObjectID: sub, Data: patch})
	require.NoError(t, err)
	return b
}

// reminders are the billing.trial_reminder payloads in the outbox.
func reminders(t *testing.T, st *store.Store) []map[string]any {
	t.Helper()
	msgs, err := st.UnpublishedOutbox(context.Background(), 1000)
	require.NoError(t, err)
	var out []map[string]any
	for _, m := range msgs {
		if strings.HasSuffix(m.Subject, ".billing.trial_reminder") {
			var p map[string]any
			require.NoError(t, json.Unmarshal(m.Payload, &p))
			out = append(out, p)
		}
	}
	return out
}

func TestTrialRemindersAreSentOnceEachAWeekAndADayAhead(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		h.account("acc_trial", "cus_trial")
		h.account("acc_late", "cus_late")
		end := t0.Add(10 * 24 * time.Hour)
		h.must(trialEvent(t, "evt_t1", "sub_trial", "cus_trial", t0, end))

		h.tick(billing.JobTrialReminder, t0.Add(2*24*time.Hour))
		require.Empty(t, reminders(t, st), "eight days left: no reminder yet")

		h.tick(billing.JobTrialReminder, end.Add(-7*24*time.Hour+time.Hour))
		h.tick(billing.JobTrialReminder, end.Add(-6*24*time.Hour))
		got := reminders(t, st)
		require.Len(t, got, 1, "the week-ahead reminder, once")
		require.Equal(t, "acc_trial", got[0]["account_id"])
		require.Equal(t, "sub_trial", got[0]["subscription_id"])
		require.EqualValues(t, 7, got[0]["days_left"])
		require.Equal(t, "growth", got[0]["tier"])

		// A second trial, ending a little later, is reminded although the
		// first was reminded already in the same tick.
		h.account("acc_second", "cus_second")
		h.must(trialEvent(t, "evt_t3", "sub_second", "cus_second", t0, end.Add(2*time.Hour)))
		h.tick(billing.JobTrialReminder, end.Add(-6*24*time.Hour+time.Hour))
		got = reminders(t, st)
		require.Len(t, got, 2, "the second trial's week-ahead reminder")
		require.Equal(t, "acc_second", got[1]["account_id"])

		h.tick(billing.JobTrialReminder, end.Add(-20*time.Hour))
		h.tick(billing.JobTrialReminder, end.Add(-time.Hour))
		got = reminders(t, st)
		require.Len(t, got, 4, "then each day-ahead one, once")
		require.EqualValues(t, 1, got[2]["days_left"])

		h.tick(billing.JobTrialReminder, end.Add(3*time.Hour))
		require.Len(t, reminders(t, st), 4, "an ended trial is not reminded")

		// A trial first seen inside the last day gets the day-ahead
		// reminder only.
		lateEnd := end.Add(48 * time.Hour)
		h.must(trialEvent(t, "evt_t2", "sub_late", "cus_late", t0, lateEnd))
		h.tick(billing.JobTrialReminder, lateEnd.Add(-12*time.Hour))
		got = reminders(t, st)
		require.Len(t, got, 5)
		require.Equal(t, "acc_late", got[4]["account_id"])
		require.EqualValues(t, 1, got[4]["days_left"])
		h.tick(billing.JobTrialReminder, lateEnd.Add(-6*time.Hour))
		require.Len(t, reminders(t, st), 5)
	})
}
