package backups

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/repo"
	"github.com/levqor/levqor/pkg/store"
)

// Audit actions the worker writes.
const (
	AuditSourceCreated     = "source.created"
	AuditPolicySet         = "policy.set"
	AuditDefaultChanged    = "policy.tier_changed"
	AuditRetentionPaused   = "retention.paused"
	AuditRetentionResumed  = "retention.resumed"
	AuditSnapshotRecorded  = "snapshot.recorded"
	AuditSnapshotTrashed   = "snapshot.trashed"
	AuditSnapshotPurging   = "snapshot.purging"
	AuditSnapshotPurged    = "snapshot.purged"
	AuditSnapshotRestored  = "snapshot.restored"
	AuditHoldPlaced        = "hold.placed"
	AuditHoldReleased      = "hold.released"
	AuditSweepBlocked      = "sweep.blocked"
	AuditSweepUnblocked    = "sweep.unblocked"
	AuditSweepShareAllowed = "sweep.share_raised"
)

// SweepOptions say how to sweep a source.
type SweepOptions struct {
	// Now is the time the sweep acts at: a tick's slot, or when an
	// operator's command was accepted.
	Now time.Time
	// Actor is written to the audit trail: "sweep:<tick id>", "key:<id>".
	Actor string
	// DryRun computes the plan and changes nothing.
	DryRun bool
	// MaxShare, when set, replaces the configured share limit for this
	// sweep (an operator's confirmation).
	MaxShare float64
	// CommandID is the command that asked for the sweep, if any.
	CommandID string
}

// SweepResult is a plan and what the sweep did with it.
type SweepResult struct {
	*Plan
	DryRun bool `json:"dry_run"`
	// Trashed and Purged list the snapshots this sweep moved; a repeated
	// sweep lists nothing it already did.
	Trashed []string `json:"trashed"`
	Purged  []string `json:"purged"`
}

// SweepSource applies the source's retention policy at o.Now, safely (see
// Decide for the rules). It works in steps that can each be repeated:
//
//  1. one transaction, holding the source's lock: decide; move the
//     snapshots the plan removes from active to trash (their blobs stay),
//     and those whose grace period is over from trash to purging, each
//     with its audit entry; record or clear a blocked sweep and raise the
//     operator alert (outbox) when it starts;
//  2. for each purging snapshot: delete its blob (idempotent), then, in a
//     transaction, move it to purged with its audit entry.
//
// A crash after step 1 leaves snapshots in purging, which the next sweep
// finishes; a crash in step 2 repeats the blob deletion, which succeeds.
func (w *Worker) SweepSource(ctx context.Context, sourceID string, o SweepOptions) (*SweepResult, error) {
	if !o.DryRun && w.Blobs == nil {
		return nil, errors.New(ErrBlobsNotConfiguredMessage)
	}
	if !o.DryRun {
		if err := w.restoreGate(ctx); err != nil {
			return nil, err
		}
	}
	set := w.settings()
	maxShare := set.MaxShare
	if o.MaxShare > 0 {
		maxShare = o.MaxShare
	}
	log := bus.Logger(ctx).WithField("source_id", sourceID)
	res := &SweepResult{DryRun: o.DryRun, Trashed: []string{}, Purged: []string{}}
	var toPurge []PlanEntry
	err := w.Store.InTx(ctx, func(tx *store.Tx) error {
		res.Trashed, res.Purged, toPurge = res.Trashed[:0], res.Purged[:0], nil
		src, err := tx.LockSource(ctx, sourceID)
		if err != nil {
			return err
		}
		acc, err := tx.GetAccount(ctx, src.AccountID)
		if err != nil {
			return err
		}
		snaps, err := tx.SourceSnapshots(ctx, src.ID, store.SnapshotActive, store.SnapshotTrash, store.SnapshotPurging)
		if err != nil {
			return err
		}
		holds, err := tx.SourceHolds(ctx, src.ID)
		if err != nil {
			return err
		}
		plan, err := Decide(DecideInput{Source: src, Account: acc, Snapshots: snaps, Holds: holds, Now: o.Now, MaxShare: maxShare})
		if err != nil {
			return err
		}
		res.Plan = plan
		if o.DryRun {
			return nil
		}
		return w.commitPlan(ctx, tx, src, plan, o, set, res, &toPurge)
	})
	if err != nil {
		return nil, err
	}
	if o.DryRun {
		return res, nil
	}
	var errs []error
	for _, e := range toPurge {
		if err := w.purge(ctx, res.SourceID, e, o); err != nil {
			errs = append(errs, err)
			log.WithFields(logrus.Fields{"snapshot_id": e.ID, "error": err.Error()}).Warn("purge not finished; the next sweep finishes it")
			continue
		}
		res.Purged = append(res.Purged, e.ID)
	}
	w.Metrics.add(len(res.Trashed), len(res.Purged), res.Outcome == OutcomeBlocked)
	if len(res.Trashed) > 0 || len(res.Purged) > 0 {
		log.WithFields(logrus.Fields{"account_id": res.AccountID, "trashed": len(res.Trashed), "purged": len(res.Purged)}).Info("retention applied")
	}
	return res, errors.Join(errs...)
}

