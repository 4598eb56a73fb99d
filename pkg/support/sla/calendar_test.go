package sla_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/support/sla"
)

func zone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	require.NoError(t, err)
	return loc
}

func calendar(t *testing.T, h sla.HoursConfig) *sla.Calendar {
	t.Helper()
	c, err := sla.NewCalendar("test", h)
	require.NoError(t, err)
	return c
}

var weekdaysOnly = []string{"mon", "tue", "wed", "thu", "fri"}

func TestDue(t *testing.T) {
	t.Parallel()
	london, newYork := zone(t, "Europe/London"), zone(t, "America/New_York")
	londonOffice := calendar(t, sla.HoursConfig{TimeZone: "Europe/London", Days: weekdaysOnly, Open: "09:00", Close: "17:00",
		Holidays: []string{"2026-12-25", "2026-12-28"}})
	newYorkOffice := calendar(t, sla.HoursConfig{TimeZone: "America/New_York", Days: weekdaysOnly, Open: "09:00", Close: "17:00"})
	londonAllDay := calendar(t, sla.HoursConfig{TimeZone: "Europe/London",
		Days: []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}, Open: "00:00", Close: "24:00"})
	at := func(loc *time.Location, y int, m time.Month, d, hh, mm int) time.Time {
		return time.Date(y, m, d, hh, mm, 0, 0, loc)
	}
	utc := func(y int, m time.Month, d, hh, mm int) time.Time { return at(time.UTC, y, m, d, hh, mm) }

	for _, tc := range []struct {
		name   string
		cal    *sla.Calendar
		start  time.Time
		target time.Duration
		want   time.Time
	}{
		{"WithinOneDay", londonOffice, at(london, 2026, 11, 24, 10, 0), 4 * time.Hour, at(london, 2026, 11, 24, 14, 0)},
		{"AcrossTheNight", londonOffice, at(london, 2026, 11, 24, 15, 0), 4 * time.Hour, at(london, 2026, 11, 25, 11, 0)},
		{"AcrossTheWeekend", londonOffice, at(london, 2026, 11, 27, 16, 0), 4 * time.Hour, at(london, 2026, 11, 30, 12, 0)},
		{"ShorterThanABusinessDay", londonOffice, at(london, 2026, 11, 24, 16, 45), 30 * time.Minute, at(london, 2026, 11, 25, 9, 15)},
		{"StartOnSaturday", londonOffice, at(london, 2026, 11, 28, 10, 0), time.Hour, at(london, 2026, 11, 30, 10, 0)},
		{"StartBeforeOpening", londonOffice, at(london, 2026, 11, 23, 7, 30), 30 * time.Minute, at(london, 2026, 11, 23, 9, 30)},
		{"StartAfterClosing", londonOffice, at(london, 2026, 11, 23, 18, 0), 30 * time.Minute, at(london, 2026, 11, 24, 9, 30)},
		{"EndsExactlyAtClosing", londonOffice, at(london, 2026, 11, 23, 9, 0), 8 * time.Hour, at(london, 2026, 11, 23, 17, 0)},
		{"FiveBusinessDays", londonOffice, at(london, 2026, 11, 23, 9, 0), 40 * time.Hour, at(london, 2026, 11, 27, 17, 0)},
		{"OverChristmasHolidays", londonOffice, at(london, 2026, 12, 24, 16, 0), 2 * time.Hour, at(london, 2026, 12, 29, 10, 0)},
		{"StartInAnotherZone", londonOffice, at(newYork, 2026, 11, 23, 6, 0), time.Hour, utc(2026, 11, 23, 12, 0)},
		{"ZeroTarget", londonOffice, at(london, 2026, 11, 28, 10, 0), 0, at(london, 2026, 11, 28, 10, 0)},

		// Daylight saving starts in London on Sunday 29 March 2026: Monday
		// noon is 11:00 UTC, not 12:00 as in the winter.
		{"LondonSpringForward", londonOffice, utc(2026, 3, 27, 16, 0), 4 * time.Hour, utc(2026, 3, 30, 11, 0)},
		// ... and ends on Sunday 25 October 2026: the Friday is BST, the
		// Monday GMT.
		{"LondonFallBack", londonOffice, utc(2026, 10, 23, 15, 0), 4 * time.Hour, utc(2026, 10, 26, 12, 0)},
		// New York springs forward on 8 March 2026 and falls back on 1
		// November 2026, weeks apart from London.
		{"NewYorkSpringForward", newYorkOffice, utc(2026, 3, 6, 21, 0), 2 * time.Hour, utc(2026, 3, 9, 14, 0)},
		{"NewYorkFallBack", newYorkOffice, utc(2026, 10, 30, 20, 0), 2 * time.Hour, utc(2026, 11, 2, 15, 0)},
		{"NewYorkWhileLondonHasChanged", newYorkOffice, at(newYork, 2026, 3, 27, 16, 0), 2 * time.Hour, at(newYork, 2026, 3, 30, 10, 0)},
		// A day open around the clock is as long as the clocks make it: 23
		// hours when they spring forward, 25 when they fall back, so 24
		// hours of business time are 24 real hours.
		{"AllDaySpringForward", londonAllDay, at(london, 2026, 3, 29, 0, 0), 24 * time.Hour, at(london, 2026, 3, 30, 1, 0)},
		{"AllDayFallBack", londonAllDay, at(london, 2026, 10, 25, 0, 0), 24 * time.Hour, at(london, 2026, 10, 25, 23, 0)},
		// Without business hours (24×7) a target is real time.
		{"TwentyFourSevenAcrossSpringForward", nil, at(london, 2026, 3, 28, 12, 0), 24 * time.Hour, at(london, 2026, 3, 29, 13, 0)},
		{"TwentyFourSevenAcrossTheWeekend", nil, at(london, 2026, 11, 27, 23, 50), 15 * time.Minute, at(london, 2026, 11, 28, 0, 5)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := sla.Due(tc.start, tc.target, tc.cal)
			require.True(t, tc.want.Equal(got), "due %s, want %s", got.UTC(), tc.want.UTC())
			require.Equal(t, tc.start.Location(), got.Location(), "due is in the start's location")
			require.Equal(t, max(tc.target, 0), sla.Elapsed(tc.start, got, tc.cal), "elapsed business time up to the due time is the target")
		})
	}
}

