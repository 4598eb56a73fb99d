// Package command is the contract between the product API and the workers
// that carry out its changes. Every mutating API call becomes a command:
// ingest records it (store.Command, status queued) and publishes an
// Envelope on levqor.cmd.<domain>.<action> with the command id as
// Nats-Msg-Id; a worker carries it out and records the outcome in the same
// transaction as its effects; then it tells waiting clients on core NATS
// (<prefix>.notify.command.<id>), so that `?wait=` needs no polling.
//
// It sits below the domains and the API (which imports it to submit
// commands), so that a domain depends on the runtime, never on the HTTP
// layer. A domain registers its actions with Route, each written as a
// TypedFunc over its parameter struct: Typed decodes the params strictly,
// normalizes and validates them once, so no domain decodes by hand.
//
// A worker's handler is a Func wrapped by Runtime.Handler, which does the
// bookkeeping: running → succeeded/failed, exactly once through the inbox.
// A Func that returns an *Error fails the command with that HTTP status:
// the client gets its answer and the message is acknowledged, not
// dead-lettered. Other errors follow the bus's retry rules; a command whose
// message ends in the dead-letter queue is marked failed (503) by the
// consumer Runtime.DeadLetters declares.
package command
