package backups_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func TestCreateSource(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, starter)
		var v backups.SourceView
		c := b.run(t, backups.ActionCreateSource, "key_a", map[string]any{
			"name": " orders-db ", "kind": "postgres", "schedule": "0 2 * * *", "time_zone": "Europe/London", "policy": map[string]int{"keep_daily": 3},
		})
		succeeded(t, c, &v)
		require.Equal(t, http.StatusCreated, c.HTTPStatus)
		require.True(t, strings.HasPrefix(v.ID, "src_"))
		require.Equal(t, "orders-db", v.Name, "trimmed")
		require.Equal(t, b.acc, v.AccountID)
		require.JSONEq(t, `{"keep_daily":3}`, string(v.Policy))
		require.Equal(t, backups.OriginSource, v.PolicyOrigin)
		require.Equal(t, 3, v.EffectivePolicy.KeepDaily)
		stored, err := st.GetSource(t.Context(), v.ID)
		require.NoError(t, err)
		require.Equal(t, "Europe/London", stored.TimeZone)
		require.Equal(t, map[string]int{backups.AuditSourceCreated: 1}, actions(b.audit(t, v.ID)))

		t.Run("NameTaken", func(t *testing.T) {
			c := b.run(t, backups.ActionCreateSource, "key_a", map[string]any{"name": "orders-db", "kind": "files", "schedule": "@daily"})
			require.Equal(t, "name_taken", failed(t, c, http.StatusConflict, "name").Code)
		})
		t.Run("PolicyBeyondTheTier", func(t *testing.T) {
			c := b.run(t, backups.ActionCreateSource, "key_a", map[string]any{"name": "x", "kind": "files", "schedule": "@daily", "policy": map[string]int{"keep_monthly": 12}})
			e := failed(t, c, http.StatusUnprocessableEntity, "policy.keep_monthly")
			require.Contains(t, e.Message, "starter")
		})
		t.Run("BadSchedule", func(t *testing.T) {
			c := b.run(t, backups.ActionCreateSource, "key_a", map[string]any{"name": "x", "kind": "files", "schedule": "every day"})
			failed(t, c, http.StatusUnprocessableEntity, "schedule")
			c = b.run(t, backups.ActionCreateSource, "key_a", map[string]any{"name": "x", "kind": "files", "schedule": "@daily", "time_zone": "Mars/Olympus"})
			failed(t, c, http.StatusUnprocessableEntity, "time_zone")
		})
		t.Run("SourceLimit", func(t *testing.T) {
			succeeded(t, b.run(t, backups.ActionCreateSource, "key_a", map[string]any{"name": "second", "kind": "files", "schedule": "@daily"}), nil)
			c := b.run(t, backups.ActionCreateSource, "key_a", map[string]any{"name": "third", "kind": "files", "schedule": "@daily"})
			e := failed(t, c, http.StatusUnprocessableEntity, "")
			require.Equal(t, "source_limit_reached", e.Code)
			require.Contains(t, e.Message, "allows 2")
		})
	})
}

// TestSourceLimitHoldsUnderConcurrency: two commands racing for an
// account's last source slot; one wins, the other is refused.
func TestSourceLimitHoldsUnderConcurrency(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		one := starter
		one.Sources = 1
		b := setup(t, st, one)
		msgs := []*bus.Message{
			b.queue(t, backups.ActionCreateSource, "key_a", map[string]any{"name": "a", "kind": "files", "schedule": "@daily"}),
			b.queue(t, backups.ActionCreateSource, "key_a", map[string]any{"name": "b", "kind": "files", "schedule": "@daily"}),
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for _, m := range msgs {
			wg.Go(func() {
				<-start
				require.NoError(t, b.w.Runtime.Handler(b.w.Handle)(t.Context(), m))
			})
		}
		close(start)
		wg.Wait()
		outcomes := map[string]int{}
		for _, m := range msgs {
			c, err := st.GetCommand(t.Context(), m.ID())
			require.NoError(t, err)
			outcomes[c.Status]++
			if c.Status == store.CommandFailed {
				require.Equal(t, "source_limit_reached", c.Error.Code)
			}
		}
		require.Equal(t, map[string]int{store.CommandSucceeded: 1, store.CommandFailed: 1}, outcomes)
	})
}

func TestCreateSourceNeedsATier(t *testing.T) {
	t.Parallel()
	b := setup(t, storetest.SQLite(t), catalog.Entitlements{})
	c := b.run(t, backups.ActionCreateSource, "key_a", map[string]any{"name": "db", "kind": "postgres", "schedule": "@daily"})
	e := failed(t, c, http.StatusUnprocessableEntity, "")
	require.Contains(t, e.Message, "subscribe")
}