func TestElapsed(t *testing.T) {
	t.Parallel()
	london := zone(t, "Europe/London")
	office := calendar(t, sla.HoursConfig{TimeZone: "Europe/London", Days: weekdaysOnly, Open: "09:00", Close: "17:00"})
	night := calendar(t, sla.HoursConfig{TimeZone: "Europe/London",
		Days: []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}, Open: "00:00", Close: "03:00"})
	at := func(y int, m time.Month, d, hh, mm int) time.Time { return time.Date(y, m, d, hh, mm, 0, 0, london) }

	for _, tc := range []struct {
		name     string
		cal      *sla.Calendar
		from, to time.Time
		want     time.Duration
	}{
		{"FridayToMonday", office, at(2026, 11, 27, 16, 0), at(2026, 11, 30, 10, 0), 2 * time.Hour},
		{"AWholeWeek", office, at(2026, 11, 23, 0, 0), at(2026, 11, 30, 0, 0), 40 * time.Hour},
		{"OutsideHoursOnly", office, at(2026, 11, 28, 0, 0), at(2026, 11, 30, 8, 59), 0},
		{"Backwards", office, at(2026, 11, 30, 10, 0), at(2026, 11, 27, 16, 0), 0},
		// 00:00–03:00 holds two real hours when the clocks jump from 01:00
		// to 02:00, and four when 01:00–02:00 happens twice.
		{"NightOfSpringForward", night, at(2026, 3, 29, 0, 0), at(2026, 3, 29, 12, 0), 2 * time.Hour},
		{"NightOfFallBack", night, at(2026, 10, 25, 0, 0), at(2026, 10, 25, 12, 0), 4 * time.Hour},
		{"TwentyFourSevenFallBackDay", nil, at(2026, 10, 25, 0, 0), at(2026, 10, 26, 0, 0), 25 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, sla.Elapsed(tc.from, tc.to, tc.cal))
		})
	}
}

