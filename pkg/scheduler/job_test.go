package scheduler_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/scheduler"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func schedule(t *testing.T, spec, zone string) *scheduler.Schedule {
	t.Helper()
	s, err := scheduler.Job{Name: "test.job", Spec: spec, TimeZone: zone}.Schedule()
	require.NoError(t, err)
	return s
}

func rfc(ts []time.Time) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Format(time.RFC3339)
	}
	return out
}

// onLocalDate returns the slots in [from, to) whose date in loc is date.
func onLocalDate(s *scheduler.Schedule, from, to time.Time, date string) []time.Time {
	var out []time.Time
	for t := s.Next(from); !t.IsZero() && t.Before(to); t = s.Next(t) {
		if t.In(s.Location()).Format("2006-01-02") == date {
			out = append(out, t)
		}
	}
	return out
}

func TestScheduleAcrossDSTChanges(t *testing.T) {
	t.Parallel()
	// Europe/London, 2026: clocks go forward at 01:00 UTC on 29 March
	// (01:00 GMT → 02:00 BST) and back at 01:00 UTC on 25 October
	// (02:00 BST → 01:00 GMT).
	t.Run("FixedTimeInTheSkippedHourRunsAtTheJump", func(t *testing.T) {
		s := schedule(t, "0 30 1 * * *", "Europe/London")
		got := s.NextN(utc("2026-03-27T12:00:00Z"), 3)
		require.Equal(t, []string{
			"2026-03-28T01:30:00Z", // 01:30 GMT
			"2026-03-29T01:00:00Z", // 01:30 never happens; the job runs at 02:00 BST, as cron does
			"2026-03-30T00:30:00Z", // 01:30 BST
		}, rfc(got), "a daily job does not lose the day the clocks go forward")
	})
	t.Run("FixedTimeInTheRepeatedHourRunsOnce", func(t *testing.T) {
		s := schedule(t, "0 30 1 * * *", "Europe/London")
		got := s.NextN(utc("2026-10-23T12:00:00Z"), 3)
		require.Equal(t, []string{
			"2026-10-24T00:30:00Z", // 01:30 BST
			"2026-10-25T00:30:00Z", // 01:30 BST, the first of the two 01:30s
			"2026-10-26T01:30:00Z", // 01:30 GMT
		}, rfc(got), "a daily job runs once the day the clocks go back")
	})
	t.Run("HourlyFollowsRealTime", func(t *testing.T) {
		s := schedule(t, "@hourly", "Europe/London")
		spring := onLocalDate(s, utc("2026-03-28T12:00:00Z"), utc("2026-03-30T12:00:00Z"), "2026-03-29")
		require.Len(t, spring, 23, "the local day has 23 hours")
		fall := onLocalDate(s, utc("2026-10-24T12:00:00Z"), utc("2026-10-26T12:00:00Z"), "2026-10-25")
		require.Len(t, fall, 25, "the local day has 25 hours")
		for _, day := range [][]time.Time{spring, fall} {
			for i := 1; i < len(day); i++ {
				require.Equal(t, time.Hour, day[i].Sub(day[i-1]), "one slot per real hour: %s → %s", day[i-1], day[i])
			}
		}
	})
	t.Run("WildcardMinutesRunInBothPasses", func(t *testing.T) {
		s := schedule(t, "*/20 1 * * *", "Europe/London")
		got := onLocalDate(s, utc("2026-10-24T12:00:00Z"), utc("2026-10-26T12:00:00Z"), "2026-10-25")
		require.Equal(t, []string{
			"2026-10-25T00:00:00Z", "2026-10-25T00:20:00Z", "2026-10-25T00:40:00Z", // 01:xx BST
			"2026-10-25T01:00:00Z", "2026-10-25T01:20:00Z", "2026-10-25T01:40:00Z", // 01:xx GMT
		}, rfc(got), "every 20 minutes means every 20 real minutes, as in cron")
	})
	t.Run("NewYork", func(t *testing.T) {
		// 8 March 2026 02:00 EST → 03:00 EDT; 1 November 02:00 EDT → 01:00 EST.
		s := schedule(t, "30 2 * * *", "America/New_York")
		require.Equal(t, []string{"2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"},
			rfc(s.NextN(utc("2026-03-06T12:00:00Z"), 3)))
		s = schedule(t, "30 1 * * *", "America/New_York")
		require.Equal(t, []string{"2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"},
			rfc(s.NextN(utc("2026-10-30T12:00:00Z"), 3)))
	})
	t.Run("HalfHourShift", func(t *testing.T) {
		// Lord Howe Island moves its clocks by 30 minutes: 2:00 → 1:30 on
		// 5 April 2026, 2:00 → 2:30 on 4 October 2026.
		s := schedule(t, "0 45 1 * * *", "Australia/Lord_Howe")
		got := onLocalDate(s, utc("2026-04-03T00:00:00Z"), utc("2026-04-07T00:00:00Z"), "2026-04-05")
		require.Len(t, got, 1, "01:45 happens twice that night; the job runs once")
		s = schedule(t, "0 15 2 * * *", "Australia/Lord_Howe")
		got = onLocalDate(s, utc("2026-10-02T00:00:00Z"), utc("2026-10-06T00:00:00Z"), "2026-10-04")
		require.Len(t, got, 1, "02:15 never happens that night; the job still runs")
		require.Equal(t, "02:30", got[0].In(s.Location()).Format("15:04"))
	})
	t.Run("SlotsAreMsgIDsInUTC", func(t *testing.T) {
		s := schedule(t, "0 30 1 * * *", "Europe/London")
		slot := s.Next(utc("2026-10-24T12:00:00Z"))
		require.Equal(t, "housekeeping.watch@2026-10-25T00:30:00Z", scheduler.MsgID("housekeeping.watch", slot))
		require.Equal(t, time.UTC, slot.Location())
	})
}