func TestRecordSnapshot(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		b := setup(t, st, starter)
		src := b.source(t, nil)
		content := []byte("pg_dump output")
		sum := sha256.Sum256(content)
		hexSum := hex.EncodeToString(sum[:])

		var snap store.Snapshot
		c := b.run(t, backups.ActionRecordSnapshot, "key_agent", map[string]any{
			"source_id": src, "taken_at": "2026-10-25T01:30:00+01:00", "tags": []string{"nightly"},
			"content_base64": base64.StdEncoding.EncodeToString(content), "sha256": strings.ToUpper(hexSum), "size_bytes": len(content),
		})
		succeeded(t, c, &snap)
		require.Equal(t, http.StatusCreated, c.HTTPStatus)
		require.True(t, strings.HasPrefix(snap.ID, "snap_"))
		require.Equal(t, hexSum, snap.SHA256)
		require.Equal(t, int64(len(content)), snap.SizeBytes)
		require.Equal(t, store.SnapshotActive, snap.State)
		_, off := snap.TakenAt.Zone()
		require.Equal(t, 3600, off, "the agent's offset is kept")
		require.True(t, strings.HasPrefix(snap.BlobKey, b.acc+"/"+src+"/"+snap.ID))
		rc, err := b.local.Get(ctx, snap.BlobKey)
		require.NoError(t, err)
		rc.Close()

		t.Run("ExistingBlob", func(t *testing.T) {
			key := b.acc + "/uploads/db-2026-10-26.dump"
			_, _, err := b.local.Put(ctx, key, strings.NewReader("uploaded by the agent"))
			require.NoError(t, err)
			id := "snap_" + strings.Repeat("a", 26)
			var s store.Snapshot
			succeeded(t, b.run(t, backups.ActionRecordSnapshot, "key_agent", map[string]any{"source_id": src, "id": id, "taken_at": "2026-10-26T02:00:00Z", "blob_key": key}), &s)
			require.Equal(t, id, s.ID)
			require.Equal(t, int64(len("uploaded by the agent")), s.SizeBytes)
			again := b.run(t, backups.ActionRecordSnapshot, "key_agent", map[string]any{"source_id": src, "id": id, "taken_at": "2026-10-26T02:00:00Z", "blob_key": key})
			require.Equal(t, "already_recorded", failed(t, again, http.StatusConflict, "id").Code)
			other := b.run(t, backups.ActionRecordSnapshot, "key_agent", map[string]any{"source_id": src, "taken_at": "2026-10-27T02:00:00Z", "blob_key": key})
			require.Equal(t, "blob_taken", failed(t, other, http.StatusConflict, "blob_key").Code, "two snapshots never share a blob")
		})
		t.Run("ChecksumMismatch", func(t *testing.T) {
			c := b.run(t, backups.ActionRecordSnapshot, "key_agent", map[string]any{"source_id": src, "taken_at": "2026-10-25T02:00:00Z",
				"content_base64": base64.StdEncoding.EncodeToString(content), "sha256": strings.Repeat("0", 64)})
			failed(t, c, http.StatusUnprocessableEntity, "sha256")
		})
		t.Run("AnotherAccountsBlob", func(t *testing.T) {
			c := b.run(t, backups.ActionRecordSnapshot, "key_agent", map[string]any{"source_id": src, "taken_at": "2026-10-25T02:00:00Z", "blob_key": "acc_other/secret"})
			failed(t, c, http.StatusUnprocessableEntity, "blob_key")
		})
		t.Run("MissingBlob", func(t *testing.T) {
			c := b.run(t, backups.ActionRecordSnapshot, "key_agent", map[string]any{"source_id": src, "taken_at": "2026-10-25T02:00:00Z", "blob_key": b.acc + "/nothing-here"})
			e := failed(t, c, http.StatusUnprocessableEntity, "blob_key")
			require.Contains(t, e.Message, "upload it first")
		})
		t.Run("Future", func(t *testing.T) {
			c := b.run(t, backups.ActionRecordSnapshot, "key_agent", map[string]any{"source_id": src,
				"taken_at": time.Now().Add(48 * time.Hour).Format(time.RFC3339), "content_base64": "eA=="})
			failed(t, c, http.StatusUnprocessableEntity, "taken_at")
		})
		t.Run("NoOffset", func(t *testing.T) {
			c := b.run(t, backups.ActionRecordSnapshot, "key_agent", map[string]any{"source_id": src, "taken_at": "2026-10-25T02:00:00", "content_base64": "eA=="})
			failed(t, c, http.StatusUnprocessableEntity, "taken_at")
		})
		t.Run("RefusedRecordStoresNothing", func(t *testing.T) {
			other := []byte("other content")
			c := b.run(t, backups.ActionRecordSnapshot, "key_agent", map[string]any{"source_id": src, "id": snap.ID, "taken_at": "2026-10-25T02:00:00Z",
				"content_base64": base64.StdEncoding.EncodeToString(other)})
			require.Equal(t, "id_taken", failed(t, c, http.StatusConflict, "id").Code)
			osum := sha256.Sum256(other)
			_, err := b.local.Stat(ctx, b.acc+"/"+src+"/"+snap.ID+"-"+hex.EncodeToString(osum[:])[:16])
			require.ErrorIs(t, err, blob.ErrNotFound, "a refused record stores no blob")

			full := starter
			full.StorageGB = 0
			b3 := &bundle{st: st, local: b.local, blobs: b.blobs, w: b.w}
			b3.acc = b.account(t, full, "active")
			src3 := b3.source(t, nil)
			c = b3.run(t, backups.ActionRecordSnapshot, "key_agent", map[string]any{"source_id": src3, "taken_at": "2026-10-25T02:00:00Z", "content_base64": "eA=="})
			e := failed(t, c, http.StatusUnprocessableEntity, "content_base64")
			require.Equal(t, "quota_exceeded", e.Code)
			require.Contains(t, e.Message, "nothing was stored")
			infos, err := b.local.List(ctx, b3.acc+"/")
			require.NoError(t, err)
			require.Empty(t, infos, "a record over the quota stores no blob")
		})
		t.Run("AnotherAccountsSource", func(t *testing.T) {
			b2 := &bundle{st: st, local: b.local, blobs: b.blobs, w: b.w}
			b2.acc = b.account(t, starter, "active")
			c := b2.run(t, backups.ActionRecordSnapshot, "key_other", map[string]any{"source_id": src, "taken_at": "2026-10-25T02:00:00Z", "content_base64": "eA=="})
			require.Equal(t, "not_found", failed(t, c, http.StatusNotFound, "id").Code)
		})
	})
}

