package backups_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/retention"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

const grace = 7 * 24 * time.Hour

// TestSweepTrashesWhatThePolicyRemoves: ten daily snapshots under the
// starter policy (7 daily, 4 weekly) lose the two the policy does not
// keep. They go to the trash with their blobs, each with an audit entry
// saying under which policy, why, by whom and when.
func TestSweepTrashesWhatThePolicyRemoves(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, starter)
		src := b.source(t, nil)
		ids := b.daily(t, src, 10, day(10))
		now := day(10).Add(3 * time.Hour)

		res := b.sweep(t, src, now)
		require.Equal(t, backups.OutcomeDelete, res.Outcome, res.Message)
		require.Equal(t, []string{ids[2], ids[1]}, res.Trashed, "Oct 3 and Oct 2: neither daily (7 newest days) nor weekly (newest of week 40 is Oct 4; Oct 1 is the oldest weekly)")
		require.Equal(t, backups.PlanCounts{Active: 10, Keep: 8, Trash: 2}, res.Counts)
		require.Equal(t, backups.OriginTier, res.Origin)
		require.Equal(t, "starter", res.Tier)
		for i, id := range ids {
			want := store.SnapshotActive
			if i == 1 || i == 2 {
				want = store.SnapshotTrash
			}
			require.Equal(t, want, b.state(t, id), "snapshot of Oct %d", i+1)
			require.True(t, b.blobExists(t, id), "the trash keeps the blob (Oct %d)", i+1)
		}
		trashed, err := st.GetSnapshot(t.Context(), ids[1])
		require.NoError(t, err)
		require.True(t, trashed.TrashedAt.Equal(now), "the sweep acts at its slot")
		require.True(t, trashed.PurgeAfter.Equal(now.Add(grace)))

		entries := b.audit(t, src)
		require.Equal(t, map[string]int{backups.AuditSnapshotTrashed: 2}, actions(entries))
		for _, e := range entries {
			require.Equal(t, "sweep:test", e.Actor)
			require.JSONEq(t, `{"keep_daily":7,"keep_weekly":4}`, string(e.Policy))
			require.Equal(t, []string{backups.ReasonNotKept}, e.Reasons)
			require.True(t, e.At.Equal(now))
			var d map[string]any
			require.NoError(t, json.Unmarshal(e.Detail, &d))
			require.Equal(t, "tier", d["policy_origin"])
			require.Equal(t, "starter", d["tier"])
		}

		again := b.sweep(t, src, now)
		require.Empty(t, again.Trashed, "a repeated sweep finds nothing left to do")
		require.Equal(t, backups.OutcomeNothing, again.Outcome)
		require.Len(t, b.audit(t, src), 2, "and writes nothing")
	})
}

// TestTrashIsPurgedAfterTheGracePeriod: the blob is deleted at purge time,
// not at trash time, and only once the grace period is over.
func TestTrashIsPurgedAfterTheGracePeriod(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, starter)
		src := b.source(t, nil)
		ids := b.daily(t, src, 10, day(10))
		now := day(10).Add(time.Hour)
		require.Len(t, b.sweep(t, src, now).Trashed, 2)

		early := b.sweep(t, src, now.Add(grace-time.Second))
		require.Empty(t, early.Purged)
		require.Empty(t, early.Purge, "not due yet")
		require.Equal(t, store.SnapshotTrash, b.state(t, ids[1]))
		require.True(t, b.blobExists(t, ids[1]))

		res := b.sweep(t, src, now.Add(grace))
		require.ElementsMatch(t, []string{ids[1], ids[2]}, res.Purged)
		for _, id := range ids[1:3] {
			require.Equal(t, store.SnapshotPurged, b.state(t, id))
			require.False(t, b.blobExists(t, id), "purging deletes the blob")
		}
		require.True(t, b.blobExists(t, ids[0]), "the others keep theirs")
		counts := actions(b.audit(t, src))
		require.Equal(t, 2, counts[backups.AuditSnapshotPurging])
		require.Equal(t, 2, counts[backups.AuditSnapshotPurged])
	})
}

