package ops_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/store"
)

func consumerStatus(t *testing.T, rep *ops.Report, name string) ops.ConsumerStatus {
	t.Helper()
	for _, c := range rep.Consumers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("consumer %s not in the report", name)
	return ops.ConsumerStatus{}
}

func TestStatusMarksHealthyLaggingAndStuck(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, ops.Settings{Thresholds: ops.Thresholds{LagMessages: 3, StuckAge: 10 * time.Minute, StuckDeliveries: 3}})
		ctx := t.Context()
		b.ensureConsumers()
		b.deadLetter(billingC, "invoice.paid", "evt_dead1", "bad", 90, time.Now())
		b.deadLetter(billingC, "invoice.paid", "evt_dead2", "bad", 91, time.Now())

		rep, err := b.ops.Status(ctx)
		require.NoError(t, err)
		require.Len(t, rep.Streams, 5)
		require.Equal(t, "STRIPE", rep.Streams[0].Name)
		require.Equal(t, "levqor.stripe.>", rep.Streams[0].Subjects)
		require.Equal(t, 2, rep.Streams[0].Consumers)
		require.EqualValues(t, 2, rep.Streams[4].Messages, "the DLQ holds two dead letters")
		bill := consumerStatus(t, rep, billingC)
		require.Equal(t, ops.StateHealthy, bill.State)
		require.EqualValues(t, 2, bill.DeadLetters)
		require.Zero(t, consumerStatus(t, rep, supportC).DeadLetters)

		// Three messages and no worker: lagging.
		first := b.publish("invoice.paid", "evt_1", `{}`)
		b.publish("invoice.paid", "evt_2", `{}`)
		b.publish("invoice.paid", "evt_3", `{}`)
		// The server counts a consumer's pending messages as it stores
		// them, not before the publish is acknowledged: on a busy machine
		// the count can trail the acks by a moment.
		require.Eventually(t, func() bool {
			rep, err = b.ops.Status(ctx)
			require.NoError(t, err)
			bill = consumerStatus(t, rep, billingC)
			return bill.Pending == 3
		}, 10*time.Second, 20*time.Millisecond)
		require.Equal(t, ops.StateLagging, bill.State, "%v", bill.Reasons)
		require.EqualValues(t, 3, bill.Pending)
		require.Equal(t, first, bill.OldestUnackedSeq)
		require.Contains(t, strings.Join(bill.Reasons, "; "), "3 messages behind; threshold 3")
		require.EqualValues(t, 3, rep.Streams[0].Messages)
		require.NotNil(t, rep.Streams[0].FirstTime)

		// Fifteen minutes later, still nothing consumed: stuck.
		b.clock.Store(int64(15 * time.Minute))
		rep, err = b.ops.Status(ctx)
		require.NoError(t, err)
		bill = consumerStatus(t, rep, billingC)
		require.Equal(t, ops.StateStuck, bill.State)
		require.GreaterOrEqual(t, bill.OldestUnackedAgeSeconds, (15 * time.Minute).Seconds())
		reasons := strings.Join(bill.Reasons, "; ")
		require.Contains(t, reasons, "oldest unacknowledged message (seq 1)")
		require.Contains(t, reasons, "no worker is waiting for messages")
		b.clock.Store(0)

		// Workers catch up: healthy again.
		b.run(billingC, supportC)
		b.waitAcked(billingC)
		b.waitAcked(supportC)
		rep, err = b.ops.Status(ctx)
		require.NoError(t, err)
		bill = consumerStatus(t, rep, billingC)
		require.Equal(t, ops.StateHealthy, bill.State, "%v", bill.Reasons)
		require.Zero(t, bill.OldestUnackedSeq)
		require.NotNil(t, bill.LastActive)
	})
}

