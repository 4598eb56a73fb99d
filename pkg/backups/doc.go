// Package backups is the backups worker ("backups" in LEVQOR_WORKERS): the catalog of backup sources and their snapshots, legal
// holds, and the sweep that applies retention policies safely.
//
// A source belongs to an account; its snapshots' bytes live in a blob
// store (package blob) and their metadata in the database (package store).
// The policy a source is swept with is its own, within its tier's limits,
// or its tier's default (EffectivePolicy, Limit, CheckWithin): the tier
// comes from the account's entitlements, which billing sets; the worker
// follows billing's events to record changes in the audit trail.
//
// A snapshot's life:
//
//	active ──sweep──▶ trash ──grace over, sweep──▶ purging ──blob deleted──▶ purged
//	   ▲                │
//	   └──operator──────┘  (restore-from-trash, which also places a hold)
//
// Trash keeps the blob, so a snapshot removed by mistake can be restored
// during the grace period (LEVQOR_TRASH_GRACE). Purging marks that its blob
// is being deleted; the next sweep finishes a purge a crash interrupted.
// Purged rows stay as tombstones of the audit trail.
//
// Decide is the one place the safety rules live, shared by the sweep and
// the dry-run endpoint: a suspended account keeps everything, an empty
// policy deletes nothing, held snapshots and the newest snapshot of a
// source are never deleted, and a sweep that would send more than
// LEVQOR_SWEEP_MAX_SHARE of a source's snapshots to the trash at once
// deletes nothing and raises levqor.event.backup.sweep_blocked instead.
//
// Every change is a command of the product API (levqor.cmd.retention.*,
// consumer retention-cmd); the sweep runs on levqor.tick.backup.sweep
// (backup-tick) at the tick's slot; billing's events arrive on
// retention-event. The consumers keep the names they had before the
// domain was called backups: a consumer's name is its inbox key. Every retention decision writes an audit entry.
//
// Sources of the kinds directory and postgres are backed up by the worker
// itself (runs.go): levqor.cmd.backup.* commands on backup-cmd stream a
// source with package archive through a pipe into the blob store, with no
// transaction open, and record the snapshot only once the blob is durable;
// they also restore snapshots and verify them on request. backup-tick
// carries backup.due (scheduled runs), backup.verify (integrity sampling;
// a corrupt snapshot never counts as a source's good one) and
// backup.overdue. Limits: the account's storage quota, its concurrent runs
// and the worker's.
package backups