// TestHeldSnapshotsAreNeverDeleted: a hold on a snapshot keeps it out of
// the trash, a hold on a trashed snapshot keeps its blob past the grace
// period, and a hold on the source keeps all of it.
func TestHeldSnapshotsAreNeverDeleted(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, starter)
		src := b.source(t, nil)
		ids := b.daily(t, src, 10, day(10))
		now := day(10).Add(time.Hour)

		b.hold(t, src, ids[1], "litigation 2026-17")
		res := b.sweep(t, src, now)
		require.Equal(t, []string{ids[2]}, res.Trashed, "the policy removes Oct 2 and 3; Oct 2 is held")
		require.Equal(t, store.SnapshotActive, b.state(t, ids[1]))
		for _, e := range res.Snapshots {
			if e.ID == ids[1] {
				require.Equal(t, backups.DecisionKeep, e.Decision)
				require.Contains(t, e.Reasons, backups.ReasonNotKept)
				require.Contains(t, e.Reasons[1], "litigation 2026-17")
			}
		}

		b.hold(t, src, ids[2], "the trashed one is needed too")
		res = b.sweep(t, src, now.Add(grace))
		require.Empty(t, res.Purged)
		require.Equal(t, store.SnapshotTrash, b.state(t, ids[2]))
		require.True(t, b.blobExists(t, ids[2]), "held in the trash: never purged")

		other := b.source(t, nil)
		oids := b.daily(t, other, 10, day(10))
		b.hold(t, other, "", "whole source under audit")
		res = b.sweep(t, other, now)
		require.Equal(t, backups.OutcomeNothing, res.Outcome)
		require.Empty(t, res.Trashed)
		for _, id := range oids {
			require.Equal(t, store.SnapshotActive, b.state(t, id))
		}
	})
}

// TestNewestGoodSnapshotIsNeverDeleted: a tag-only policy removes every
// untagged snapshot, the newest included (the engine alone would); the
// sweep keeps the newest.
func TestNewestGoodSnapshotIsNeverDeleted(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		tagsOnly := catalog.Entitlements{Tier: "custom", Sources: 1, StorageGB: 1, Retention: retention.Policy{KeepTags: [][]string{{"monthly"}}}}
		b := setup(t, st, tagsOnly)
		b.w.Settings.MaxShare = 1
		src := b.source(t, nil)
		first := b.snapshot(t, src, day(1), "monthly")
		rest := b.daily(t, src, 4, day(5))
		newest := rest[3]

		engine, err := retention.Plan(tagsOnly.Retention, []retention.Snapshot{{ID: first, Time: day(1), Tags: []string{"monthly"}}, {ID: newest, Time: day(5)}}, retention.Options{})
		require.NoError(t, err)
		require.Contains(t, engine.Remove, newest, "without the guard the newest snapshot would go")

		res := b.sweep(t, src, day(5).Add(time.Hour))
		require.ElementsMatch(t, rest[:3], res.Trashed)
		require.Equal(t, store.SnapshotActive, b.state(t, newest))
		require.Equal(t, newest, res.Snapshots[0].ID)
		require.Equal(t, []string{backups.ReasonNotKept, backups.ReasonNewestGood}, res.Snapshots[0].Reasons)
	})
}

// TestEmptyPolicyDeletesNothing: an account without a tier has an empty
// default policy; its sweeps trash nothing and purge nothing, even
// snapshots already in the trash past their grace period.
func TestEmptyPolicyDeletesNothing(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, starter)
		src := b.source(t, nil)
		ids := b.daily(t, src, 10, day(10))
		now := day(10).Add(time.Hour)
		require.Len(t, b.sweep(t, src, now).Trashed, 2)

		// Billing removes the tier: entitlements {}.
		require.NoError(t, st.InTx(t.Context(), func(tx *store.Tx) error {
			return tx.SetAccountBilling(t.Context(), store.AccountBilling{ID: b.acc, Status: store.AccountStatusCanceled, Entitlements: json.RawMessage(`{}`)})
		}))
		b.daily(t, src, 20, day(30))
		res := b.sweep(t, src, now.Add(grace+time.Hour))
		require.True(t, res.Policy.IsEmpty())
		require.Equal(t, backups.OutcomeNothing, res.Outcome)
		require.Equal(t, backups.ReasonEmptyPolicy, res.Message)
		require.Empty(t, res.Trashed)
		require.Empty(t, res.Purged)
		require.Equal(t, store.SnapshotTrash, b.state(t, ids[1]))
		require.True(t, b.blobExists(t, ids[1]), "an empty policy purges nothing either")
		for _, e := range res.Snapshots {
			require.Equal(t, backups.DecisionKeep, e.Decision)
			require.Equal(t, []string{retention.ReasonNoPolicy}, e.Reasons)
		}
	})
}

