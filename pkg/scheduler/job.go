package scheduler

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	_ "time/tzdata" // jobs name time zones; the runtime image has no zoneinfo

	"github.com/robfig/cron/v3"
)

// Job is one periodic job.
type Job struct {
	// Name is also the tick's subject under the TICKS prefix, e.g.
	// "housekeeping.prune" → levqor.tick.housekeeping.prune.
	Name string `json:"job"`
	// Spec is a cron expression with an optional leading seconds field
	// ("0 17 3 * * *" or "17 3 * * *"), or a descriptor such as @hourly.
	// @every is refused: its slots depend on when a replica started.
	Spec string `json:"spec"`
	// TimeZone the spec is read in (IANA name, e.g. Europe/London); empty
	// means UTC.
	TimeZone string `json:"time_zone"`
	// Description says what the job does, for `levqor schedule list`.
	Description string `json:"description"`
	// Disabled jobs publish nothing (LEVQOR_SCHEDULE "job=off").
	Disabled bool `json:"disabled"`
}

// Tick is the payload of a tick message. Handlers act on Slot, not on the
// time they happen to run.
type Tick struct {
	// Job is the job's name.
	Job string `json:"job"`
	// Slot is the time the tick stands for, in UTC: a cron slot, or the
	// time an operator triggered a manual tick.
	Slot time.Time `json:"slot"`
	// Manual is true for a tick an operator asked for (`levqor schedule
	// trigger`), outside the schedule.
	Manual bool `json:"manual,omitempty"`
	// Backfill is true for a past slot an operator published late
	// (`levqor schedule backfill`); its id is the slot's own, as if the
	// scheduler had published it.
	Backfill bool `json:"backfill,omitempty"`
	// LastScheduled, on a manual or backfilled tick, is the newest
	// scheduled slot published before it, so that a scheduler catching up
	// after it starts from the schedule and not from its slot.
	LastScheduled *time.Time `json:"last_scheduled,omitempty"`
}

// MsgID is the dedupe id of a job's scheduled slot, "<job>@<slot in UTC,
// RFC 3339>". Every replica computes the same id for the same slot.
func MsgID(job string, slot time.Time) string {
	return job + "@" + slot.UTC().Format(time.RFC3339)
}

// ManualMsgID is the dedupe id of a manual tick: the slot's id with a random
// suffix, so that it never collides with a scheduled slot or with another
// operator's trigger in the same second.
func ManualMsgID(job string, slot time.Time) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return MsgID(job, slot) + "/manual-" + hex.EncodeToString(b)
}

// ParseTick decodes a tick payload.
func ParseTick(data []byte) (Tick, error) {
	var t Tick
	if err := json.Unmarshal(data, &t); err != nil {
		return t, fmt.Errorf("tick payload: %w", err)
	}
	if t.Job == "" || t.Slot.IsZero() {
		return t, errors.New("tick payload: job and slot are required")
	}
	t.Slot = t.Slot.UTC()
	return t, nil
}

// jobNameRe keeps job names valid, wildcard-free subject tokens.
var jobNameRe = regexp.MustCompile(`^[a-z0-9_-]+(\.[a-z0-9_-]+)*$`)

var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Schedule computes a job's slots. Unlike a bare cron schedule it keeps
// jobs at a fixed time of day to one run per day across daylight-saving
// changes (see the package documentation).
type Schedule struct {
	spec *cron.SpecSchedule
	loc  *time.Location
	// wallClock is true for jobs with a wildcard second, minute or hour
	// field: they follow real time through DST changes.
	wallClock bool
}

// Location is the time zone the schedule is read in.
func (s *Schedule) Location() *time.Location { return s.loc }

// Schedule parses the job's spec in its time zone.
func (j Job) Schedule() (*Schedule, error) {
	if !jobNameRe.MatchString(j.Name) {
		return nil, fmt.Errorf("job %q: name must be dot-separated lower-case tokens of letters, digits, '-' or '_'", j.Name)
	}
	loc, err := j.Location()
	if err != nil {
		return nil, err
	}
	spec := strings.TrimSpace(j.Spec)
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		return nil, fmt.Errorf("job %s: spec %q: give the time zone as the job's time zone, not in the spec", j.Name, j.Spec)
	}
	if strings.HasPrefix(spec, "@every") {
		return nil, fmt.Errorf("job %s: spec %q: @every is not supported: its slots depend on when each replica started; use a cron expression", j.Name, j.Spec)
	}
	parsed, err := parser.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("job %s: spec %q: %w", j.Name, j.Spec, err)
	}
	ss, ok := parsed.(*cron.SpecSchedule)
	if !ok {
		return nil, fmt.Errorf("job %s: spec %q: not a calendar schedule", j.Name, j.Spec)
	}
	ss.Location = loc
	return &Schedule{
		spec:      ss,
		loc:       loc,
		wallClock: followsRealTime(spec),
	}, nil
}

