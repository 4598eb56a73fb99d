package store_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func TestBackupRuns(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		retentionFixture(t, s, "acc_r", "src_r")
		run := store.BackupRun{ID: "run_1", AccountID: "acc_r", SourceID: "src_r", CommandID: "cmd_1", Trigger: store.RunManual}
		t0 := base.Add(time.Hour)

		var started *store.BackupRun
		inTx(t, s, func(tx *store.Tx) (err error) {
			started, err = tx.StartRun(ctx, run, t0)
			return err
		})
		require.Equal(t, store.RunRunning, started.State)
		require.Equal(t, 1, started.Attempts)

		t.Run("RunningRunsCountUntilTheirHeartbeatIsOld", func(t *testing.T) {
			inTx(t, s, func(tx *store.Tx) error {
				n, err := tx.CountRunningRuns(ctx, "acc_r", "run_other", t0.Add(-time.Minute))
				require.NoError(t, err)
				require.Equal(t, 1, n)
				n, err = tx.CountRunningRuns(ctx, "acc_r", "run_1", t0.Add(-time.Minute))
				require.NoError(t, err)
				require.Zero(t, n, "a run does not count against itself")
				n, err = tx.CountRunningRuns(ctx, "acc_r", "run_other", t0.Add(time.Minute))
				require.NoError(t, err)
				require.Zero(t, n, "a run whose heartbeat is older than the cut-off belongs to a dead worker")
				return nil
			})
		})

		require.NoError(t, s.RunProgress(ctx, "run_1", 4096, t0.Add(time.Second)))
		got, err := s.GetRun(ctx, "run_1")
		require.NoError(t, err)
		require.EqualValues(t, 4096, got.BytesDone)

		inTx(t, s, func(tx *store.Tx) error {
			changed, err := tx.FailRun(ctx, "run_1", "disk full", t0.Add(2*time.Second))
			require.True(t, changed)
			return err
		})
		got, err = s.GetRun(ctx, "run_1")
		require.NoError(t, err)
		require.Equal(t, store.RunFailed, got.State)
		require.Equal(t, "disk full", got.Error)
		require.NoError(t, s.RunProgress(ctx, "run_1", 9999, t0.Add(3*time.Second)))
		got, err = s.GetRun(ctx, "run_1")
		require.NoError(t, err)
		require.EqualValues(t, 4096, got.BytesDone, "a failed run's progress no longer moves")

		t.Run("ARetryRestartsTheSameRun", func(t *testing.T) {
			inTx(t, s, func(tx *store.Tx) error {
				again, err := tx.StartRun(ctx, run, t0.Add(time.Minute))
				require.NoError(t, err)
				require.Equal(t, store.RunRunning, again.State)
				require.Equal(t, 2, again.Attempts)
				require.Empty(t, again.Error)
				require.Zero(t, again.BytesDone)
				return tx.FinishRun(ctx, store.FinishRunParams{ID: "run_1", SnapshotID: "snap_1", SourceBytes: 10, StoredBytes: 5, SHA256: "ab"})
			})
			inTx(t, s, func(tx *store.Tx) error {
				done, err := tx.StartRun(ctx, run, t0.Add(2*time.Minute))
				require.NoError(t, err)
				require.Equal(t, store.RunSucceeded, done.State, "a succeeded run is never restarted")
				require.Equal(t, "snap_1", done.SnapshotID)
				changed, err := tx.FailRun(ctx, "run_1", "late failure", time.Time{})
				require.False(t, changed, "nor failed afterwards")
				return err
			})
		})

		t.Run("ListNewestFirst", func(t *testing.T) {
			slot := base.Truncate(time.Second).Add(48 * time.Hour)
			inTx(t, s, func(tx *store.Tx) error {
				_, err := tx.StartRun(ctx, store.BackupRun{ID: "run_2", AccountID: "acc_r", SourceID: "src_r", CommandID: "cmd_2",
					Trigger: store.RunScheduled, Slot: &slot}, t0.Add(time.Hour))
				return err
			})
			runs, err := s.ListRuns(ctx, store.ListRunsParams{SourceID: "src_r", Limit: 10})
			require.NoError(t, err)
			require.Len(t, runs, 2)
			require.Equal(t, "run_2", runs[0].ID)
			require.True(t, runs[0].Slot.Equal(slot))
			page, err := s.ListRuns(ctx, store.ListRunsParams{SourceID: "src_r", Limit: 10, After: &store.RunCursor{CreatedAt: runs[0].CreatedAt, ID: runs[0].ID}})
			require.NoError(t, err)
			require.Len(t, page, 1)
			require.Equal(t, "run_1", page[0].ID)
		})
	})
}

