package sla_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/support/sla"
	"github.com/levqor/levqor/pkg/support/triage"
)

// defaultPolicy is the SLA policy Levqor ships (the sla section of the
// default support rules file), so these tests also pin the targets a
// customer is promised.
func defaultPolicy(t *testing.T) *sla.Policy {
	t.Helper()
	rules, err := triage.Load("")
	require.NoError(t, err)
	return rules.SLA()
}

var london = func() *time.Location {
	loc, err := time.LoadLocation("Europe/London")
	if err != nil {
		panic(err)
	}
	return loc
}()

// ldn is a London wall-clock time in November 2026 (GMT, no daylight
// saving): day 23 is a Monday.
func ldn(day, hh, mm int) time.Time { return time.Date(2026, 11, day, hh, mm, 0, 0, london) }

func TestDefaultTargets(t *testing.T) {
	t.Parallel()
	p := defaultPolicy(t)
	require.InDelta(t, 0.8, p.AtRisk(), 1e-9)
	require.Equal(t, "escalations", p.EscalationQueue())
	for _, tc := range []struct {
		class, severity string
		firstResponse   time.Duration
		resolution      time.Duration
		twentyFourSeven bool
	}{
		{"standard", "critical", 4 * time.Hour, 16 * time.Hour, false},
		{"standard", "normal", 16 * time.Hour, 40 * time.Hour, false},
		{"business", "critical", time.Hour, 8 * time.Hour, false},
		{"business", "low", 8 * time.Hour, 50 * time.Hour, false},
		{"priority", "critical", 30 * time.Minute, 6 * time.Hour, false},
		{"enterprise", "critical", 15 * time.Minute, 4 * time.Hour, true},
		{"enterprise", "low", 8 * time.Hour, 72 * time.Hour, true},
	} {
		c := p.Class(tc.class)
		require.Equal(t, tc.class, c.Name)
		require.Equal(t, sla.Targets{FirstResponse: tc.firstResponse, Resolution: tc.resolution}, c.Targets(tc.severity), "%s/%s", tc.class, tc.severity)
		require.Equal(t, tc.twentyFourSeven, c.Calendar == nil, "%s runs 24×7", tc.class)
	}
	require.Equal(t, "standard", p.Class("").Name, "no class: the fallback")
	require.Equal(t, "standard", p.Class("platinum").Name, "unknown class: the fallback")
	require.Equal(t, "enterprise", p.Class(" Enterprise ").Name)
	require.Equal(t, p.Class("standard").Targets("normal"), p.Class("standard").Targets("whatever"), "unknown severity reads normal")
}

func TestStatusBoundaries(t *testing.T) {
	t.Parallel()
	p := defaultPolicy(t)
	// Standard class, normal severity: first response 16h, resolution 40h
	// of Mon–Fri 09:00–17:00 London time.
	ticket := sla.Ticket{SLAClass: "standard", Severity: "normal", Opened: ldn(23, 9, 0)}
	firstResponseDue := ldn(24, 17, 0)
	atRisk := ldn(24, 13, 48) // 12h48m used: 80% of 16h

	for _, tc := range []struct {
		name  string
		now   time.Time
		state sla.State
		used  time.Duration
	}{
		{"JustOpened", ldn(23, 9, 0), sla.StateOK, 0},
		{"BeforeOpeningNextDay", ldn(24, 8, 0), sla.StateOK, 8 * time.Hour},
		{"JustBeforeAtRisk", atRisk.Add(-time.Nanosecond), sla.StateOK, 12*time.Hour + 48*time.Minute - time.Nanosecond},
		{"AtRiskAtEightyPercent", atRisk, sla.StateAtRisk, 12*time.Hour + 48*time.Minute},
		{"AtTheDueInstant", firstResponseDue, sla.StateAtRisk, 16 * time.Hour},
		{"JustAfterDue", firstResponseDue.Add(time.Nanosecond), sla.StateBreached, 16 * time.Hour},
		{"OvernightAfterDue", ldn(24, 23, 0), sla.StateBreached, 16 * time.Hour},
		{"NextDay", ldn(25, 10, 0), sla.StateBreached, 17 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := p.Status(tc.now, ticket)
			fr := r.FirstResponse
			require.Equal(t, sla.ClockFirstResponse, fr.Name)
			require.Equal(t, tc.state, fr.State)
			require.Equal(t, tc.used, fr.Used)
			require.Equal(t, 16*time.Hour, fr.Target)
			require.True(t, firstResponseDue.Equal(fr.Due), "first response due %s", fr.Due)
			require.False(t, fr.Paused || fr.Stopped)
			require.True(t, ldn(27, 17, 0).Equal(r.Resolution.Due), "resolution due Friday 17:00, got %s", r.Resolution.Due)
		})
	}
}