// Location returns the job's time zone. "Local" is refused: replicas on
// hosts in different zones would disagree on the slots.
func (j Job) Location() (*time.Location, error) {
	switch j.TimeZone {
	case "", "UTC":
		return time.UTC, nil
	case "Local":
		return nil, fmt.Errorf("job %s: time zone Local depends on the host; name an IANA zone such as Europe/London", j.Name)
	}
	loc, err := time.LoadLocation(j.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("job %s: time zone %q: %w", j.Name, j.TimeZone, err)
	}
	return loc, nil
}

// Next returns the first slot strictly after t, in UTC, or the zero time if
// the spec never fires again (e.g. 30 February).
func (s *Schedule) Next(t time.Time) time.Time {
	cand := s.spec.Next(t)
	if s.wallClock {
		return cand.UTC()
	}
	for !cand.IsZero() {
		// A fixed-time slot that fell into a gap the clocks jumped over
		// runs at the jump, as cron does.
		if jump, ok := s.skippedSlot(t, cand); ok {
			return jump.UTC()
		}
		// A fixed-time slot runs in the first pass of a repeated hour only.
		if !secondPass(cand.In(s.loc)) {
			return cand.UTC()
		}
		t, cand = cand, s.spec.Next(cand)
	}
	return time.Time{}
}

// followsRealTime reports whether a parsed spec has a wildcard ("*",
// "*/n" or "?") in its second, minute or hour field, as cron decides which
// jobs keep to real time across DST changes. @hourly is "0 * * * *".
func followsRealTime(spec string) bool {
	if strings.HasPrefix(spec, "@") {
		return spec == "@hourly"
	}
	fields := strings.Fields(spec)
	timeFields := fields[:2] // minute, hour
	if len(fields) == 6 {
		timeFields = fields[:3] // second, minute, hour
	}
	for _, f := range timeFields {
		if strings.HasPrefix(f, "*") || strings.HasPrefix(f, "?") {
			return true
		}
	}
	return false
}

// NextN returns the n slots after t.
func (s *Schedule) NextN(t time.Time, n int) []time.Time {
	out := make([]time.Time, 0, n)
	for len(out) < n {
		t = s.Next(t)
		if t.IsZero() {
			break
		}
		out = append(out, t)
	}
	return out
}

// skippedSlot reports the first clock jump forward in (t, cand] whose
// skipped wall-clock interval held a slot of the spec, and returns the
// instant of that jump.
func (s *Schedule) skippedSlot(t, cand time.Time) (time.Time, bool) {
	at := t.In(s.loc)
	for i := 0; i < 64; i++ { // a handful of transitions a year; bounded anyway
		_, end := at.ZoneBounds()
		if end.IsZero() || end.After(cand) {
			return time.Time{}, false
		}
		_, before := end.Add(-time.Nanosecond).Zone()
		_, after := end.Zone()
		if after > before {
			// Wall times [end in the old offset, +shift) never happened.
			old := time.FixedZone("", before)
			probe := *s.spec
			probe.Location = old
			if slot := probe.Next(end.Add(-time.Nanosecond)); !slot.IsZero() && slot.Before(end.Add(time.Duration(after-before)*time.Second)) {
				return end, true
			}
		}
		at = end
	}
	return time.Time{}, false
}

// secondPass reports whether t's wall-clock time, in t's location, already
// happened once, an offset-change earlier, because the clocks went back.
func secondPass(t time.Time) bool {
	start, _ := t.ZoneBounds()
	if start.IsZero() {
		return false
	}
	_, now := t.Zone()
	_, before := start.Add(-time.Nanosecond).Zone()
	shift := time.Duration(before-now) * time.Second
	return shift > 0 && t.Sub(start) < shift
}

// Period returns (to within ten minutes, from below) the longest interval
// between consecutive slots over the eight days after from: for a daily job
// 24 hours, or 25 on the day the clocks go back.
func (s *Schedule) Period(from time.Time) time.Duration {
	const step, horizon = 10 * time.Minute, 8 * 24 * time.Hour
	var longest time.Duration
	for h := from; h.Before(from.Add(horizon)); h = h.Add(step) {
		n := s.Next(h)
		if n.IsZero() {
			return horizon
		}
		if d := n.Sub(h); d > longest {
			longest = d
		}
	}
	return longest
}
