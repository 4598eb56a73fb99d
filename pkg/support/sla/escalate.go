package sla

import (
	"slices"
	"time"
)

// Escalation is one escalation a ticket is due.
type Escalation struct {
	// Key identifies the escalation on the ticket: "<clock>.<state>", e.g.
	// "first_response.breached". The ticket records it so that it is
	// never returned again.
	Key string
	// Clock is ClockFirstResponse or ClockResolution.
	Clock string
	// State is StateAtRisk (a warning) or StateBreached.
	State State
	// Severity is the ticket's severity after the escalation: one step up
	// for a breach, unchanged for a warning. It is absolute, so applying
	// two escalations from the same call gives the same severity as
	// applying one.
	Severity string
	// Queue is the queue the ticket moves to: the escalation queue for a
	// breach, "" (stay) for a warning.
	Queue string
	// Due is the clock's due time (zero if paused before it).
	Due time.Time
}

// EscalationKey is the key an escalation of clock in state is recorded
// under.
func EscalationKey(clock string, state State) string { return clock + "." + string(state) }

// Escalations returns the escalations t is due at now that are not among
// recorded (the keys of the ticket's past escalations), first response
// first. It is idempotent: once the caller records the returned keys, the
// same call returns nothing until another clock changes state. A running
// clock that is breached is due a breach escalation; one that is at risk
// is due a warning unless it already breached or is paused (waiting on
// the customer, nobody can act on it). Stopped clocks never
// escalate. When both clocks breach at once, both escalations carry the
// same, one-step-higher severity.
func (p *Policy) Escalations(now time.Time, t Ticket, recorded []string) []Escalation {
	r := p.Status(now, t)
	var out []Escalation
	for _, c := range r.Clocks() {
		if c.Stopped {
			continue
		}
		breached := EscalationKey(c.Name, StateBreached)
		switch c.State {
		case StateBreached:
			if !slices.Contains(recorded, breached) {
				out = append(out, Escalation{Key: breached, Clock: c.Name, State: StateBreached,
					Severity: Bump(r.Severity), Queue: p.escalationQueue, Due: c.Due})
			}
		case StateAtRisk:
			if c.Paused {
				// Waiting on the customer: nothing for an agent to do
				// until the clock runs again.
				continue
			}
			key := EscalationKey(c.Name, StateAtRisk)
			if !slices.Contains(recorded, key) && !slices.Contains(recorded, breached) {
				out = append(out, Escalation{Key: key, Clock: c.Name, State: StateAtRisk,
					Severity: r.Severity, Due: c.Due})
			}
		}
	}
	return out
}