func TestStatusTwentyFourSevenAcrossSpringForward(t *testing.T) {
	t.Parallel()
	p := defaultPolicy(t)
	// Enterprise, critical: 15 minutes to respond, around the clock, here
	// across the night London's clocks jump from 01:00 to 02:00.
	opened := time.Date(2026, 3, 29, 0, 50, 0, 0, london)
	ticket := sla.Ticket{SLAClass: "enterprise", Severity: "critical", Opened: opened}
	due := time.Date(2026, 3, 29, 2, 5, 0, 0, london) // 01:05 UTC
	r := p.Status(opened.Add(11*time.Minute), ticket)
	require.Equal(t, sla.StateOK, r.FirstResponse.State)
	require.True(t, due.Equal(r.FirstResponse.Due), "due %s", r.FirstResponse.Due)
	require.Equal(t, sla.StateAtRisk, p.Status(opened.Add(12*time.Minute), ticket).FirstResponse.State)
	require.Equal(t, sla.StateAtRisk, p.Status(due, ticket).FirstResponse.State)
	require.Equal(t, sla.StateBreached, p.Status(due.Add(time.Nanosecond), ticket).FirstResponse.State)
	require.True(t, opened.Add(4*time.Hour).Equal(r.Resolution.Due))
}

func TestStatusPendingPauses(t *testing.T) {
	t.Parallel()
	p := defaultPolicy(t)
	opened := ldn(23, 9, 0) // Monday; standard normal: resolution 40h, due Friday 17:00 without pauses

	t.Run("AcrossANight", func(t *testing.T) {
		t.Parallel()
		// Pending from Monday 16:00 to Tuesday 10:00: two business hours.
		ticket := sla.Ticket{Severity: "normal", Opened: opened, FirstResponse: ldn(23, 15, 0),
			Pauses: []sla.Pause{{From: ldn(23, 16, 0), To: ldn(24, 10, 0)}}}
		r := p.Status(ldn(24, 11, 0), ticket)
		require.Equal(t, 8*time.Hour, r.Resolution.Used, "Monday 09–16 and Tuesday 10–11")
		require.True(t, ldn(30, 11, 0).Equal(r.Resolution.Due), "two business hours later than Friday 17:00: %s", r.Resolution.Due)
		require.False(t, r.Resolution.Paused)
		require.Equal(t, sla.StateMet, r.FirstResponse.State)
		require.True(t, r.FirstResponse.Stopped)
		require.Equal(t, 6*time.Hour, r.FirstResponse.Used, "the first-response clock does not pause")
	})
	t.Run("AcrossAWeekend", func(t *testing.T) {
		t.Parallel()
		ticket := sla.Ticket{Severity: "normal", Opened: opened,
			Pauses: []sla.Pause{{From: ldn(27, 16, 0), To: ldn(30, 10, 0)}}}
		r := p.Status(ldn(30, 12, 0), ticket)
		require.Equal(t, 41*time.Hour, r.Resolution.Used, "39 hours to Friday 16:00, 2 on Monday")
		require.True(t, ldn(30, 11, 0).Equal(r.Resolution.Due))
		require.Equal(t, sla.StateBreached, r.Resolution.State)
	})
	t.Run("StillPending", func(t *testing.T) {
		t.Parallel()
		ticket := sla.Ticket{Severity: "normal", Opened: opened,
			Pauses: []sla.Pause{{From: ldn(23, 16, 0), To: ldn(24, 10, 0)}, {From: ldn(25, 12, 0)}}}
		for _, now := range []time.Time{ldn(25, 12, 0).Add(time.Nanosecond), ldn(26, 15, 0), ldn(30, 9, 0), ldn(30, 23, 0).AddDate(0, 1, 0)} {
			r := p.Status(now, ticket)
			require.True(t, r.Resolution.Paused, "at %s", now)
			require.Equal(t, 17*time.Hour, r.Resolution.Used, "Monday 7h, Tuesday 7h, Wednesday 3h; frozen at %s", now)
			require.True(t, r.Resolution.Due.IsZero(), "no due time while waiting on the customer")
			require.Equal(t, sla.StateOK, r.Resolution.State)
		}
		// The customer answers on Thursday at 09:00: 23 hours are left.
		ticket.Pauses[1].To = ldn(26, 9, 0)
		r := p.Status(ldn(26, 9, 0), ticket)
		require.False(t, r.Resolution.Paused)
		require.True(t, ldn(30, 16, 0).Equal(r.Resolution.Due), "due %s", r.Resolution.Due)
	})
	t.Run("BreachedBeforePausing", func(t *testing.T) {
		t.Parallel()
		// Critical: resolution 16h, due Tuesday 17:00; pending from
		// Wednesday 10:00 does not undo the breach.
		ticket := sla.Ticket{Severity: "critical", Opened: opened, Pauses: []sla.Pause{{From: ldn(25, 10, 0)}}}
		r := p.Status(ldn(26, 12, 0), ticket)
		require.True(t, r.Resolution.Paused)
		require.Equal(t, sla.StateBreached, r.Resolution.State)
		require.True(t, ldn(24, 17, 0).Equal(r.Resolution.Due))
		require.Equal(t, 17*time.Hour, r.Resolution.Used)
	})
	t.Run("PausedExactlyAtDue", func(t *testing.T) {
		t.Parallel()
		ticket := sla.Ticket{Severity: "critical", Opened: opened, Pauses: []sla.Pause{{From: ldn(24, 17, 0)}}}
		r := p.Status(ldn(26, 12, 0), ticket)
		require.Equal(t, sla.StateAtRisk, r.Resolution.State, "on time, with the whole target used")
		require.True(t, r.Resolution.Paused)
	})
	t.Run("OverlappingAndUnordered", func(t *testing.T) {
		t.Parallel()
		merged := sla.Ticket{Severity: "normal", Opened: opened,
			Pauses: []sla.Pause{{From: ldn(23, 16, 0), To: ldn(24, 12, 0)}, {From: ldn(25, 9, 0), To: ldn(25, 10, 0)}}}
		messy := merged
		messy.Pauses = []sla.Pause{
			{From: ldn(25, 9, 30), To: ldn(25, 10, 0)},
			{From: ldn(24, 9, 0), To: ldn(24, 12, 0)},
			{From: ldn(23, 16, 0), To: ldn(24, 10, 0)},
			{From: ldn(25, 9, 0), To: ldn(25, 9, 45)},
			{From: ldn(20, 9, 0), To: ldn(20, 10, 0)}, // before the ticket opened
			{From: ldn(26, 9, 0), To: ldn(26, 9, 0)},  // empty
		}
		now := ldn(26, 11, 0)
		require.Equal(t, p.Status(now, merged), p.Status(now, messy))
		require.Equal(t, 21*time.Hour, p.Status(now, merged).Resolution.Used, "26 business hours, 5 of them pending")
	})
}

