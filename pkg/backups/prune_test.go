package backups_test

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// repoBytes is what the account's repository holds in the blob store.
func (r *runner) repoBytes(t *testing.T) int64 {
	t.Helper()
	infos, err := r.local.List(t.Context(), r.acc+"/repo/")
	require.NoError(t, err)
	var n int64
	for _, in := range infos {
		n += in.Size
	}
	return n
}

// purge takes snapshot id through trash and purging to purged, deleting
// its manifest, as the sweep does once the trash grace is over.
func (r *runner) purge(t *testing.T, id string) {
	t.Helper()
	s, err := r.st.GetSnapshot(t.Context(), id)
	require.NoError(t, err)
	require.NoError(t, r.st.InTx(t.Context(), func(tx *store.Tx) error {
		for _, step := range [][2]string{{store.SnapshotActive, store.SnapshotTrash}, {store.SnapshotTrash, store.SnapshotPurging}} {
			if _, err := tx.MoveSnapshot(t.Context(), store.MoveSnapshotParams{ID: id, From: step[0], To: step[1], At: time.Now(), PurgeAfter: time.Now()}); err != nil {
				return err
			}
		}
		return nil
	}))
	if err := r.local.Delete(t.Context(), s.BlobKey); !errors.Is(err, blob.ErrLocked) {
		require.NoError(t, err) // a locked manifest is left to the prune
	}
	require.NoError(t, r.st.InTx(t.Context(), func(tx *store.Tx) error {
		_, err := tx.MoveSnapshot(t.Context(), store.MoveSnapshotParams{ID: id, From: store.SnapshotPurging, To: store.SnapshotPurged, At: time.Now()})
		return err
	}))
}

