package sla

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	// Time zones come with the binary, so business hours work the same in a
	// minimal container image without /usr/share/zoneinfo.
	_ "time/tzdata"
)

// HoursConfig is the business_hours block of an SLA class in the rules
// file: the class's opening hours. Without it the class runs 24×7.
type HoursConfig struct {
	// TimeZone is an IANA zone name such as "Europe/London"; the opening
	// hours, weekdays and holidays are read in it, daylight saving
	// included.
	TimeZone string `json:"time_zone"`
	// Days are the open weekdays: "mon" … "sun" (full names work too).
	Days []string `json:"days"`
	// Open and Close are the local opening and closing times, "HH:MM",
	// Close after Open; Close may be "24:00" for midnight at the end of
	// the day.
	Open  string `json:"open"`
	Close string `json:"close"`
	// Holidays are local dates, "YYYY-MM-DD", on which the class is closed
	// all day.
	Holidays []string `json:"holidays,omitempty"`
}

// Calendar is a validated set of business hours. A nil *Calendar means
// 24×7: every instant counts.
type Calendar struct {
	loc         *time.Location
	days        [7]bool
	open, close int // minutes after local midnight; close may be 24*60
	holidays    map[civilDate]bool
}

type civilDate struct {
	year  int
	month time.Month
	day   int
}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "sunday": time.Sunday,
	"mon": time.Monday, "monday": time.Monday,
	"tue": time.Tuesday, "tuesday": time.Tuesday,
	"wed": time.Wednesday, "wednesday": time.Wednesday,
	"thu": time.Thursday, "thursday": time.Thursday,
	"fri": time.Friday, "friday": time.Friday,
	"sat": time.Saturday, "saturday": time.Saturday,
}

// NewCalendar validates h. Errors name the field under field, e.g.
// "sla.classes.standard.business_hours.open".
func NewCalendar(field string, h HoursConfig) (*Calendar, error) {
	c, errs := newCalendar(field, h)
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return c, nil
}

func newCalendar(field string, h HoursConfig) (*Calendar, []string) {
	var errs []string
	bad := func(f, format string, args ...any) {
		errs = append(errs, field+"."+f+": "+fmt.Sprintf(format, args...))
	}
	c := &Calendar{holidays: map[civilDate]bool{}}
	var err error
	if strings.TrimSpace(h.TimeZone) == "" {
		bad("time_zone", "missing; want an IANA zone such as Europe/London")
	} else if c.loc, err = time.LoadLocation(h.TimeZone); err != nil {
		bad("time_zone", "%q is not a known time zone; want an IANA zone such as Europe/London", h.TimeZone)
	}
	if len(h.Days) == 0 {
		bad("days", "missing; want open weekdays such as [mon, tue, wed, thu, fri]")
	}
	for i, d := range h.Days {
		wd, ok := weekdays[strings.ToLower(strings.TrimSpace(d))]
		switch {
		case !ok:
			bad(fmt.Sprintf("days[%d]", i), "%q is not a weekday; want mon, tue, wed, thu, fri, sat or sun", d)
		case c.days[wd]:
			bad(fmt.Sprintf("days[%d]", i), "%q is listed twice", d)
		default:
			c.days[wd] = true
		}
	}
	open, errOpen := parseClock(h.Open, false)
	if errOpen != nil {
		bad("open", "%v", errOpen)
	}
	closing, errClose := parseClock(h.Close, true)
	if errClose != nil {
		bad("close", "%v", errClose)
	}
	if errOpen == nil && errClose == nil && closing <= open {
		bad("close", "%s is not after open %s; overnight hours are not supported", h.Close, h.Open)
	}
	c.open, c.close = open, closing
	for i, s := range h.Holidays {
		d, err := time.Parse(time.DateOnly, strings.TrimSpace(s))
		if err != nil {
			bad(fmt.Sprintf("holidays[%d]", i), "%q: want a date YYYY-MM-DD", s)
			continue
		}
		c.holidays[civilDate{d.Year(), d.Month(), d.Day()}] = true
	}
	return c, errs
}

