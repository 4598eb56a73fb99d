// Package support is Levqor's customer support domain: tickets, triage,
// tier-aware routing, SLA targets and breach escalation, and tickets the
// platform opens itself when something goes wrong for a customer.
//
// The decisions are pure and live in subpackages so that they can be read,
// tested and changed without a database or a bus:
//
//   - triage classifies a ticket (category, severity) with transparent,
//     operator-editable rules and routes it to a queue; it also owns the
//     support rules file (LEVQOR_SUPPORT_RULES).
//   - sla computes first-response and resolution due times in business
//     time, the ok / at_risk / breached state of each clock, and whether a
//     ticket is due an escalation.
//
// This package is the support worker ("support" in LEVQOR_WORKERS), which
// applies them:
//
//   - Commands (levqor.cmd.support.*, consumer support-cmd), from the
//     /v1/tickets endpoints: create_ticket triages the ticket, routes it by
//     the account's tier, SLA class and DFY purchases, and computes its due
//     times; add_message records a customer's or an agent's message (the
//     first agent reply stops the first-response clock; a customer's
//     answer brings a pending or resolved ticket back to open);
//     set_status moves open → pending → resolved → closed, or back to open
//     (reopen). Pending and resolved pause the resolution clock.
//   - The support.sla_check tick (support-tick) evaluates every open and
//     pending ticket at the tick's slot. An at-risk clock raises
//     levqor.event.support.sla_at_risk; a breached one moves the ticket to
//     the escalation queue with its severity one step up and raises
//     levqor.event.support.sla_breached. Each is recorded under a key
//     unique per ticket ("first_response.breached"), so the same breach
//     never escalates twice.
//   - Other domains' events (support-event, every levqor.event subject)
//     open one ticket per incident: billing.payment_failed for business
//     and enterprise accounts, backup.overdue, backup.corrupt,
//     backup.sweep_blocked, and ops.dlq_growing when it names an account.
//     A repeat while the ticket is open is noted in its history; a newer
//     repeat after it was resolved reopens it; an older one (events arrive
//     out of order) changes nothing.
//
// Every change writes the ticket's history and an event through the
// outbox (levqor.event.support.ticket_opened, .ticket_updated,
// .message_added, .ticket_reopened, .sla_at_risk, .sla_breached) carrying
// the account, ticket, subject, status, category, severity and queue, so a
// mailer or chat bridge can subscribe; the worker sends no mail itself.
//
// Times come from the work, not the worker's clock: a command is timed by
// when the API accepted it, an event by its own time, a tick by its slot,
// so redeliveries and replays decide the same.
package support