func TestSnapshotIntegrityAndQuota(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		retentionFixture(t, s, "acc_q", "src_q")
		old := snap("snap_old", "acc_q", "src_q", base)
		old.SizeBytes = 100
		newer := snap("snap_new", "acc_q", "src_q", base.Add(24*time.Hour))
		newer.SizeBytes = 50
		newer.Manifest = json.RawMessage(`{"kind":"directory","files":3}`)
		inTx(t, s, func(tx *store.Tx) error {
			for _, sn := range []store.Snapshot{old, newer} {
				if _, err := tx.InsertSnapshot(ctx, sn); err != nil {
					return err
				}
			}
			return nil
		})
		got, err := s.GetSnapshot(ctx, "snap_new")
		require.NoError(t, err)
		require.Equal(t, store.SnapshotUnverified, got.Integrity)
		require.JSONEq(t, `{"kind":"directory","files":3}`, string(got.Manifest))

		n, err := s.AccountStoredBytes(ctx, "acc_q")
		require.NoError(t, err)
		require.EqualValues(t, 150, n)

		todo, err := s.SnapshotsToVerify(ctx, 10)
		require.NoError(t, err)
		require.Len(t, todo, 2)
		inTx(t, s, func(tx *store.Tx) error {
			changed, err := tx.SetSnapshotIntegrity(ctx, "snap_old", store.SnapshotVerified, "", base.Add(time.Hour))
			require.True(t, changed)
			return err
		})
		todo, err = s.SnapshotsToVerify(ctx, 10)
		require.NoError(t, err)
		require.Equal(t, "snap_new", todo[0].ID, "never verified comes first")

		inTx(t, s, func(tx *store.Tx) error {
			changed, err := tx.SetSnapshotIntegrity(ctx, "snap_new", store.SnapshotCorrupt, "sha256 mismatch", time.Time{})
			require.NoError(t, err)
			require.True(t, changed)
			changed, err = tx.SetSnapshotIntegrity(ctx, "snap_new", store.SnapshotCorrupt, "again", time.Time{})
			require.NoError(t, err)
			require.False(t, changed, "corrupt once")
			changed, err = tx.SetSnapshotIntegrity(ctx, "snap_new", store.SnapshotVerified, "", time.Time{})
			require.NoError(t, err)
			require.False(t, changed, "a corrupt snapshot is never declared good again")
			return nil
		})
		good, err := s.LastGoodSnapshot(ctx, "src_q")
		require.NoError(t, err)
		require.Equal(t, "snap_old", good.ID, "the corrupt newer snapshot is not good")
		todo, err = s.SnapshotsToVerify(ctx, 10)
		require.NoError(t, err)
		require.Len(t, todo, 1)

		inTx(t, s, func(tx *store.Tx) error {
			fresh, err := tx.SetOverdueIncident(ctx, "src_q", "overdue:src_q:snap_old")
			require.NoError(t, err)
			require.True(t, fresh)
			fresh, err = tx.SetOverdueIncident(ctx, "src_q", "overdue:src_q:snap_old")
			require.NoError(t, err)
			require.False(t, fresh, "one alert per incident")
			paused := base
			require.NoError(t, tx.SetSourcePaused(ctx, "src_q", &paused, time.Time{}))
			return tx.SetSourceConfig(ctx, "src_q", json.RawMessage(`{"path":"/srv/data"}`), time.Time{})
		})
		src, err := s.GetSource(ctx, "src_q")
		require.NoError(t, err)
		require.NotNil(t, src.PausedAt)
		require.JSONEq(t, `{"path":"/srv/data"}`, string(src.Config))
		b, err := json.Marshal(src)
		require.NoError(t, err)
		require.NotContains(t, string(b), "/srv/data", "a source's config is never marshalled as it is")
		runnable, err := s.RunnableSources(ctx, "postgres")
		require.NoError(t, err)
		require.Len(t, runnable, 1)
	})
}
