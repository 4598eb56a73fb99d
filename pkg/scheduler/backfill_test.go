package scheduler_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus/bustest"
	"github.com/levqor/levqor/pkg/scheduler"
)

// TestBackfillPublishesOnlyTheMissingSlots: slots the stream holds are
// left alone, the missing ones are published once each with the slot's
// own id, a second backfill publishes nothing, and the scheduler still
// knows its newest scheduled slot.
func TestBackfillPublishesOnlyTheMissingSlots(t *testing.T) {
	t.Parallel()
	env := bustest.Start(t)
	const job = "test.backfilled"
	jobs := []scheduler.Job{{Name: job, Spec: "0 * * * * *"}}
	for _, s := range []string{"10:00", "10:01", "10:03"} {
		seed(t, env, job, utc("2026-06-01T"+s+":00Z"))
	}
	clk := newClock(utc("2026-06-01T10:10:30Z"))
	log, _ := test.NewNullLogger()
	js, err := jetstream.New(bustest.Connect(t, env.Server.ClientURL()))
	require.NoError(t, err)
	s, err := scheduler.New(js, scheduler.Config{Topology: env.Topo, Jobs: jobs, Logger: log, Now: clk.Now})
	require.NoError(t, err)
	ctx := context.Background()

	res, err := s.Backfill(ctx, job, utc("2026-06-01T10:00:00Z"), utc("2026-06-01T10:05:00Z"))
	require.NoError(t, err)
	var published []string
	for _, p := range res.Published {
		published = append(published, p.Tick.Slot.Format("15:04"))
		require.Equal(t, scheduler.MsgID(job, p.Tick.Slot), p.MsgID, "the slot's own id, as the scheduler's")
		require.True(t, p.Tick.Backfill)
	}
	require.Equal(t, []string{"10:02", "10:04", "10:05"}, published)
	require.Len(t, res.Present, 3)
	require.Equal(t, []string{"10:00", "10:01", "10:03", "10:02", "10:04", "10:05"}, slots(ticks(t, env, job)))

	again, err := s.Backfill(ctx, job, utc("2026-06-01T10:00:00Z"), utc("2026-06-01T10:05:00Z"))
	require.NoError(t, err)
	require.Empty(t, again.Published, "every slot is there now")
	require.Len(t, again.Present, 6)

	last, err := s.Last(ctx, job)
	require.NoError(t, err)
	require.Equal(t, utc("2026-06-01T10:03:00Z"), last.Slot, "a backfilled tick is not the newest scheduled slot")

	for name, tc := range map[string]struct {
		job          string
		since, until time.Time
		want         string
	}{
		"UnknownJob":  {"test.nope", utc("2026-06-01T10:00:00Z"), utc("2026-06-01T10:05:00Z"), `no job named "test.nope"`},
		"Backwards":   {job, utc("2026-06-01T10:05:00Z"), utc("2026-06-01T10:00:00Z"), "is not before until"},
		"Future":      {job, utc("2026-06-01T10:00:00Z"), utc("2026-06-01T11:00:00Z"), "is in the future"},
		"PastTheKeep": {job, utc("2026-05-20T10:00:00Z"), utc("2026-06-01T10:00:00Z"), "older than the TICKS stream keeps"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := s.Backfill(ctx, tc.job, tc.since, tc.until)
			require.ErrorContains(t, err, tc.want)
		})
	}
	require.Len(t, ticks(t, env, job), 6, "refused backfills published nothing")
}

// TestAPausedJobPublishesNoSlots: the slots that come while a job is
// paused pass unpublished, not queued for later; resumed, it goes on
// from its next slot, and backfill brings back the ones that matter.
func TestAPausedJobPublishesNoSlots(t *testing.T) {
	t.Parallel()
	env := bustest.Start(t)
	const job = "test.paused"
	seed(t, env, job, utc("2026-06-01T10:00:00Z"))
	clk := newClock(utc("2026-06-01T10:00:30Z"))
	var paused atomic.Bool
	r := startReplica(t, env, scheduler.Config{Jobs: []scheduler.Job{{Name: job, Spec: "0 * * * * *"}}, CatchUpWindow: time.Hour,
		Now: clk.Now, Paused: func(j string) bool { return j == job && paused.Load() }})
	paused.Store(true)
	for _, at := range []string{"10:01:00", "10:02:00"} {
		clk.Set(utc("2026-06-01T" + at + "Z"))
		r.s.Nudge()
	}
	require.Eventually(t, func() bool { return r.metric(t, "levqor_scheduler_slots_skipped_total", job) >= 2 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{"10:00"}, slots(ticks(t, env, job)), "nothing published while paused")

	paused.Store(false)
	clk.Set(utc("2026-06-01T10:03:00Z"))
	r.s.Nudge()
	waitSlots(t, env, job, []string{"10:00", "10:03"})
}