func TestStatusStoppedClocks(t *testing.T) {
	t.Parallel()
	p := defaultPolicy(t)
	opened := ldn(23, 9, 0)
	ticket := func(firstResponse, resolved time.Time) sla.Ticket {
		return sla.Ticket{SLAClass: "standard", Severity: "normal", Opened: opened, FirstResponse: firstResponse, Resolved: resolved}
	}
	later := ldn(30, 12, 0)
	require.Equal(t, sla.StateMet, p.Status(later, ticket(ldn(24, 16, 59), time.Time{})).FirstResponse.State)
	require.Equal(t, sla.StateMet, p.Status(later, ticket(ldn(24, 17, 0), time.Time{})).FirstResponse.State, "answering at the due instant is on time")
	late := p.Status(later, ticket(ldn(24, 17, 1), time.Time{})).FirstResponse
	require.Equal(t, sla.StateBreached, late.State, "a late answer stays a breach")
	require.True(t, late.Stopped)

	resolved := p.Status(later, ticket(ldn(23, 10, 0), ldn(25, 12, 0)))
	require.Equal(t, sla.StateMet, resolved.Resolution.State)
	require.Equal(t, 19*time.Hour, resolved.Resolution.Used, "used up to the resolution, not up to now")

	t.Run("ResolvedInTheFutureIsNotYetResolved", func(t *testing.T) {
		t.Parallel()
		r := p.Status(ldn(24, 9, 0), ticket(time.Time{}, ldn(25, 12, 0)))
		require.False(t, r.Resolution.Stopped)
		require.Equal(t, sla.StateOK, r.Resolution.State)
	})
	t.Run("ResolvedWhilePending", func(t *testing.T) {
		t.Parallel()
		tk := ticket(ldn(23, 10, 0), ldn(27, 12, 0))
		tk.Pauses = []sla.Pause{{From: ldn(24, 12, 0)}}
		r := p.Status(later, tk)
		require.Equal(t, sla.StateMet, r.Resolution.State)
		require.Equal(t, 11*time.Hour, r.Resolution.Used)
		require.False(t, r.Resolution.Paused)
	})
	t.Run("Reopened", func(t *testing.T) {
		t.Parallel()
		// Resolved Wednesday 12:00, reopened Thursday 10:00: the time in
		// between is a pause, and the clock runs on from 19 hours used.
		tk := ticket(ldn(23, 10, 0), time.Time{})
		tk.Pauses = []sla.Pause{{From: ldn(25, 12, 0), To: ldn(26, 10, 0)}}
		r := p.Status(ldn(26, 11, 0), tk)
		require.Equal(t, sla.StateOK, r.Resolution.State)
		require.Equal(t, 20*time.Hour, r.Resolution.Used)
		require.True(t, ldn(30, 15, 0).Equal(r.Resolution.Due), "due %s", r.Resolution.Due)
	})
}