// commitPlan writes step 1 of a sweep within tx.
func (w *Worker) commitPlan(ctx context.Context, tx *store.Tx, src *store.BackupSource, plan *Plan, o SweepOptions, set Settings, res *SweepResult, toPurge *[]PlanEntry) error {
	policy, err := json.Marshal(plan.Policy)
	if err != nil {
		return err
	}
	audit := func(snapshotID, action string, reasons []string, detail map[string]any) error {
		if o.CommandID != "" {
			detail["command_id"] = o.CommandID
		}
		d, err := json.Marshal(detail)
		if err != nil {
			return err
		}
		_, err = tx.AppendRetentionAudit(ctx, store.RetentionAudit{
			AccountID: src.AccountID, SourceID: src.ID, SnapshotID: snapshotID, Action: action, Actor: o.Actor,
			Policy: policy, Reasons: reasons, Detail: d, At: o.Now,
		})
		return err
	}

	switch {
	case plan.Outcome == OutcomeBlocked && src.BlockedSince == nil:
		now := o.Now
		if err := tx.SetSourceBlocked(ctx, src.ID, &now, o.Now); err != nil {
			return err
		}
		counts := map[string]any{"would_trash": plan.Counts.Blocked, "active": plan.Counts.Active, "max_share": plan.MaxShare,
			"policy_origin": plan.Origin, "tier": plan.Tier}
		if err := audit("", AuditSweepBlocked, []string{plan.Message}, counts); err != nil {
			return err
		}
		if err := w.alertBlocked(ctx, tx, src, plan, o); err != nil {
			return err
		}
	case plan.Outcome != OutcomeBlocked && plan.Outcome != OutcomeSuspended && src.BlockedSince != nil:
		if err := tx.SetSourceBlocked(ctx, src.ID, nil, o.Now); err != nil {
			return err
		}
		reason := "the sweep is within the share limit again"
		if o.MaxShare > 0 {
			reason = fmt.Sprintf("an operator raised the share limit of this sweep to %s", percent(o.MaxShare))
		}
		if err := audit("", AuditSweepUnblocked, []string{reason}, map[string]any{"blocked_since": src.BlockedSince}); err != nil {
			return err
		}
	}
	if o.MaxShare > 0 && plan.Counts.Trash > 0 {
		if err := audit("", AuditSweepShareAllowed, []string{fmt.Sprintf("this sweep may remove up to %s of the active snapshots", percent(o.MaxShare))},
			map[string]any{"max_share": o.MaxShare, "trash": plan.Counts.Trash, "active": plan.Counts.Active}); err != nil {
			return err
		}
	}

	purgeAfter := o.Now.Add(set.TrashGrace)
	for _, e := range plan.Snapshots {
		if e.Decision != DecisionTrash {
			continue
		}
		moved, err := tx.MoveSnapshot(ctx, store.MoveSnapshotParams{ID: e.ID, From: store.SnapshotActive, To: store.SnapshotTrash, At: o.Now, PurgeAfter: purgeAfter})
		if err != nil {
			return err
		}
		if !moved {
			continue
		}
		if err := audit(e.ID, AuditSnapshotTrashed, e.Reasons, map[string]any{
			"taken_at": e.TakenAt, "size_bytes": e.SizeBytes, "tags": e.Tags, "purge_after": purgeAfter,
			"policy_origin": plan.Origin, "tier": plan.Tier,
		}); err != nil {
			return err
		}
		res.Trashed = append(res.Trashed, e.ID)
	}
	for _, e := range plan.Purge {
		if e.Decision != DecisionPurge {
			continue
		}
		if e.State == store.SnapshotTrash {
			moved, err := tx.MoveSnapshot(ctx, store.MoveSnapshotParams{ID: e.ID, From: store.SnapshotTrash, To: store.SnapshotPurging, At: o.Now})
			if err != nil {
				return err
			}
			if !moved {
				continue
			}
			if err := audit(e.ID, AuditSnapshotPurging, e.Reasons, map[string]any{"taken_at": e.TakenAt, "size_bytes": e.SizeBytes, "blob_key": e.BlobKey}); err != nil {
				return err
			}
		}
		*toPurge = append(*toPurge, e)
	}
	return nil
}

