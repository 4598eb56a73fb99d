package events

import "time"

// The support worker's events. They carry the ticket's account, id,
// subject, status, category, severity and queue, so that a mailer or a
// chat bridge needs nothing else; never message bodies.
const (
	// NameTicketOpened: a ticket was opened, by a customer, an agent or
	// an incident.
	NameTicketOpened Name = "support.ticket_opened"
	// NameTicketUpdated: a ticket's status changed, other than reopening.
	NameTicketUpdated Name = "support.ticket_updated"
	// NameTicketReopened: a resolved or closed ticket is open again.
	NameTicketReopened Name = "support.ticket_reopened"
	// NameTicketAutoClosed: a ticket resolved long enough ago, with no
	// reply since, was closed by support.autoclose.
	NameTicketAutoClosed Name = "support.ticket_autoclosed"
	// NameMessageAdded: a message was added to a ticket.
	NameMessageAdded Name = "support.message_added"
	// NameSLAAtRisk: a ticket's SLA clock is about to run out.
	NameSLAAtRisk Name = "support.sla_at_risk"
	// NameSLABreached: a ticket's SLA clock ran out; the ticket was
	// escalated.
	NameSLABreached Name = "support.sla_breached"
	// NameDFYStalled: a Done-For-You work item (the ticket a paid
	// package opened) has not moved for LEVQOR_DFY_FOLLOWUP_AFTER;
	// dfy.followup chases it.
	NameDFYStalled Name = "support.dfy_stalled"
)

// Ticket is what every support event says of its ticket, as it is after
// the change.
type Ticket struct {
	AccountID string `json:"account_id"`
	TicketID  string `json:"ticket_id"`
	Subject   string `json:"subject"`
	Status    string `json:"status"`
	Category  string `json:"category"`
	Severity  string `json:"severity"`
	Queue     string `json:"queue"`
	// Origin is store's TicketByCustomer, TicketByAgent or
	// TicketAutomatic.
	Origin string `json:"origin"`
	// At is when the change happened.
	At time.Time `json:"at"`
}

// EventAccount is the ticket's account.
func (t Ticket) EventAccount() string { return t.AccountID }

// TicketOpened is the payload of support.ticket_opened.
type TicketOpened struct {
	Ticket
	FirstResponseDue *time.Time `json:"first_response_due"`
	ResolutionDue    *time.Time `json:"resolution_due"`
	// FiredRules are the triage rules that decided the ticket's
	// category, severity and queue.
	FiredRules []string `json:"fired_rules"`
	// IncidentKey is set on a ticket an incident opened.
	IncidentKey string `json:"incident_key,omitempty"`
}

// EventName is NameTicketOpened.
func (TicketOpened) EventName() Name { return NameTicketOpened }

// TicketUpdated is the payload of support.ticket_updated.
type TicketUpdated struct {
	Ticket
	PreviousStatus   string     `json:"previous_status"`
	FirstResponseDue *time.Time `json:"first_response_due"`
	ResolutionDue    *time.Time `json:"resolution_due"`
}

// EventName is NameTicketUpdated.
func (TicketUpdated) EventName() Name { return NameTicketUpdated }

// TicketReopened is the payload of support.ticket_reopened.
type TicketReopened struct {
	Ticket
	PreviousStatus   string     `json:"previous_status"`
	FirstResponseDue *time.Time `json:"first_response_due"`
	ResolutionDue    *time.Time `json:"resolution_due"`
	// IncidentKey is set when the incident happening again reopened the
	// ticket.
	IncidentKey string `json:"incident_key,omitempty"`
}

// EventName is NameTicketReopened.
func (TicketReopened) EventName() Name { return NameTicketReopened }

// MessageAdded is the payload of support.message_added.
type MessageAdded struct {
	Ticket
	MessageID int64 `json:"message_id"`
	// Author is store's AuthorCustomer, AuthorAgent or AuthorSystem.
	Author string `json:"author"`
	// FirstResponse is set on an agent's first answer.
	FirstResponse bool `json:"first_response"`
}

// EventName is NameMessageAdded.
func (MessageAdded) EventName() Name { return NameMessageAdded }

// SLAEscalation is what the SLA events say of the escalation.
type SLAEscalation struct {
	Ticket
	// EscalationKey is "<clock>.<state>", e.g. "first_response.breached".
	EscalationKey string     `json:"escalation_key"`
	Clock         string     `json:"clock"`
	Due           *time.Time `json:"due"`
	// SeverityBefore and QueueBefore are the ticket's before the
	// escalation; Ticket has them after.
	SeverityBefore string `json:"severity_before"`
	QueueBefore    string `json:"queue_before"`
}

// SLAAtRisk is the payload of support.sla_at_risk.
type SLAAtRisk struct {
	SLAEscalation
}

// EventName is NameSLAAtRisk.
func (SLAAtRisk) EventName() Name { return NameSLAAtRisk }

// SLABreached is the payload of support.sla_breached.
type SLABreached struct {
	SLAEscalation
}

// EventName is NameSLABreached.
func (SLABreached) EventName() Name { return NameSLABreached }

// TicketAutoClosed is the payload of support.ticket_autoclosed, raised
// besides the ticket_updated of the change so that the customer can be
// told their ticket was closed.
type TicketAutoClosed struct {
	Ticket
	ResolvedAt time.Time `json:"resolved_at"`
	// Incident is "autoclosed:<ticket id>".
	Incident string `json:"incident"`
	Reason   string `json:"reason"`
}

// EventName is NameTicketAutoClosed.
func (TicketAutoClosed) EventName() Name { return NameTicketAutoClosed }

// DFYStalled is the payload of support.dfy_stalled.
type DFYStalled struct {
	Ticket
	// Package is the catalog's key of the package bought.
	Package string `json:"package"`
	// StalledSince is the ticket's last change before the chase.
	StalledSince time.Time `json:"stalled_since"`
	Incident     string    `json:"incident"`
	Reason       string    `json:"reason"`
}

// EventName is NameDFYStalled.
func (DFYStalled) EventName() Name { return NameDFYStalled }