// TestPruningFreesWhatOnlyPurgedSnapshotsUsed: once the first snapshot
// is purged, a prune marks the content only it used obsolete (a restore
// under way may still read it), and a prune after the read grace deletes
// it; the kept snapshot verifies and restores whole throughout.
func TestPruningFreesWhatOnlyPurgedSnapshotsUsed(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	r := startRunner(t, st, func(s *backups.Settings) { s.RunTimeout = time.Hour })
	data := filepath.Join(r.root, "data")
	tree(t, data)
	photo := make([]byte, 2<<20)
	_, _ = rand.Read(photo)
	require.NoError(t, os.WriteFile(filepath.Join(data, "photo.bin"), photo, 0o644))
	src := r.directorySource(t, "files", data)
	first := r.backedUp(t, src)
	require.NoError(t, os.Remove(filepath.Join(data, "photo.bin")))
	second := r.backedUp(t, src)
	want := snapshotTree(t, data)
	full := r.repoBytes(t)
	used, err := r.st.AccountStoredBytes(t.Context(), r.acc)
	require.NoError(t, err)
	require.Equal(t, full, used, "the quota counts what the repository holds")

	r.purge(t, first.Snapshot.ID)
	now := time.Now()
	res, err := r.w.PruneAccount(t.Context(), r.acc, now)
	require.NoError(t, err)
	require.Empty(t, res.Skipped)
	require.Less(t, res.StoredBytes, full-(2<<20), "the packs about to be deleted no longer count")
	require.Equal(t, 1, res.Snapshots)
	require.Equal(t, 1, res.PacksRepacked, "the first run's pack also holds files the second snapshot uses: %+v", res)
	require.Zero(t, res.PacksDeleted, "nothing read before the prune loses its pack before LEVQOR_BACKUP_TIMEOUT")

	res, err = r.w.PruneAccount(t.Context(), r.acc, now.Add(2*time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, res.PacksDeleted, "%+v", res)
	require.Less(t, r.repoBytes(t), full-(2<<20), "the 2 MiB only the purged snapshot had are freed")
	used, err = r.st.AccountStoredBytes(t.Context(), r.acc)
	require.NoError(t, err)
	require.Equal(t, r.repoBytes(t), used, "the quota counts what is left")
	require.Equal(t, used, res.StoredBytes)

	v, err := r.w.VerifySample(t.Context(), time.Now())
	require.NoError(t, err)
	require.Equal(t, 1, v.Checked)
	require.Zero(t, v.Corrupt)
	target := filepath.Join(r.root, "restored")
	id := r.submit(t, backups.RunDomain, backups.ActionRestoreData, backups.RestoreDataParams{
		SnapshotID: second.Snapshot.ID, ByOperator: true, RestoreDataBody: backups.RestoreDataBody{TargetPath: target}})
	succeeded(t, r.outcome(t, id, 60*time.Second), nil)
	require.Equal(t, want, snapshotTree(t, target))

	again, err := r.w.PruneAccount(t.Context(), r.acc, now.Add(3*time.Hour))
	require.NoError(t, err)
	require.Zero(t, again.BytesFreed, "nothing is left: %+v", again)
}

// TestARunDuringWhichThePruneRanRunsAgain: a run that the prune could
// not see (its heartbeat looked stale) must not record a snapshot whose
// chunks the prune may have deleted: it is refused and runs again, and
// the snapshot it then records restores whole. A run waits while a prune
// holds the repository.
func TestARunDuringWhichThePruneRanRunsAgain(t *testing.T) {
	t.Parallel()
	r, data, src := treeSource(t, func(s *backups.Settings) { s.BusyPoll = 50 * time.Millisecond })
	r.backedUp(t, src)

	// A prune begins and ends while the next run stores its manifest.
	var once sync.Once
	hook := func(key string) {
		if !strings.Contains(key, "/repo/snapshots/") {
			return
		}
		once.Do(func() {
			require.NoError(t, r.st.EndPrune(t.Context(), r.acc, r.beginPrune(t), -1, time.Now()))
		})
	}
	r.puts.beforePut.Store(&hook)
	require.NoError(t, os.WriteFile(filepath.Join(data, "new.txt"), []byte("new"), 0o644))
	id := r.submit(t, backups.RunDomain, backups.ActionRun, backups.RunParams{SourceID: src, Trigger: store.RunManual})
	var v backups.RunView
	succeeded(t, r.outcome(t, id, 60*time.Second), &v)
	require.GreaterOrEqual(t, r.delivered(id), uint64(2), "the first attempt was refused its snapshot")
	require.Contains(t, r.logText(), "was pruned while this run ran")
	res, err := r.w.VerifySample(t.Context(), time.Now())
	require.NoError(t, err)
	require.Zero(t, res.Corrupt)

	// While a prune holds the repository, a run waits for it.
	gen := r.beginPrune(t)
	id = r.submit(t, backups.RunDomain, backups.ActionRun, backups.RunParams{SourceID: src, Trigger: store.RunManual})
	require.Eventually(t, func() bool { return strings.Contains(r.logText(), `limit="the prune"`) }, 10*time.Second, 20*time.Millisecond)
	cmd, err := r.st.GetCommand(t.Context(), id)
	require.NoError(t, err)
	require.True(t, cmd.Pending(), "the run waits")
	require.NoError(t, r.st.EndPrune(t.Context(), r.acc, gen, -1, time.Now()))
	succeeded(t, r.outcome(t, id, 60*time.Second), nil)
}

// beginPrune takes the account's prune lease, as a prune does, and
// returns its generation.
func (r *runner) beginPrune(t *testing.T) int64 {
	var gen int64
	require.NoError(t, r.st.InTx(t.Context(), func(tx *store.Tx) error {
		g, ok, err := tx.BeginPrune(t.Context(), r.acc, time.Now(), time.Now().Add(-time.Hour))
		require.True(t, ok, "the lease is free")
		gen = g
		return err
	}))
	return gen
}

// TestLockedPacksWaitForTheirLock: with LEVQOR_BLOB_LOCK_DAYS (here a
// few seconds), a run's packs are locked as they are written; once the
// only snapshot using them is purged, the prune leaves them while the
// store still holds them locked, and deletes them after.
func TestLockedPacksWaitForTheirLock(t *testing.T) {
	t.Parallel()
	r, _, src := treeSource(t, func(s *backups.Settings) { s.LockWindow = 5 * time.Second })
	run := r.backedUp(t, src)
	packs, err := r.local.List(t.Context(), r.acc+"/repo/packs/")
	require.NoError(t, err)
	require.NotEmpty(t, packs)
	until, err := r.local.LockedUntil(t.Context(), packs[0].Key)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(5*time.Second), until, 3*time.Second)
	require.ErrorIs(t, r.local.Delete(t.Context(), packs[0].Key), blob.ErrLocked)

	r.purge(t, run.Snapshot.ID)
	later := time.Now().Add(96 * time.Hour) // past the read grace and the GC age, as far as the prune knows
	res, err := r.w.PruneAccount(t.Context(), r.acc, time.Now())
	require.NoError(t, err)
	require.Equal(t, len(packs), res.PacksUnused)
	before := time.Now()
	res, err = r.w.PruneAccount(t.Context(), r.acc, later)
	require.NoError(t, err)
	if time.Now().Before(until) && before.Before(until) {
		require.Zero(t, res.PacksDeleted, "the store still holds them locked: %+v", res)
		left, err := r.local.List(t.Context(), r.acc+"/repo/packs/")
		require.NoError(t, err)
		require.Len(t, left, len(packs))
	}
	require.Eventually(t, func() bool {
		_, err := r.w.PruneAccount(t.Context(), r.acc, later)
		require.NoError(t, err)
		left, err := r.local.List(t.Context(), r.acc+"/repo/packs/")
		require.NoError(t, err)
		return len(left) == 0
	}, 15*time.Second, 250*time.Millisecond, "deleted once the lock ran out")
	left, err := r.local.List(t.Context(), r.acc+"/repo/snapshots/")
	require.NoError(t, err)
	require.Empty(t, left, "the purged snapshot's manifest, locked too, went with its lock")
}
