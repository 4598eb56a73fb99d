package backups_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// TestBlobGCDeletesOnlyOldBlobsNoSnapshotHolds: a blob an active or
// trashed snapshot holds stays, however old; an old blob no snapshot
// holds (or only a purged one) goes; a young one stays, whoever holds it;
// an abandoned temporary file goes too.
func TestBlobGCDeletesOnlyOldBlobsNoSnapshotHolds(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, starter)
		b.w.Settings.GCAge = 72 * time.Hour
		ctx := t.Context()
		src := b.source(t, nil)
		active := b.snapshot(t, src, day(1))
		trashed := b.snapshot(t, src, day(2))
		purged := b.snapshot(t, src, day(3))
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			if _, err := tx.MoveSnapshot(ctx, store.MoveSnapshotParams{ID: trashed, From: store.SnapshotActive, To: store.SnapshotTrash, PurgeAfter: time.Now().Add(time.Hour)}); err != nil {
				return err
			}
			_, err := tx.MoveSnapshot(ctx, store.MoveSnapshotParams{ID: purged, From: store.SnapshotActive, To: store.SnapshotPurged})
			return err
		}))
		orphan := b.acc + "/" + src + "/snap_left_by_a_dead_run"
		_, _, err := b.local.Put(ctx, orphan, strings.NewReader("a run died before recording me"))
		require.NoError(t, err)
		young := b.acc + "/" + src + "/snap_uploaded_for_recording"
		_, _, err = b.local.Put(ctx, young, strings.NewReader("recorded soon"))
		require.NoError(t, err)
		foreign := []string{"staging/acc_1/src_1/someone-elses", "acc_aaaaaaaaaaaaaaaaaaaaaaaaaa/src_1/unknown-account"}
		for _, key := range foreign {
			_, _, err = b.local.Put(ctx, key, strings.NewReader("not this deployment's"))
			require.NoError(t, err)
		}
		pack := b.acc + "/repo/packs/" + strings.Repeat("0f", 32)
		_, _, err = b.local.Put(ctx, pack, strings.NewReader("chunks no snapshot row names"))
		require.NoError(t, err)
		tmp := filepath.Join(b.local.Root(), b.acc, ".tmp-123456")
		require.NoError(t, os.WriteFile(tmp, []byte("half a blob"), 0o600))

		now := time.Now().Add(100 * time.Hour) // every blob is 100 h old…
		later := now.Add(-time.Hour)           // …but the young one, 1 h
		require.NoError(t, os.Chtimes(filepath.Join(b.local.Root(), filepath.FromSlash(young)), later, later))

		res, err := b.w.CollectGarbage(ctx, now)
		require.NoError(t, err)
		require.Equal(t, 2, res.Deleted, "%+v", res)
		require.Equal(t, 2, res.Kept)
		require.Equal(t, 1, res.Young)
		require.Equal(t, 1, res.Abandoned)
		require.Equal(t, 2, res.Foreign, "blobs not under an account of this database are left alone")
		require.Equal(t, 1, res.Repository, "a repository's objects are the prune's to judge")
		_, err = b.local.Stat(ctx, pack)
		require.NoError(t, err)
		for _, key := range foreign {
			_, err := b.local.Stat(ctx, key)
			require.NoError(t, err, key)
		}
		require.True(t, b.blobExists(t, active))
		require.True(t, b.blobExists(t, trashed), "the trash keeps its blobs until the purge")
		require.False(t, b.blobExists(t, purged))
		for key, want := range map[string]bool{orphan: false, young: true} {
			_, err := b.local.Stat(ctx, key)
			require.Equal(t, want, err == nil, key)
		}
		_, err = os.Stat(tmp)
		require.True(t, os.IsNotExist(err), "the abandoned write is gone")

		again, err := b.w.CollectGarbage(ctx, now)
		require.NoError(t, err)
		require.Zero(t, again.Deleted, "a second collection finds nothing")
	})
}

// TestAnOldUploadIsNotRecorded: recording a snapshot of a blob stored
// longer ago than half of LEVQOR_BLOB_GC_AGE is refused, naming the field:
// blob.gc could be deleting it.
func TestAnOldUploadIsNotRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t, storetest.SQLite(t), starter)
	b.w.Settings.GCAge = 72 * time.Hour
	src := b.source(t, nil)
	key := b.acc + "/" + src + "/uploaded-long-ago"
	_, sum, err := b.local.Put(t.Context(), key, strings.NewReader("old upload"))
	require.NoError(t, err)
	old := time.Now().Add(-40 * time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(b.local.Root(), filepath.FromSlash(key)), old, old))
	c := b.run(t, backups.ActionRecordSnapshot, "key_agent", map[string]any{
		"source_id": src, "taken_at": time.Now().UTC(), "blob_key": key, "sha256": sum, "size_bytes": len("old upload"),
	})
	e := failed(t, c, http.StatusUnprocessableEntity, "blob_key")
	require.Contains(t, e.Message, "more than half of LEVQOR_BLOB_GC_AGE")
}

// TestNothingIsRecordedOrHeldWhileTheAccountIsErased: once an erasure has
// begun, a snapshot recorded (or a run finishing) and a hold placed for
// the account are refused: the erasure, which deletes what it found when
// it began, would miss them.
func TestNothingIsRecordedOrHeldWhileTheAccountIsErased(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, starter)
		ctx := t.Context()
		src := b.source(t, nil)
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			if _, err := tx.InsertErasure(ctx, store.Erasure{ID: "era_1", AccountID: b.acc, Origin: store.ErasureRequested,
				RequestedBy: "key:k", ScheduledFor: time.Now()}); err != nil {
				return err
			}
			return tx.BeginErasure(ctx, "era_1", b.acc, time.Now())
		}))
		c := b.run(t, backups.ActionRecordSnapshot, "key_agent", map[string]any{
			"source_id": src, "taken_at": time.Now().UTC(), "content_base64": "aGVsbG8=",
		})
		require.Equal(t, "account_erasing", failed(t, c, http.StatusConflict, "").Code)
		c = b.run(t, backups.ActionPlaceHold, "key_ops", map[string]any{"target": "source", "id": src, "reason": "too late", "by_operator": true})
		require.Equal(t, "account_erasing", failed(t, c, http.StatusConflict, "").Code)
	})
}
