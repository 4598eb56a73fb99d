// Package store is the one place in Levqor that owns SQL.
//
// Domain code never writes a query: it calls methods on a Store, or on the Tx
// that Store.InTx hands to a handler, with plain structs. Every query is
// written once with ? placeholders and rebound for the dialect at hand, so
// the same code and the same tests run against both databases:
//
//   - PostgreSQL (lib/pq) in production, where several replicas share the
//     database. Migrations take a session-level advisory lock, so replicas
//     starting together migrate once.
//   - SQLite (modernc.org/sqlite, pure Go) as the embedded database of dev
//     mode.
//
// SQLite allows one writer at a time. A process that opens several
// connections to one file makes its own goroutines compete for the write
// lock, and the loser of a read-to-write upgrade gets SQLITE_BUSY at once,
// whatever busy_timeout says. The store therefore keeps a single connection
// (MaxOpenConns(1)): transactions inside one process queue in database/sql's
// pool instead of failing. busy_timeout and BEGIN IMMEDIATE cover the rarer
// case of a second process (say `levqor migrate` next to `levqor dev`) on the
// same file, and WAL lets readers in other processes carry on meanwhile. The
// price is that, on SQLite, code running inside InTx must use the Tx it was
// given: a call to a Store method would wait for the connection the
// transaction holds, forever.
//
// Times are stored and returned in UTC and truncated to microseconds, the
// precision of PostgreSQL's TIMESTAMPTZ, so a value reads back equal to what
// was written in both dialects.
//
// The store handles the pipeline's tables: the inbox that makes handlers
// idempotent (Tx.ClaimInbox), the transactional outbox (Tx.EnqueueOutbox and
// the relay's UnpublishedOutbox and MarkOutboxPublished), the Stripe event
// ledger (Tx.InsertStripeEvent) and the failures workers report for
// operators (RecordFailure, ConsumerStates). Open connects; Migrate applies
// the embedded schema (package schema).
package store
