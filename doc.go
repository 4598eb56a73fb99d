// Package levqor is the root of Levqor, the event backbone of a data backup
// and retention platform billed through Stripe.
//
// Levqor runs as three services that talk through NATS JetStream and keep
// their state in PostgreSQL (SQLite in dev mode):
//
//   - ingest (cmd/ingest) receives Stripe webhooks and client HTTP requests
//     and publishes them to JetStream;
//   - workers (cmd/workers) consume them per domain (billing,
//     backup-retention, support) and apply their effects exactly once;
//   - scheduler (cmd/scheduler) publishes periodic ticks.
//
// cmd/levqor is a single binary that runs all of them in one process
// ("levqor dev"), applies migrations and carries the operator commands. The
// code lives in pkg/, one package per responsibility.
//
// This package holds no code; its tests check the deployment files at the
// repository root (compose.yaml, Dockerfile, .ci/run).
package levqor
