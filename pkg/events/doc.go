// Package events is the shared vocabulary of the EVENTS stream: the name
// and the payload of every levqor.event.<domain>.<what> that a worker
// writes through the transactional outbox, and the one function that
// writes them.
//
// Producers build a payload struct and call Emit inside the transaction
// that changes their state; consumers decode the same struct with Decode.
// Neither side imports the other: a consumer that follows billing's events
// depends on this package, not on billing's worker. The JSON field names
// are a contract with every consumer, including ones outside this
// repository (mailers, chat bridges, the nats CLI), and events_test.go
// pins them.
//
// The events, by domain (names are relative to the EVENTS prefix, so
// "billing.payment_failed" is published on levqor.event.billing.payment_failed):
//
//   - billing: entitlements_changed, account_status_changed,
//     payment_failed, payment_action_required, payment_recovered,
//     account_suspended, trial_will_end, dfy_purchased, charge_refunded,
//     dispute_opened, unknown_price;
//   - backup: quota_exceeded, corrupt, overdue, sweep_blocked;
//   - support: ticket_opened, ticket_updated, ticket_reopened,
//     message_added, sla_at_risk, sla_breached;
//   - ops: dlq_growing, consumer_stuck.
//
// This package sits just above bus and store: it imports no domain.
package events
