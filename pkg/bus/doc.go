// Package bus is Levqor's messaging runtime on NATS JetStream.
//
// It owns three things:
//
//   - the topology: the streams (STRIPE, COMMANDS, TICKS, EVENTS, DLQ) and
//     the durable consumers, declared once in code and created or updated
//     idempotently at start-up (see Topology);
//   - publishing with a dedupe id, where JetStream's acknowledgement is the
//     promise that a message is durable (see Publisher);
//   - the worker runtime: a Router of handlers with middleware that pulls
//     from durable consumers with bounded concurrency, classifies errors,
//     retries transient ones with backoff, dead-letters permanent ones and
//     those past MaxDeliver, and shuts down without losing a message.
//
// A handler acknowledges nothing itself. It returns nil when its effects are
// committed, an error wrapped with Permanent when the message can never
// succeed, RetryAfter when it knows how long to wait, or any other error,
// which is treated as transient.
//
// Delivery is at-least-once. Handlers make their effects exactly-once with
// the store's inbox (see package inbox).
package bus
