// Package sla computes support SLA clocks: when a ticket's first response
// and resolution are due, how much of each target is used, whether a clock
// is ok, at risk or breached, and whether the ticket is due an escalation.
//
// It is pure: no I/O, no logging and no clock. Every function takes the
// instants it needs ("now" included), so a test or a replay can evaluate a
// ticket at any moment.
//
// Targets are set per (SLA class, severity). The SLA classes are those of
// Levqor's catalog (standard, business, priority, enterprise); each may
// have business hours (a time zone, weekdays, opening and closing times,
// holidays), in which case its targets count business time only, measured
// as real elapsed time inside the opening hours of the class's own time
// zone. A class without business hours runs 24×7.
//
// The rules, in the order a reader will ask about them:
//
//   - Targets are measured from the moment the ticket opened, for the
//     ticket's current severity: an agent or an escalation that changes the
//     severity changes the targets, as if the ticket had opened with it.
//   - The resolution clock pauses while the ticket waits on the customer
//     (pending) and while it is resolved; the caller records those spans as
//     Pauses. The first-response clock never pauses.
//   - A clock is breached when the instant it is evaluated at (now, or
//     when it stopped) is strictly after its due time; meeting a target at
//     the due instant is on time. It is at risk once the used share of the
//     target reaches the policy's threshold (80% by default).
//   - A clock that breached before a pause stays breached while paused.
//   - A stopped clock (first response given, ticket resolved) is met or
//     breached and never escalates.
//   - Escalations are keyed "<clock>.at_risk" and "<clock>.breached". A
//     ticket carries the keys it was escalated for, and Escalations never
//     returns a key twice, so the same breach never escalates twice, however
//     often the check runs. A breach raises the severity one step (low →
//     normal → high → critical, capped) and moves the ticket to the
//     escalation queue; an at-risk warning changes neither.
package sla