// TestShareLimitBlocksTheSweepAndAlerts: a month of daily snapshots under
// the starter policy loses 21 of 30 at once, more than the 50% one
// sweep may delete: nothing is deleted, the source is marked blocked and
// one operator alert goes to the outbox. An operator's sweep with a raised
// share then goes through and clears the block.
func TestShareLimitBlocksTheSweepAndAlerts(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		b := setup(t, st, starter)
		src := b.source(t, nil)
		ids := b.daily(t, src, 30, day(30))
		now := day(30).Add(time.Hour)

		res := b.sweep(t, src, now)
		require.Equal(t, backups.OutcomeBlocked, res.Outcome)
		require.Contains(t, res.Message, "21 of 30")
		require.Equal(t, 21, res.Counts.Blocked, "the policy keeps Oct 24-30 (daily), 18 and 11 (weekly): it would remove 21")
		require.Empty(t, res.Trashed)
		for _, id := range ids {
			require.Equal(t, store.SnapshotActive, b.state(t, id))
		}
		source, err := st.GetSource(ctx, src)
		require.NoError(t, err)
		require.NotNil(t, source.BlockedSince)

		alerts := func() []store.OutboxMessage {
			msgs, err := st.UnpublishedOutbox(ctx, 100)
			require.NoError(t, err)
			var out []store.OutboxMessage
			for _, m := range msgs {
				if m.Subject == "levqor.event.backup.sweep_blocked" {
					out = append(out, m)
				}
			}
			return out
		}
		got := alerts()
		require.Len(t, got, 1)
		require.Equal(t, b.acc, got[0].Headers["Levqor-Account"])
		var alert map[string]any
		require.NoError(t, json.Unmarshal(got[0].Payload, &alert))
		require.Equal(t, src, alert["source_id"])
		require.EqualValues(t, 21, alert["would_trash"])
		require.EqualValues(t, 30, alert["active"])
		require.EqualValues(t, 0.5, alert["max_share"])

		b.sweep(t, src, now.Add(time.Hour))
		require.Len(t, alerts(), 1, "one alert per blocked episode, not one per hour")
		require.Equal(t, 1, actions(b.audit(t, src))[backups.AuditSweepBlocked])

		confirmed, err := b.w.SweepSource(ctx, src, backups.SweepOptions{Now: now.Add(2 * time.Hour), Actor: "key:operator", MaxShare: 1})
		require.NoError(t, err)
		require.Len(t, confirmed.Trashed, 21)
		source, err = st.GetSource(ctx, src)
		require.NoError(t, err)
		require.Nil(t, source.BlockedSince, "unblocked")
		counts := actions(b.audit(t, src))
		require.Equal(t, 1, counts[backups.AuditSweepUnblocked])
		require.Equal(t, 1, counts[backups.AuditSweepShareAllowed])
		require.Equal(t, 21, counts[backups.AuditSnapshotTrashed])
	})
}

// TestSuspendedAccountKeepsEverything: while billing has the account
// suspended, sweeps trash nothing and purge nothing.
func TestSuspendedAccountKeepsEverything(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, starter)
		src := b.source(t, nil)
		ids := b.daily(t, src, 10, day(10))
		now := day(10).Add(time.Hour)
		require.Len(t, b.sweep(t, src, now).Trashed, 2)

		b.setStatus(t, store.AccountStatusSuspended)
		more := b.daily(t, src, 10, day(20))
		res := b.sweep(t, src, now.Add(grace+time.Hour))
		require.Equal(t, backups.OutcomeSuspended, res.Outcome)
		require.Empty(t, res.Trashed)
		require.Empty(t, res.Purged)
		require.Equal(t, store.SnapshotTrash, b.state(t, ids[1]))
		require.True(t, b.blobExists(t, ids[1]), "nothing purged while it cannot pay")
		for _, id := range append(ids[3:], more...) {
			require.Equal(t, store.SnapshotActive, b.state(t, id))
		}
		require.NotZero(t, func() int {
			n := 0
			for _, e := range res.Snapshots {
				if e.Reasons[0] == backups.ReasonNotKept {
					n++
				}
			}
			return n
		}(), "the policy does remove some: the guard is what keeps them")

		b.setStatus(t, store.AccountStatusActive)
		res = b.sweep(t, src, now.Add(grace+2*time.Hour))
		require.NotEmpty(t, res.Trashed, "active again: retention applies")
		require.ElementsMatch(t, []string{ids[1], ids[2]}, res.Purged)
	})
}

