package support

import (
	"time"

	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/support/sla"
)

// ClockView is one SLA clock of a ticket as the API shows it.
type ClockView struct {
	// Due is when the target runs out; null while the clock is paused
	// before reaching it.
	Due *time.Time `json:"due"`
	// State is ok, at_risk, breached, met, or paused (pending, or
	// resolved until reopened, before the due time). A running clock past
	// its due time reads breached at once; at_risk is as of the last SLA
	// check or change.
	State string `json:"state"`
	// StoppedAt is when the first response or the resolution happened.
	StoppedAt *time.Time `json:"stopped_at,omitempty"`
}

// SLAView is a ticket's two SLA clocks.
type SLAView struct {
	// Class is the SLA class the targets come from.
	Class         string    `json:"class"`
	FirstResponse ClockView `json:"first_response"`
	Resolution    ClockView `json:"resolution"`
	// CheckedAt is when the worker last evaluated the clocks.
	CheckedAt time.Time `json:"checked_at"`
}

// TicketView is the API's representation of a ticket: the ticket with its
// triage decision and SLA clocks, and in full reads its conversation,
// escalations and history.
type TicketView struct {
	store.Ticket
	// SLA shows the due times and states.
	SLA SLAView `json:"sla"`
	// Messages, Escalations and History are present in full reads.
	Messages    []store.TicketMessage    `json:"messages,omitempty"`
	Escalations []store.TicketEscalation `json:"escalations,omitempty"`
	History     []store.TicketEvent      `json:"history,omitempty"`
}

// NewTicketView shows t at now. The worker keeps the due times and states
// current on every change and SLA check; a running clock that passed its
// due time since reads breached here without waiting for the next check.
func NewTicketView(t *store.Ticket, now time.Time) TicketView {
	v := TicketView{Ticket: *t, SLA: SLAView{Class: t.SLAClass, CheckedAt: t.SLACheckedAt}}
	v.SLA.FirstResponse = ClockView{Due: t.FirstResponseDue, State: t.FirstResponseState, StoppedAt: t.FirstResponseAt}
	if t.FirstResponseAt == nil && t.FirstResponseDue != nil && now.After(*t.FirstResponseDue) {
		v.SLA.FirstResponse.State = string(sla.StateBreached)
	}
	v.SLA.Resolution = ClockView{Due: t.ResolutionDue, State: t.ResolutionState, StoppedAt: t.ResolvedAt}
	switch {
	case t.Status == store.TicketOpen && t.ResolutionDue != nil && now.After(*t.ResolutionDue):
		v.SLA.Resolution.State = string(sla.StateBreached)
	case t.Status == store.TicketPending && t.ResolutionState != string(sla.StateBreached):
		v.SLA.Resolution.State = "paused"
	}
	return v
}