// purge is step 2 for one snapshot: delete its blob, then mark it purged.
func (w *Worker) purge(ctx context.Context, sourceID string, e PlanEntry, o SweepOptions) error {
	if err := w.Blobs.Delete(ctx, e.BlobKey); errors.Is(err, blob.ErrLocked) && repo.IsRepoKey(e.BlobKey) {
		// A locked manifest (LEVQOR_BLOB_LOCK_DAYS) stays until its lock
		// runs out; the prune, which no longer keeps it, deletes it then.
		bus.Logger(ctx).WithFields(logrus.Fields{"snapshot_id": e.ID, "blob_key": e.BlobKey}).
			Info("the purged snapshot's manifest is locked: the prune deletes it when the lock runs out")
	} else if err != nil {
		return fmt.Errorf("deleting blob of %s: %w", e.ID, err)
	}
	return w.Store.InTx(ctx, func(tx *store.Tx) error {
		src, err := tx.LockSource(ctx, sourceID)
		if err != nil {
			return err
		}
		moved, err := tx.MoveSnapshot(ctx, store.MoveSnapshotParams{ID: e.ID, From: store.SnapshotPurging, To: store.SnapshotPurged, At: o.Now})
		if err != nil || !moved {
			return err
		}
		detail := map[string]any{"blob_key": e.BlobKey, "size_bytes": e.SizeBytes}
		if o.CommandID != "" {
			detail["command_id"] = o.CommandID
		}
		d, err := json.Marshal(detail)
		if err != nil {
			return err
		}
		_, err = tx.AppendRetentionAudit(ctx, store.RetentionAudit{
			AccountID: src.AccountID, SourceID: src.ID, SnapshotID: e.ID, Action: AuditSnapshotPurged, Actor: o.Actor,
			Reasons: []string{"its blob was deleted"}, Detail: d, At: o.Now,
		})
		return err
	})
}

// alertBlocked raises levqor.event.backup.sweep_blocked through the
// outbox, in the transaction that records the block.
func (w *Worker) alertBlocked(ctx context.Context, tx *store.Tx, src *store.BackupSource, plan *Plan, o SweepOptions) error {
	return w.raise(ctx, tx, events.SweepBlocked{
		AccountID: src.AccountID, SourceID: src.ID, SourceName: src.Name,
		WouldTrash: plan.Counts.Blocked, Active: plan.Counts.Active, MaxShare: plan.MaxShare,
		Policy: plan.Policy, PolicyOrigin: plan.Origin, Tier: plan.Tier,
		Message: plan.Message, At: o.Now.UTC(), Actor: o.Actor,
	}, "sweep-"+src.ID)
}
