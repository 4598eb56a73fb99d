// Package support is Levqor's customer support domain: tickets, triage,
// tier-aware routing, SLA targets and breach escalation.
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
package support