func TestRecordWithoutBlobStore(t *testing.T) {
	t.Parallel()
	b := setup(t, storetest.SQLite(t), starter)
	b.w.Blobs = nil
	src := b.source(t, nil)
	c := b.run(t, backups.ActionRecordSnapshot, "key_agent", map[string]any{"source_id": src, "taken_at": "2026-10-25T02:00:00Z", "content_base64": "eA=="})
	e := failed(t, c, http.StatusServiceUnavailable, "")
	require.Contains(t, e.Message, "LEVQOR_BLOB_DIR")
}

func TestSetPolicy(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, starter)
		src := b.source(t, nil)
		var v backups.SourceView
		succeeded(t, b.run(t, backups.ActionSetPolicy, "key_a", map[string]any{"source_id": src, "policy": map[string]int{"keep_daily": 2}}), &v)
		require.Equal(t, backups.OriginSource, v.PolicyOrigin)
		require.JSONEq(t, `{"keep_daily":2}`, string(v.Policy))

		failed(t, b.run(t, backups.ActionSetPolicy, "key_a", map[string]any{"source_id": src, "policy": map[string]int{"keep_daily": 8}}), http.StatusUnprocessableEntity, "policy.keep_daily")
		failed(t, b.run(t, backups.ActionSetPolicy, "key_a", map[string]any{"source_id": src, "policy": map[string]int{}}), http.StatusUnprocessableEntity, "policy")
		failed(t, b.run(t, backups.ActionSetPolicy, "key_a", map[string]any{"source_id": src}), http.StatusUnprocessableEntity, "policy")

		succeeded(t, b.run(t, backups.ActionSetPolicy, "key_a", map[string]any{"source_id": src, "policy": nil}), &v)
		require.Equal(t, backups.OriginTier, v.PolicyOrigin, "null: back to the tier's policy")
		require.JSONEq(t, "null", string(v.Policy))
		entries := b.audit(t, src)
		require.Equal(t, 2, actions(entries)[backups.AuditPolicySet])
		require.JSONEq(t, `{"keep_daily":7,"keep_weekly":4}`, string(entries[0].Policy), "the audit shows the policy now in force")
	})
}