func TestScheduleParsing(t *testing.T) {
	t.Parallel()
	t.Run("SecondsAreOptional", func(t *testing.T) {
		five := schedule(t, "17 3 * * *", "")
		six := schedule(t, "0 17 3 * * *", "UTC")
		from := utc("2026-06-01T00:00:00Z")
		require.Equal(t, five.NextN(from, 3), six.NextN(from, 3))
		require.Equal(t, "2026-06-01T03:17:00Z", five.Next(from).Format(time.RFC3339))
		require.Equal(t, []string{"2026-06-01T00:00:05Z", "2026-06-01T00:00:10Z"}, rfc(schedule(t, "*/5 * * * * *", "").NextN(from, 2)))
	})
	for name, tc := range map[string]struct{ job scheduler.Job }{
		"BadSpec":        {scheduler.Job{Name: "a.b", Spec: "61 * * * *"}},
		"Every":          {scheduler.Job{Name: "a.b", Spec: "@every 1m"}},
		"LocalZone":      {scheduler.Job{Name: "a.b", Spec: "@daily", TimeZone: "Local"}},
		"UnknownZone":    {scheduler.Job{Name: "a.b", Spec: "@daily", TimeZone: "Mars/Olympus_Mons"}},
		"ZoneInSpec":     {scheduler.Job{Name: "a.b", Spec: "CRON_TZ=Europe/London 0 3 * * *"}},
		"WildcardName":   {scheduler.Job{Name: "a.>", Spec: "@daily"}},
		"UpperCaseName":  {scheduler.Job{Name: "Billing.Reconcile", Spec: "@daily"}},
		"EmptyNameToken": {scheduler.Job{Name: "a..b", Spec: "@daily"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tc.job.Schedule()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.job.Name, "the error names the job")
		})
	}
}

func TestPeriod(t *testing.T) {
	t.Parallel()
	from := utc("2026-06-01T00:00:00Z")
	p := schedule(t, "0 17 3 * * *", "").Period(from)
	require.InDelta(t, 24*time.Hour, p, float64(10*time.Minute))
	require.InDelta(t, time.Minute, schedule(t, "0 * * * * *", "").Period(from), float64(time.Second))
	require.Greater(t, schedule(t, "0 0 3 * * 1", "").Period(from), 6*24*time.Hour, "weekly")
	fall := schedule(t, "0 0 12 * * *", "Europe/London").Period(utc("2026-10-22T00:00:00Z"))
	require.InDelta(t, 25*time.Hour, fall, float64(10*time.Minute), "the day the clocks go back is 25 hours long")
}