// TestPurgeInterruptedBeforeTheBlobIsDeleted: the blob store fails after
// the snapshot was marked purging. The sweep reports the failure; the next
// one finishes the purge.
func TestPurgeInterruptedBeforeTheBlobIsDeleted(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, starter)
		src := b.source(t, nil)
		ids := b.daily(t, src, 10, day(10))
		now := day(10).Add(time.Hour)
		require.Len(t, b.sweep(t, src, now).Trashed, 2)

		b.blobs.set(true, false)
		_, err := b.w.SweepSource(t.Context(), src, backups.SweepOptions{Now: now.Add(grace), Actor: "sweep:test"})
		require.ErrorIs(t, err, errInjected)
		for _, id := range ids[1:3] {
			require.Equal(t, store.SnapshotPurging, b.state(t, id), "marked, and the mark survived the failure")
			require.True(t, b.blobExists(t, id))
		}
		counts := actions(b.audit(t, src))
		require.Equal(t, 2, counts[backups.AuditSnapshotPurging])
		require.Zero(t, counts[backups.AuditSnapshotPurged])

		b.blobs.set(false, false)
		res := b.sweep(t, src, now.Add(grace+time.Hour))
		require.ElementsMatch(t, ids[1:3], res.Purged)
		for _, e := range res.Purge {
			require.Equal(t, []string{backups.ReasonInterrupted}, e.Reasons)
		}
		for _, id := range ids[1:3] {
			require.Equal(t, store.SnapshotPurged, b.state(t, id))
			require.False(t, b.blobExists(t, id))
		}
		counts = actions(b.audit(t, src))
		require.Equal(t, 2, counts[backups.AuditSnapshotPurging], "the mark is not repeated")
		require.Equal(t, 2, counts[backups.AuditSnapshotPurged])
	})
}

// TestPurgeInterruptedAfterTheBlobIsDeleted: the worker dies between
// deleting the blob and marking the snapshot purged. The next sweep
// deletes again (which succeeds: the blob is already gone) and marks it.
func TestPurgeInterruptedAfterTheBlobIsDeleted(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, starter)
		src := b.source(t, nil)
		ids := b.daily(t, src, 10, day(10))
		now := day(10).Add(time.Hour)
		require.Len(t, b.sweep(t, src, now).Trashed, 2)

		b.blobs.set(false, true)
		_, err := b.w.SweepSource(t.Context(), src, backups.SweepOptions{Now: now.Add(grace), Actor: "sweep:test"})
		require.ErrorIs(t, err, errInjected)
		require.Equal(t, store.SnapshotPurging, b.state(t, ids[1]))
		require.False(t, b.blobExists(t, ids[1]), "the blob went before the crash")

		b.blobs.set(false, false)
		res := b.sweep(t, src, now.Add(grace+time.Hour))
		require.ElementsMatch(t, ids[1:3], res.Purged)
		require.Equal(t, store.SnapshotPurged, b.state(t, ids[1]))
		require.Equal(t, 2, actions(b.audit(t, src))[backups.AuditSnapshotPurged])
	})
}

// TestFailedTrashStepChangesNothing: the database fails while the sweep
// writes its decisions (here: the audit table is gone). Nothing is
// trashed without its audit entry; the next sweep does it all.
func TestFailedTrashStepChangesNothing(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		b := setup(t, st, starter)
		src := b.source(t, nil)
		ids := b.daily(t, src, 10, day(10))
		now := day(10).Add(time.Hour)

		_, err := st.DB().ExecContext(ctx, `ALTER TABLE retention_audit RENAME TO retention_audit_away`)
		require.NoError(t, err)
		_, err = b.w.SweepSource(ctx, src, backups.SweepOptions{Now: now, Actor: "sweep:test"})
		require.Error(t, err)
		for _, id := range ids {
			require.Equal(t, store.SnapshotActive, b.state(t, id), "all or nothing")
		}
		_, err = st.DB().ExecContext(ctx, `ALTER TABLE retention_audit_away RENAME TO retention_audit`)
		require.NoError(t, err)

		res := b.sweep(t, src, now.Add(time.Hour))
		require.Len(t, res.Trashed, 2)
		require.Len(t, b.audit(t, src), 2)
	})
}
