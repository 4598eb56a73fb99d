package retention

import (
	"encoding"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxDurationUnit bounds each number of a Duration. A million years,
// months, days or hours is far beyond any retention promise and keeps the
// calendar arithmetic clear of overflow.
const MaxDurationUnit = 1_000_000

// Duration is a span of calendar time in restic's notation: years, months,
// days and hours, as in "1y2m3d4h" ("m" is months, not minutes). It is not a
// time.Duration because a month or a year has no fixed length: a Duration is
// subtracted from a point in time with AddDate, so "1m" back from 31 March
// is 3 March (Go's normalisation of 31 February), exactly as in restic.
type Duration struct {
	Years, Months, Days, Hours int
}

// ParseDuration reads restic's duration notation: one or more
// <number><unit> pairs with units y (years), m (months), d (days) and h
// (hours), in any order, each unit at most once, e.g. "30d", "1y6m",
// "2m2h". Unlike restic it rejects negative numbers, repeated units and
// non-ASCII digits, and it never panics.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Duration{}, fmt.Errorf("empty duration; want e.g. 30d or 1y2m3d4h")
	}
	var d Duration
	var seen [4]bool
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return Duration{}, fmt.Errorf("invalid duration %q: want <number><unit> pairs such as 30d or 1y2m3d4h", s)
		}
		if i == len(rest) {
			return Duration{}, fmt.Errorf("invalid duration %q: number %s has no unit (y, m, d or h)", s, rest)
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n > MaxDurationUnit {
			return Duration{}, fmt.Errorf("invalid duration %q: %s is more than %d", s, rest[:i], MaxDurationUnit)
		}
		unit := rest[i]
		var slot int
		switch unit {
		case 'y':
			slot, d.Years = 0, n
		case 'm':
			slot, d.Months = 1, n
		case 'd':
			slot, d.Days = 2, n
		case 'h':
			slot, d.Hours = 3, n
		default:
			return Duration{}, fmt.Errorf("invalid duration %q: unknown unit %q after %s (units: y years, m months, d days, h hours)", s, string(rune(unit)), rest[:i])
		}
		if seen[slot] {
			return Duration{}, fmt.Errorf("invalid duration %q: unit %q given twice", s, string(rune(unit)))
		}
		seen[slot] = true
		rest = rest[i+1:]
	}
	return d, nil
}

// String writes d the way restic does: the non-zero units in the order
// y, m, d, h ("1y2m3d4h"); the zero Duration is "0h".
func (d Duration) String() string {
	if d.IsZero() {
		return "0h"
	}
	var b strings.Builder
	for _, u := range [...]struct {
		n    int
		unit byte
	}{{d.Years, 'y'}, {d.Months, 'm'}, {d.Days, 'd'}, {d.Hours, 'h'}} {
		if u.n != 0 {
			b.WriteString(strconv.Itoa(u.n))
			b.WriteByte(u.unit)
		}
	}
	return b.String()
}

// IsZero reports whether d spans nothing; a rule with a zero Duration is
// switched off, as in restic.
func (d Duration) IsZero() bool {
	return d == Duration{}
}

// Before returns the point d before t: t.AddDate(-years, -months, -days)
// and then hours earlier, the arithmetic restic uses for keep-within.
func (d Duration) Before(t time.Time) time.Time {
	return t.AddDate(-d.Years, -d.Months, -d.Days).Add(-time.Duration(d.Hours) * time.Hour)
}

var (
	_ encoding.TextMarshaler   = Duration{}
	_ encoding.TextUnmarshaler = (*Duration)(nil)
	_ fmt.Stringer             = Duration{}
)

// MarshalText writes d in the notation ParseDuration reads.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

// UnmarshalText parses restic's notation with ParseDuration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// validate checks a Duration built in Go rather than parsed.
func (d Duration) validate() error {
	for _, n := range [...]int{d.Years, d.Months, d.Days, d.Hours} {
		if n < 0 {
			return fmt.Errorf("duration %s is negative", d)
		}
		if n > MaxDurationUnit {
			return fmt.Errorf("duration %s has a number above %d", d, MaxDurationUnit)
		}
	}
	return nil
}