func TestCalendarOpen(t *testing.T) {
	t.Parallel()
	london := zone(t, "Europe/London")
	office := calendar(t, sla.HoursConfig{TimeZone: "Europe/London", Days: weekdaysOnly, Open: "09:00", Close: "17:30", Holidays: []string{"2026-12-25"}})
	require.Equal(t, london.String(), office.Location().String())
	require.True(t, office.Open(time.Date(2026, 11, 23, 9, 0, 0, 0, london)), "open at the opening minute")
	require.True(t, office.Open(time.Date(2026, 11, 23, 17, 29, 59, 0, london)))
	require.False(t, office.Open(time.Date(2026, 11, 23, 17, 30, 0, 0, london)), "closed at the closing minute")
	require.False(t, office.Open(time.Date(2026, 11, 28, 12, 0, 0, 0, london)), "closed on Saturday")
	require.False(t, office.Open(time.Date(2026, 12, 25, 12, 0, 0, 0, london)), "closed on a holiday")
	var twentyFourSeven *sla.Calendar
	require.True(t, twentyFourSeven.Open(time.Date(2026, 12, 25, 3, 0, 0, 0, london)))
}

func TestNewCalendarNamesTheField(t *testing.T) {
	t.Parallel()
	good := sla.HoursConfig{TimeZone: "Europe/London", Days: weekdaysOnly, Open: "09:00", Close: "17:00"}
	for _, tc := range []struct {
		name   string
		change func(*sla.HoursConfig)
		want   string
	}{
		{"UnknownZone", func(h *sla.HoursConfig) { h.TimeZone = "Europe/Londn" }, `hours.time_zone: "Europe/Londn" is not a known time zone`},
		{"MissingZone", func(h *sla.HoursConfig) { h.TimeZone = "" }, "hours.time_zone: missing"},
		{"NoDays", func(h *sla.HoursConfig) { h.Days = nil }, "hours.days: missing"},
		{"UnknownDay", func(h *sla.HoursConfig) { h.Days = []string{"mon", "funday"} }, `hours.days[1]: "funday" is not a weekday`},
		{"DayTwice", func(h *sla.HoursConfig) { h.Days = []string{"mon", "Monday"} }, `hours.days[1]: "Monday" is listed twice`},
		{"OpenNotATime", func(h *sla.HoursConfig) { h.Open = "9am" }, `hours.open: "9am": want a local time HH:MM`},
		{"CloseBeforeOpen", func(h *sla.HoursConfig) { h.Close = "08:00" }, "hours.close: 08:00 is not after open 09:00"},
		{"CloseAfterMidnight", func(h *sla.HoursConfig) { h.Close = "24:30" }, `hours.close: "24:30": want a local time between 00:00 and 23:59`},
		{"OpenAtMidnightEnd", func(h *sla.HoursConfig) { h.Open = "24:00" }, `hours.open: "24:00": want a local time between`},
		{"BadHoliday", func(h *sla.HoursConfig) { h.Holidays = []string{"2026-12-25", "25/12/2026"} }, `hours.holidays[1]: "25/12/2026": want a date YYYY-MM-DD`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := good
			tc.change(&h)
			_, err := sla.NewCalendar("hours", h)
			require.ErrorIs(t, err, sla.ErrInvalid)
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err := sla.NewCalendar("hours", good)
	require.NoError(t, err)
}
