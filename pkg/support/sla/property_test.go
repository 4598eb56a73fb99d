package sla_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/support/sla"
)

// Property tests: random starts (many near daylight-saving changes) and
// targets on calendars in zones with and without daylight saving, checked
// against the definition of business time by counting open minutes one by
// one. A failure names its seed.

var propertyCalendars = []sla.HoursConfig{
	{TimeZone: "Europe/London", Days: weekdaysOnly, Open: "09:00", Close: "17:00", Holidays: []string{"2026-04-03", "2026-04-06", "2026-12-25"}},
	{TimeZone: "America/New_York", Days: weekdaysOnly, Open: "08:30", Close: "18:00"},
	{TimeZone: "Europe/London", Days: []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}, Open: "00:00", Close: "24:00"},
	{TimeZone: "Europe/London", Days: []string{"sat", "sun"}, Open: "00:30", Close: "02:30"}, // straddles the changes
	{TimeZone: "America/New_York", Days: []string{"sun"}, Open: "01:00", Close: "03:00"},
	{TimeZone: "Australia/Sydney", Days: []string{"mon", "tue", "wed", "thu", "fri", "sat"}, Open: "07:00", Close: "22:00"},
	{TimeZone: "Asia/Kolkata", Days: weekdaysOnly, Open: "10:00", Close: "19:00"},
}

var dstDays = []time.Time{
	time.Date(2026, 3, 8, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 29, 0, 0, 0, 0, time.UTC),
	time.Date(2026, 10, 25, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
	time.Date(2026, 4, 5, 0, 0, 0, 0, time.UTC), time.Date(2026, 10, 4, 0, 0, 0, 0, time.UTC),
}

func randomStart(r *rand.Rand) time.Time {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if r.IntN(2) == 0 {
		base = dstDays[r.IntN(len(dstDays))].Add(-4 * 24 * time.Hour)
		return base.Add(time.Duration(r.IntN(8*24*60)) * time.Minute)
	}
	return base.Add(time.Duration(r.IntN(365*24*60)) * time.Minute)
}

func TestDueMatchesCountingOpenMinutes(t *testing.T) {
	t.Parallel()
	for round := range 120 {
		r := rand.New(rand.NewPCG(uint64(round), 7))
		h := propertyCalendars[r.IntN(len(propertyCalendars))]
		cal := calendar(t, h)
		start := randomStart(r)
		target := time.Duration(1+r.IntN(12*60)) * time.Minute
		t.Run(fmt.Sprintf("Seed%d", round), func(t *testing.T) {
			// Count open minutes from start until the target is used up.
			var used time.Duration
			at := start
			for used < target {
				if cal.Open(at) {
					used += time.Minute
				}
				at = at.Add(time.Minute)
			}
			want := at
			got := sla.Due(start, target, cal)
			require.True(t, want.Equal(got), "%s from %s + %s: due %s, counting says %s", h.TimeZone, start, target, got, want)
			require.Equal(t, target, sla.Elapsed(start, got, cal))
		})
	}
}

func TestDueAndElapsedAgree(t *testing.T) {
	t.Parallel()
	for round := range 400 {
		r := rand.New(rand.NewPCG(uint64(round), 11))
		h := propertyCalendars[r.IntN(len(propertyCalendars))]
		cal := calendar(t, h)
		start := randomStart(r).Add(time.Duration(r.IntN(60)) * time.Second)
		target := time.Duration(1+r.Int64N(int64(300*time.Hour))) * time.Nanosecond
		due := sla.Due(start, target, cal)
		require.Equal(t, target, sla.Elapsed(start, due, cal), "seed %d", round)
		require.True(t, cal.Open(due.Add(-time.Nanosecond)), "seed %d: the target runs out while open", round)
		shorter := sla.Due(start, target/2, cal)
		require.False(t, shorter.After(due), "seed %d: a shorter target is not due later", round)
		// Splitting the target anywhere lands on the same instant.
		require.True(t, due.Equal(sla.Due(shorter, target-target/2, cal)), "seed %d", round)
	}
}