func TestStuckShowsRepeatedFailuresWithTheLastError(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, ops.Settings{Thresholds: ops.Thresholds{StuckDeliveries: 3, StuckAge: time.Hour}})
		ctx := t.Context()
		bill := b.workers[billingC]
		bill.broken.Store(true)
		bill.transient.Store(true)
		b.run(billingC, supportC)
		seq := b.publish("invoice.paid", "evt_flaky", `{}`)
		b.waitAcked(supportC)

		var stuck []ops.StuckMessage
		require.Eventually(t, func() bool {
			var err error
			stuck, err = b.ops.Stuck(ctx, "")
			require.NoError(t, err)
			return len(stuck) == 1
		}, 15*time.Second, 20*time.Millisecond)
		m := stuck[0]
		require.Equal(t, billingC, m.Consumer)
		require.Equal(t, seq, m.StreamSeq)
		require.Equal(t, "evt_flaky", m.MsgID)
		require.Equal(t, "levqor.stripe.invoice.paid", m.Subject)
		require.GreaterOrEqual(t, m.Deliveries, 3)
		require.Contains(t, m.LastError, "stripe API answered 502")
		require.NotNil(t, m.PublishedAt)
		require.Contains(t, m.Reasons[0], "deliveries; threshold 3")

		only, err := b.ops.Stuck(ctx, supportC)
		require.NoError(t, err)
		require.Empty(t, only, "the consumer that processed it is not stuck")
		_, err = b.ops.Stuck(ctx, "nobody")
		require.ErrorIs(t, err, ops.ErrNotFound)

		rep, err := b.ops.Status(ctx)
		require.NoError(t, err)
		cs := consumerStatus(t, rep, billingC)
		require.Equal(t, ops.StateStuck, cs.State)
		require.Equal(t, 1, cs.FailingRepeatedly)
		require.Contains(t, strings.Join(cs.Reasons, "; "), "failed 3 or more deliveries")
		require.Equal(t, ops.StateHealthy, consumerStatus(t, rep, supportC).State)

		// Fixed: the next delivery succeeds and nothing is stuck any more.
		bill.broken.Store(false)
		b.waitAcked(billingC)
		require.Eventually(t, func() bool {
			s, err := b.ops.Stuck(ctx, billingC)
			require.NoError(t, err)
			return len(s) == 0
		}, 10*time.Second, 20*time.Millisecond)
		require.Equal(t, 1, bill.count("evt_flaky"))
	})
}

func TestThresholdsFromEnvNameTheVariable(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	th, err := ops.ThresholdsFromEnv(env(nil))
	require.NoError(t, err)
	require.Equal(t, ops.Thresholds{LagMessages: ops.LagThresholdDefault, StuckAge: ops.StuckAgeDefault, StuckDeliveries: ops.StuckDeliveriesDefault}, th)

	th, err = ops.ThresholdsFromEnv(env(map[string]string{
		"LEVQOR_LAG_THRESHOLD": "50", "LEVQOR_STUCK_AGE": "90s", "LEVQOR_STUCK_DELIVERIES": "7",
	}))
	require.NoError(t, err)
	require.Equal(t, ops.Thresholds{LagMessages: 50, StuckAge: 90 * time.Second, StuckDeliveries: 7}, th)

	_, err = ops.ThresholdsFromEnv(env(map[string]string{
		"LEVQOR_LAG_THRESHOLD": "many", "LEVQOR_STUCK_AGE": "-1m", "LEVQOR_STUCK_DELIVERIES": "0",
	}))
	for _, v := range []string{"LEVQOR_LAG_THRESHOLD", "LEVQOR_STUCK_AGE", "LEVQOR_STUCK_DELIVERIES"} {
		require.ErrorContains(t, err, v)
	}
}

func TestParseTime(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-01-01T00:00:00Z":      time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		"2026-01-01T02:00:00+02:00": time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		"2026-01-01":                time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		"2026-01-01T08:30":          time.Date(2026, 1, 1, 8, 30, 0, 0, time.UTC),
		"90m":                       now.Add(-90 * time.Minute),
		"3d":                        now.Add(-72 * time.Hour),
	} {
		got, err := ops.ParseTime(in, now)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "yesterday", "-2h", "2026-13-01"} {
		_, err := ops.ParseTime(bad, now)
		require.Error(t, err, bad)
	}
}

func TestStatusSaysWhenTheSchedulerFallsSilent(t *testing.T) {
	t.Parallel()
	b := setup(t, storeSQLite(t), ops.Settings{TickEvery: time.Minute})
	ctx := t.Context()
	rep, err := b.ops.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, &ops.SchedulerStatus{State: ops.SchedulerWaiting, EverySeconds: 60}, rep.Scheduler, "no tick yet")

	_, err = b.pub.Publish(ctx, b.nats.Topo.Subject(bus.Ticks, "housekeeping.watch"), "housekeeping.watch@1", nil, []byte(`{}`))
	require.NoError(t, err)
	rep, err = b.ops.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, ops.SchedulerTicking, rep.Scheduler.State)
	require.NotNil(t, rep.Scheduler.LastTick)

	b.clock.Store(int64(3*time.Minute + time.Second))
	rep, err = b.ops.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, ops.SchedulerSilent, rep.Scheduler.State, "three periods without a tick")

	plain := setup(t, storeSQLite(t), ops.Settings{})
	rep, err = plain.ops.Status(ctx)
	require.NoError(t, err)
	require.Nil(t, rep.Scheduler, "not judged without a period")
}