func TestStatusFallbacksAndSeverityChanges(t *testing.T) {
	t.Parallel()
	p := defaultPolicy(t)
	opened := ldn(23, 9, 0)
	odd := p.Status(opened, sla.Ticket{SLAClass: "gold", Severity: "urgent!", Opened: opened})
	require.Equal(t, "standard", odd.Class)
	require.Equal(t, "normal", odd.Severity)
	require.Equal(t, 16*time.Hour, odd.FirstResponse.Target)

	// An agent raises the ticket to high on Tuesday: its targets become
	// high's (8h, 24h), counted from the opening, so it is already at risk.
	raised := p.Status(ldn(24, 12, 0), sla.Ticket{SLAClass: "standard", Severity: "HIGH", Opened: opened})
	require.Equal(t, "high", raised.Severity)
	require.Equal(t, sla.StateBreached, raised.FirstResponse.State)
	require.True(t, ldn(23, 17, 0).Equal(raised.FirstResponse.Due))
	require.Equal(t, sla.StateOK, raised.Resolution.State)
	require.True(t, ldn(25, 17, 0).Equal(raised.Resolution.Due))

	fresh := p.Status(ldn(27, 16, 0), sla.Ticket{SLAClass: "standard", Severity: "critical"})
	require.True(t, ldn(30, 12, 0).Equal(fresh.FirstResponse.Due), "no opening time yet: opened now, due %s", fresh.FirstResponse.Due)

	before := p.Status(opened.Add(-time.Hour), sla.Ticket{Severity: "low", Opened: opened})
	require.Equal(t, time.Duration(0), before.FirstResponse.Used, "a clock read before the opening has used nothing")
	require.Equal(t, sla.StateOK, before.FirstResponse.State)
}
