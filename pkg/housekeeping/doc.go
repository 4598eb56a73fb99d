// Package housekeeping is the worker that keeps Levqor itself healthy. It
// consumes the scheduler's housekeeping ticks (consumer housekeeping-tick)
// and runs two jobs:
//
//   - housekeeping.prune deletes inbox rows older than any message that can
//     still be delivered or replayed (a message that old cannot come back,
//     so its row protects nothing) and outbox rows published longer ago
//     than the EVENTS stream keeps them. Deleting is idempotent, so a
//     redelivered tick is harmless.
//   - housekeeping.watch inspects every durable consumer and the
//     dead-letter queue, exports their backlog as gauges, and raises
//     levqor.event.ops.dlq_growing when a consumer's dead letters grew since
//     the last watch and levqor.event.ops.consumer_stuck when a consumer
//     becomes stuck, through the outbox. It runs through the inbox, and a
//     per-job watermark makes it act once per slot, in slot order.
//
// Both act on the tick's slot rather than on the clock: prune deletes
// relative to the slot, and watch labels what it saw with the slot and
// ignores a slot older than one it has already acted on.
package housekeeping
