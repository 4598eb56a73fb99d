package billing

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
)

// JobTrialReminder reminds customers that their trial ends, as the
// scheduler's catalog names it.
const JobTrialReminder = scheduler.JobBillingTrialReminder

// TrialRemindersDefault is LEVQOR_TRIAL_REMINDERS: how long before a
// trial ends its customer is reminded, a week and a day ahead. Stripe's
// own customer.subscription.trial_will_end (three days ahead) is told
// too.
var TrialRemindersDefault = []time.Duration{7 * 24 * time.Hour, 24 * time.Hour}

// remindTrials raises billing.trial_reminder for every trialing
// subscription whose trial ends within a reminder of slot: one event per
// subscription, trial end and reminder (the nearest reminder the trial is
// within), recorded in the same transaction, so a tick run again, or the
// next hour's, reminds no one twice. A trial found late (already inside
// the day-ahead reminder) gets that one only.
func (w *Worker) remindTrials(ctx context.Context, tx *store.Tx, m *bus.Message, slot time.Time) error {
	reminders := slices.Clone(w.TrialReminders)
	if len(reminders) == 0 {
		reminders = slices.Clone(TrialRemindersDefault)
	}
	slices.Sort(reminders)
	subs, err := tx.TrialingSubscriptions(ctx, slot, slot.Add(reminders[len(reminders)-1]))
	if err != nil {
		return err
	}
	out := emitter{tx: txState{tx}, topo: w.Topology, at: slot}
	if m != nil {
		out.correlation = m.CorrelationID()
	}
	for _, s := range subs {
		if s.AccountID == "" || s.TrialEnd == nil {
			continue
		}
		left := s.TrialEnd.Sub(slot)
		i, _ := slices.BinarySearch(reminders, left) // the nearest reminder at or beyond left
		before := reminders[i]
		sent, err := tx.RecordTrialReminder(ctx, s.ID, s.AccountID, *s.TrialEnd, before, slot)
		if err != nil {
			return err
		}
		if !sent {
			continue // reminded already
		}
		acc, err := tx.GetAccount(ctx, s.AccountID)
		if err != nil {
			return err
		}
		days := int((left + 24*time.Hour - time.Nanosecond) / (24 * time.Hour))
		if err := out.emit(ctx, events.TrialReminder{
			Billing: out.meta(acc.ID), SubscriptionID: s.ID, TrialEnd: s.TrialEnd.UTC(), DaysLeft: days, Tier: acc.Tier,
			Incident: fmt.Sprintf("trial_reminder:%s:%s:%s", s.ID, s.TrialEnd.UTC().Format(time.RFC3339), before),
		}); err != nil {
			return err
		}
		bus.Logger(ctx).WithFields(logrus.Fields{"account_id": acc.ID, "subscription_id": s.ID, "days_left": days}).Info("trial reminder raised")
	}
	return nil
}
