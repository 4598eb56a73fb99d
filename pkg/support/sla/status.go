package sla

import (
	"math"
	"slices"
	"time"
)

// The two clocks of a ticket.
const (
	// ClockFirstResponse runs from opening until an agent first replies.
	ClockFirstResponse = "first_response"
	// ClockResolution runs from opening until the ticket is resolved,
	// paused while it waits on the customer.
	ClockResolution = "resolution"
)

// State is where a clock stands.
type State string

// The states of a clock.
const (
	// StateOK: running, less than the at-risk share of the target used.
	StateOK State = "ok"
	// StateAtRisk: running, at least the at-risk share used, not yet due.
	StateAtRisk State = "at_risk"
	// StateBreached: the clock ran (or is running) past its due time.
	StateBreached State = "breached"
	// StateMet: the clock stopped on or before its due time.
	StateMet State = "met"
)

// Pause is a span during which the resolution clock stops: the ticket was
// pending (waiting on the customer) or resolved until reopened. To is zero
// while the pause lasts.
type Pause struct {
	// From is when the pause began.
	From time.Time
	// To is when it ended; zero while it lasts.
	To time.Time
}

// Ticket is what the SLA needs to know of a ticket. All times are
// instants; zero means "not yet".
type Ticket struct {
	// SLAClass is the account's SLA class (from its entitlements); empty
	// or unknown reads the policy's fallback class.
	SLAClass string
	// Severity is the ticket's current severity; empty or unknown reads
	// SeverityDefault.
	Severity string
	// Opened starts both clocks. Zero reads as the evaluation instant: a
	// ticket being opened now.
	Opened time.Time
	// FirstResponse is when an agent first replied; it stops the
	// first-response clock.
	FirstResponse time.Time
	// Resolved is when the ticket was resolved; it stops the resolution
	// clock. A reopened ticket has it zero again and a Pause from the
	// resolution to the reopening.
	Resolved time.Time
	// Pauses of the resolution clock, in any order; overlaps are merged.
	Pauses []Pause
}

// Clock is one clock of a ticket, evaluated at an instant.
type Clock struct {
	// Name is ClockFirstResponse or ClockResolution.
	Name string
	// State is ok, at_risk, breached or met.
	State State
	// Target is the business time the clock allows.
	Target time.Duration
	// Used is the business time used so far, pauses excluded; it can
	// exceed Target.
	Used time.Duration
	// Due is when the target runs out. It is zero while the clock is
	// paused before reaching it, since it depends on when the pause ends.
	Due time.Time
	// Paused is true while a pause holds the (running) clock.
	Paused bool
	// Stopped is true once the response or resolution happened.
	Stopped bool
}

// Report is a ticket's SLA evaluated at an instant.
type Report struct {
	// Class and Severity are the ones the targets were read for, after
	// fallbacks.
	Class    string
	Severity string
	// FirstResponse and Resolution are the two clocks.
	FirstResponse Clock
	Resolution    Clock
}

// Clocks returns the two clocks, first response first.
func (r Report) Clocks() []Clock { return []Clock{r.FirstResponse, r.Resolution} }

// Status evaluates t's clocks at now: their due times (recomputed from
// the ticket's opening, its pauses and its current severity, so calling it
// after any change gives the new due times) and their states.
func (p *Policy) Status(now time.Time, t Ticket) Report {
	class := p.Class(t.SLAClass)
	sev, ok := NormalizeSeverity(t.Severity)
	if !ok {
		sev = SeverityDefault
	}
	tg := class.Targets(sev)
	if t.Opened.IsZero() {
		t.Opened = now
	}
	return Report{
		Class:         class.Name,
		Severity:      sev,
		FirstResponse: p.clock(ClockFirstResponse, now, t.Opened, t.FirstResponse, nil, tg.FirstResponse, class.Calendar),
		Resolution:    p.clock(ClockResolution, now, t.Opened, t.Resolved, t.Pauses, tg.Resolution, class.Calendar),
	}
}

// clock evaluates one clock at now. It walks the opening, the pauses and
// the stop in time order, spending the target on the business time
// between them.
func (p *Policy) clock(name string, now, opened, stopped time.Time, pauses []Pause, target time.Duration, cal *Calendar) Clock {
	c := Clock{Name: name, Target: target}
	at := now
	if !stopped.IsZero() && !stopped.After(now) {
		at, c.Stopped = stopped, true
	}
	if at.Before(opened) {
		at = opened
	}
	remaining := target
	cursor, effective := opened, at
	spend := func(until time.Time) {
		used := Elapsed(cursor, until, cal)
		if c.Due.IsZero() && used >= remaining {
			c.Due = Due(cursor, remaining, cal).In(opened.Location())
		}
		remaining -= used
		c.Used += used
	}
	for _, pz := range mergePauses(pauses, opened) {
		if !pz.From.Before(at) {
			break
		}
		spend(pz.From)
		if pz.To.IsZero() || pz.To.After(at) {
			// Held by this pause at the evaluation instant: the clock
			// stands where the pause began.
			c.Paused = !c.Stopped
			cursor, effective = at, pz.From
			break
		}
		cursor = pz.To
	}
	if cursor.Before(at) {
		spend(at)
	}
	if c.Due.IsZero() && !c.Paused {
		// Not yet due: the rest of the target runs from where the clock
		// stands.
		c.Due = Due(at, remaining, cal).In(opened.Location())
	}
	switch {
	case !c.Due.IsZero() && effective.After(c.Due):
		c.State = StateBreached
	case c.Stopped:
		c.State = StateMet
	case c.Used >= time.Duration(math.Round(p.atRisk*float64(target))):
		c.State = StateAtRisk
	default:
		c.State = StateOK
	}
	return c
}

// mergePauses sorts pauses, clips them to start no earlier than opened,
// drops empty ones and merges overlapping or touching ones; an open pause
// (To zero) absorbs every pause after its start.
func mergePauses(pauses []Pause, opened time.Time) []Pause {
	out := make([]Pause, 0, len(pauses))
	for _, pz := range pauses {
		if pz.From.Before(opened) {
			pz.From = opened
		}
		if !pz.To.IsZero() && !pz.To.After(pz.From) {
			continue
		}
		out = append(out, pz)
	}
	slices.SortFunc(out, func(a, b Pause) int { return a.From.Compare(b.From) })
	merged := out[:0]
	for _, pz := range out {
		if n := len(merged); n > 0 {
			last := &merged[n-1]
			if last.To.IsZero() {
				continue
			}
			if !pz.From.After(last.To) {
				if pz.To.IsZero() || pz.To.After(last.To) {
					last.To = pz.To
				}
				continue
			}
		}
		merged = append(merged, pz)
	}
	return merged
}
