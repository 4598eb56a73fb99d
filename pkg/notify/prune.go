package notify

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/scheduler"
)

// JobPrune deletes old notifications, as the scheduler's catalog names it.
const JobPrune = scheduler.JobNotifyPrune

// ConsumerTicks reads the notify.* jobs' ticks.
const ConsumerTicks = "notify-tick"

// RetentionDefault is LEVQOR_NOTIFICATION_RETENTION: how long sent and
// unsent notifications, and the webhook delivery log, are kept. They hold
// people's addresses and what they were told: kept long enough to answer
// "was I told?", not forever.
const RetentionDefault = 90 * 24 * time.Hour

// TickConsumer declares notify-tick: the notify.* jobs' ticks.
func TickConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerTicks, Kind: bus.Ticks, Filter: "notify.>"}
}

// HandleTick runs the notify.* jobs.
func (w *Worker) HandleTick(ctx context.Context, m *bus.Message) error {
	return scheduler.Dispatch(ConsumerTicks, scheduler.Jobs{
		JobPrune: func(ctx context.Context, _ *bus.Message, t scheduler.Tick) error {
			keep := w.Retention
			if keep <= 0 {
				keep = RetentionDefault
			}
			n, a, err := w.Store.PruneNotifications(ctx, t.Slot.Add(-keep))
			if err != nil {
				return err
			}
			bus.Logger(ctx).WithFields(logrus.Fields{"notifications": n, "webhook_attempts": a, "older_than": keep.String()}).Info("notifications pruned")
			return w.sendStaleDigests(ctx, t.Slot)
		},
	})(ctx, m)
}