func TestHolds(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, starter)
		src := b.source(t, nil)
		ids := b.daily(t, src, 3, day(3))

		var h store.LegalHold
		succeeded(t, b.run(t, backups.ActionPlaceHold, "key_op", map[string]any{"target": "snapshot", "id": ids[0], "reason": "court order 7", "by_operator": true}), &h)
		require.True(t, strings.HasPrefix(h.ID, "hold_"))
		require.True(t, h.PlacedByOperator)
		require.Equal(t, "key_op", h.PlacedBy)

		again := b.run(t, backups.ActionPlaceHold, "key_a", map[string]any{"target": "snapshot", "id": ids[0], "reason": "me too"})
		require.Equal(t, "already_held", failed(t, again, http.StatusConflict, "id").Code)
		failed(t, b.run(t, backups.ActionPlaceHold, "key_a", map[string]any{"target": "snapshot", "id": ids[1]}), http.StatusUnprocessableEntity, "reason")

		byAccount := b.run(t, backups.ActionReleaseHold, "key_a", map[string]any{"target": "snapshot", "id": ids[0], "reason": "not needed"})
		failed(t, byAccount, http.StatusForbidden, "id")
		var released store.LegalHold
		succeeded(t, b.run(t, backups.ActionReleaseHold, "key_op", map[string]any{"target": "snapshot", "id": ids[0], "reason": "case closed", "by_operator": true}), &released)
		require.NotNil(t, released.ReleasedAt)
		require.Equal(t, "case closed", released.ReleaseReason)
		failed(t, b.run(t, backups.ActionReleaseHold, "key_op", map[string]any{"target": "snapshot", "id": ids[0], "by_operator": true}), http.StatusNotFound, "id")

		var sh store.LegalHold
		succeeded(t, b.run(t, backups.ActionPlaceHold, "key_a", map[string]any{"target": "source", "id": src, "reason": "audit"}), &sh)
		require.Empty(t, sh.SnapshotID)
		require.Equal(t, src, sh.SourceID)
		require.False(t, sh.PlacedByOperator)
		succeeded(t, b.run(t, backups.ActionReleaseHold, "key_a", map[string]any{"target": "source", "id": src}), nil)

		counts := actions(b.audit(t, src))
		require.Equal(t, 2, counts[backups.AuditHoldPlaced])
		require.Equal(t, 2, counts[backups.AuditHoldReleased])
	})
}

// TestRestoreFromTrash: an operator brings a trashed snapshot back; it is
// held, so the next sweep does not trash it again.
func TestRestoreFromTrash(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, starter)
		src := b.source(t, nil)
		ids := b.daily(t, src, 10, day(10))
		now := day(10).Add(time.Hour)
		require.Contains(t, b.sweep(t, src, now).Trashed, ids[1])

		failed(t, b.run(t, backups.ActionRestore, "key_a", map[string]any{"snapshot_id": ids[1], "reason": "oops"}), http.StatusForbidden, "")
		var res backups.RestoreResult
		succeeded(t, b.run(t, backups.ActionRestore, "key_op", map[string]any{"snapshot_id": ids[1], "reason": "customer needs Oct 2", "by_operator": true}), &res)
		require.Equal(t, store.SnapshotActive, res.Snapshot.State)
		require.Nil(t, res.Snapshot.PurgeAfter)
		require.Equal(t, ids[1], res.Hold.SnapshotID)
		require.Contains(t, res.Hold.Reason, "customer needs Oct 2")
		require.True(t, b.blobExists(t, ids[1]))

		again := b.sweep(t, src, now.Add(time.Hour))
		require.NotContains(t, again.Trashed, ids[1])
		require.Equal(t, store.SnapshotActive, b.state(t, ids[1]), "held: not trashed again")
		failed(t, b.run(t, backups.ActionRestore, "key_op", map[string]any{"snapshot_id": ids[1], "reason": "twice", "by_operator": true}), http.StatusConflict, "id")
		counts := actions(b.audit(t, src))
		require.Equal(t, 1, counts[backups.AuditSnapshotRestored])
	})
}

// TestSweepCommand: a dry run changes nothing; an account key cannot raise
// the share limit; an operator can, which trashes a blocked source's
// snapshots.
func TestSweepCommand(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, starter)
		src := b.source(t, nil)
		b.daily(t, src, 30, day(30))

		var dry backups.SweepResult
		succeeded(t, b.run(t, backups.ActionSweep, "key_a", map[string]any{"source_id": src, "dry_run": true}), &dry)
		require.True(t, dry.DryRun)
		require.Equal(t, backups.OutcomeBlocked, dry.Outcome)
		require.Empty(t, b.audit(t, src), "a dry run writes nothing")

		failed(t, b.run(t, backups.ActionSweep, "key_a", map[string]any{"source_id": src, "max_share": 1}), http.StatusForbidden, "max_share")
		var real backups.SweepResult
		succeeded(t, b.run(t, backups.ActionSweep, "key_op", map[string]any{"source_id": src, "max_share": 1, "by_operator": true}), &real)
		require.Len(t, real.Trashed, 21)
		entries := b.audit(t, src)
		require.Equal(t, "key:key_op", entries[0].Actor)
		var d map[string]any
		require.NoError(t, json.Unmarshal(entries[0].Detail, &d))
		require.True(t, strings.HasPrefix(d["command_id"].(string), "cmd_"), "the audit names the command")
	})
}
