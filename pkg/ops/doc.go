// Package ops is what an operator paged at 3 a.m. uses to find what is
// stuck and fix it, one command each: the `levqor status | stuck | dlq |
// replay | stripe backfill | audit` commands and the /admin API are thin
// layers over the same Ops methods.
//
//   - Status: every stream and durable consumer, with lag, redeliveries,
//     the age of the oldest unacknowledged message and the consumer's dead
//     letters, marked healthy, lagging or stuck by configured thresholds.
//   - Stuck: the messages delivered many times or unacknowledged for long,
//     with the last error the worker reported.
//   - Dead letters: list, show, replay to the original subject for the
//     consumer that gave up (removing the dead letter only once the replay
//     is acknowledged) and purge.
//   - ReplayWindow: re-run one consumer's handlers over a time window of
//     its stream, by publishing the window again with headers naming that
//     consumer (Levqor-Replay-For), so its workers run it and every other
//     consumer acknowledges it untouched; what the consumer already
//     processed is skipped unless the operator forces a re-run. Ops builds
//     no worker: it needs NATS and the database only.
//   - Backfill: publish the Stripe events the ledger never saw, listed from
//     the Stripe API, for when webhooks were down longer than Stripe
//     retries.
//
// Every action that changes something, or reveals a payload, is written to
// the audit trail (store.AuditEntry) and logged.
package ops