func TestOverride(t *testing.T) {
	t.Parallel()
	catalog := scheduler.Catalog()
	got, warnings, err := scheduler.Override(catalog, " housekeeping.prune = 0 0 4 * * * ; housekeeping.watch=off;")
	require.NoError(t, err)
	require.Empty(t, warnings)
	prune, _ := scheduler.Lookup(got, scheduler.JobHousekeepingPrune)
	require.Equal(t, "0 0 4 * * *", prune.Spec)
	require.False(t, prune.Disabled)
	watch, _ := scheduler.Lookup(got, scheduler.JobHousekeepingWatch)
	require.True(t, watch.Disabled)
	orig, _ := scheduler.Lookup(catalog, scheduler.JobHousekeepingPrune)
	require.Equal(t, "0 17 3 * * *", orig.Spec, "the catalog itself is untouched")

	got, _, err = scheduler.Override(catalog, "housekeeping.prune=CRON_TZ=Europe/London 0 30 1 * * *")
	require.NoError(t, err)
	prune, _ = scheduler.Lookup(got, scheduler.JobHousekeepingPrune)
	require.Equal(t, "Europe/London", prune.TimeZone)
	require.Equal(t, "0 30 1 * * *", prune.Spec)

	got, _, err = scheduler.Override(append(catalog, scheduler.Job{Name: "x.y", Spec: "@daily", Disabled: true}), "x.y=on")
	require.NoError(t, err)
	x, _ := scheduler.Lookup(got, "x.y")
	require.False(t, x.Disabled)

	for name, spec := range map[string]string{
		"UnknownJob":  "billing.nope=@daily",
		"BadSpec":     "housekeeping.prune=every day",
		"BadZone":     "housekeeping.prune=TZ=Nowhere/Land 0 3 * * *",
		"MissingSpec": "housekeeping.prune=",
		"NoEquals":    "housekeeping.prune",
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := scheduler.Override(catalog, spec)
			require.ErrorContains(t, err, "LEVQOR_SCHEDULE")
		})
	}
	_, _, err = scheduler.Override(catalog, "billing.nope=@daily")
	require.ErrorContains(t, err, "housekeeping.prune", "the error lists the jobs there are")

	// A former name still works, for one release, and says what to write.
	got, warnings, err = scheduler.Override(catalog, "retention.sweep=off")
	require.NoError(t, err)
	sweep, _ := scheduler.Lookup(got, scheduler.JobBackupSweep)
	require.True(t, sweep.Disabled)
	require.Equal(t, []string{`LEVQOR_SCHEDULE: job "retention.sweep" is now called "backup.sweep"; write backup.sweep=off (the old name is accepted until the next release)`}, warnings)
}

func TestTickPayload(t *testing.T) {
	t.Parallel()
	tk, err := scheduler.ParseTick([]byte(`{"job":"housekeeping.prune","slot":"2026-06-01T05:17:00+02:00"}`))
	require.NoError(t, err)
	require.Equal(t, utc("2026-06-01T03:17:00Z"), tk.Slot)
	require.Equal(t, time.UTC, tk.Slot.Location())
	for _, bad := range []string{`{`, `{"job":"x"}`, `{"slot":"2026-06-01T03:17:00Z"}`, `[]`} {
		_, err := scheduler.ParseTick([]byte(bad))
		require.Error(t, err, bad)
	}
	a := scheduler.ManualMsgID("housekeeping.prune", utc("2026-06-01T03:17:00Z"))
	b := scheduler.ManualMsgID("housekeeping.prune", utc("2026-06-01T03:17:00Z"))
	require.NotEqual(t, a, b, "two operators triggering in the same second get two ticks")
	require.Contains(t, a, "housekeeping.prune@2026-06-01T03:17:00Z/manual-")
}