// parseClock reads "HH:MM" as minutes after midnight; "24:00" only when
// allowMidnight.
func parseClock(s string, allowMidnight bool) (int, error) {
	s = strings.TrimSpace(s)
	h, m, ok := strings.Cut(s, ":")
	hh, errH := strconv.Atoi(h)
	mm, errM := strconv.Atoi(m)
	switch {
	case !ok || len(h) != 2 || len(m) != 2 || errH != nil || errM != nil || hh < 0 || mm < 0 || mm > 59:
		return 0, fmt.Errorf("%q: want a local time HH:MM such as 09:00", s)
	case hh == 24 && mm == 0 && allowMidnight:
		return 24 * 60, nil
	case hh > 23:
		return 0, fmt.Errorf("%q: want a local time between 00:00 and 23:59 (24:00 closes at midnight)", s)
	}
	return hh*60 + mm, nil
}

// Location is the calendar's time zone.
func (c *Calendar) Location() *time.Location { return c.loc }

// window is the open interval of the local day y-m-d (normalised, so d may
// overflow the month), or ok false when the class is closed that day.
func (c *Calendar) window(y int, m time.Month, d int) (from, to time.Time, ok bool) {
	noon := time.Date(y, m, d, 12, 0, 0, 0, c.loc)
	y, m, d = noon.Date()
	if !c.days[noon.Weekday()] || c.holidays[civilDate{y, m, d}] {
		return time.Time{}, time.Time{}, false
	}
	// time.Date resolves local times that daylight saving skips or repeats
	// to one instant; a window whose ends collapse that way is empty.
	from = time.Date(y, m, d, c.open/60, c.open%60, 0, 0, c.loc)
	to = time.Date(y, m, d, c.close/60, c.close%60, 0, 0, c.loc)
	return from, to, from.Before(to)
}

// Due is the instant at which target of business time has passed since
// start on calendar cal (nil: 24×7, so simply start plus target). Business
// time is real elapsed time inside opening hours, read in the calendar's
// time zone, so a day on which daylight saving starts or ends is as long as
// the clocks make it. A start outside opening hours counts from the next
// opening. A target of zero or less is due at start. The result is in
// start's location.
func Due(start time.Time, target time.Duration, cal *Calendar) time.Time {
	if target <= 0 {
		return start
	}
	if cal == nil {
		return start.Add(target)
	}
	y, m, d := start.In(cal.loc).Date()
	remaining := target
	// A validated calendar is open at least one weekday, and holidays are
	// finitely many dates, so the walk ends.
	for i := 0; ; i++ {
		from, to, ok := cal.window(y, m, d+i)
		if !ok || !to.After(start) {
			continue
		}
		if from.Before(start) {
			from = start
		}
		avail := to.Sub(from)
		if remaining <= avail {
			return from.Add(remaining).In(start.Location())
		}
		remaining -= avail
	}
}

// Elapsed is the business time between from and to on calendar cal (nil:
// 24×7), zero when to is not after from. Elapsed(s, Due(s, d, cal), cal)
// is d for any d > 0.
func Elapsed(from, to time.Time, cal *Calendar) time.Duration {
	if !to.After(from) {
		return 0
	}
	if cal == nil {
		return to.Sub(from)
	}
	y, m, d := from.In(cal.loc).Date()
	var sum time.Duration
	for i := 0; ; i++ {
		if !time.Date(y, m, d+i, 0, 0, 0, 0, cal.loc).Before(to) {
			return sum
		}
		ws, we, ok := cal.window(y, m, d+i)
		if !ok {
			continue
		}
		if ws.Before(from) {
			ws = from
		}
		if we.After(to) {
			we = to
		}
		if we.After(ws) {
			sum += we.Sub(ws)
		}
	}
}

// Open reports whether t is inside the calendar's opening hours (always
// true for a nil, 24×7 calendar).
func (c *Calendar) Open(t time.Time) bool {
	if c == nil {
		return true
	}
	y, m, d := t.In(c.loc).Date()
	from, to, ok := c.window(y, m, d)
	return ok && !t.Before(from) && t.Before(to)
}
