package backups_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/store"
)

// TestASecondRunStoresOnlyWhatChanged: a second run of a directory
// source reads only the file that changed, stores a few kB where the
// first stored the tree, and its snapshot restores the whole new tree.
func TestASecondRunStoresOnlyWhatChanged(t *testing.T) {
	t.Parallel()
	r, data, src := treeSource(t, nil)

	first := r.backedUp(t, src)
	one, ok := backups.SummaryOf(first.Snapshot)
	require.True(t, ok)
	require.Zero(t, one.Unchanged)
	require.Equal(t, first.SourceBytes, one.ReadBytes, "the first run reads everything")

	changed := filepath.Join(data, "a", "b", "c", "deep.txt")
	require.NoError(t, os.WriteFile(changed, []byte("deeper, and changed"), 0o644))
	mtime := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	require.NoError(t, os.Chtimes(changed, mtime, mtime))
	want := snapshotTree(t, data)

	second := r.backedUp(t, src)
	two, ok := backups.SummaryOf(second.Snapshot)
	require.True(t, ok)
	require.Equal(t, one.Files-1, two.Unchanged, "only the changed file is read again")
	require.EqualValues(t, len("deeper, and changed"), two.ReadBytes)
	require.Equal(t, 1, two.NewChunks)
	require.Less(t, second.Snapshot.SizeBytes, int64(8<<10), "a few kB: one chunk, its pack, an index and the manifest")
	require.Greater(t, first.Snapshot.SizeBytes, int64(500<<10))

	target := filepath.Join(r.root, "restored")
	id := r.submit(t, backups.RunDomain, backups.ActionRestoreData, backups.RestoreDataParams{
		SnapshotID: second.Snapshot.ID, ByOperator: true, RestoreDataBody: backups.RestoreDataBody{TargetPath: target}})
	succeeded(t, r.outcome(t, id, 60*time.Second), nil)
	require.Equal(t, want, snapshotTree(t, target))
}

// TestRotatingTheMasterKeyRewrapsDataKeysWithoutRewritingBackups: after
// a rotation the new master key alone reads the account's backups, no
// stored object was rewritten, and the old key alone reads nothing.
func TestRotatingTheMasterKeyRewrapsDataKeysWithoutRewritingBackups(t *testing.T) {
	t.Parallel()
	r, _, src := treeSource(t, nil)
	run := r.backedUp(t, src)
	before, err := r.local.List(t.Context(), "")
	require.NoError(t, err)

	newKey := strings.Repeat("7a", 32)
	rotated, err := keys.ParseMasterKeys(newKey + "," + testMasterKey)
	require.NoError(t, err)
	var rep backups.ResealReport
	require.NoError(t, backups.RewrapDataKeys(t.Context(), r.st, rotated, &rep))
	require.Equal(t, backups.ResealReport{DataKeysRewrapped: 1}, rep)
	rep = backups.ResealReport{}
	require.NoError(t, backups.RewrapDataKeys(t.Context(), r.st, rotated, &rep))
	require.Equal(t, backups.ResealReport{DataKeysCurrent: 1}, rep, "a second rotation changes nothing")

	after, err := r.local.List(t.Context(), "")
	require.NoError(t, err)
	require.Equal(t, before, after, "no backup was rewritten")

	onlyNew, err := keys.ParseMasterKeys(newKey)
	require.NoError(t, err)
	res, err := r.worker(onlyNew).VerifySample(t.Context(), time.Now())
	require.NoError(t, err)
	require.Equal(t, 1, res.Checked)
	require.Zero(t, res.Corrupt, "the new key alone reads every chunk")

	onlyOld, err := keys.ParseMasterKeys(testMasterKey)
	require.NoError(t, err)
	_, err = r.worker(onlyOld).VerifySample(t.Context(), time.Now())
	require.ErrorContains(t, err, "no longer holds", "the old key alone opens nothing")
	require.ErrorContains(t, err, "snapshot "+run.Snapshot.ID, "the error names the snapshot it could not read")
	got, err := r.st.GetSnapshot(t.Context(), run.Snapshot.ID)
	require.NoError(t, err)
	require.Equal(t, store.SnapshotVerified, got.Integrity, "a key the workers lack is an error, never a corrupt snapshot")
}

// worker is a worker of the runner's store and blobs with its own
// master keys.
func (r *runner) worker(sealer *keys.Sealer) *backups.Worker {
	return &backups.Worker{Store: r.st, Blobs: r.local, Topology: r.env.Topo, Sealer: sealer,
		Runtime: &command.Runtime{Store: r.st, Prefix: r.env.Topo.Prefix}}
}

// TestARepositoryObjectIsNeverDeletedAsASnapshotsBlob: purging a
// snapshot of the repository deletes its manifest only; the packs its
// chunks are in stay, for the snapshots that share them.
func TestARepositoryObjectIsNeverDeletedAsASnapshotsBlob(t *testing.T) {
	t.Parallel()
	r, _, src := treeSource(t, nil)
	first := r.backedUp(t, src)
	second := r.backedUp(t, src)

	require.NoError(t, r.st.InTx(t.Context(), func(tx *store.Tx) error {
		_, err := tx.MoveSnapshot(t.Context(), store.MoveSnapshotParams{ID: first.Snapshot.ID, From: store.SnapshotActive,
			To: store.SnapshotTrash, PurgeAfter: time.Now().Add(-time.Minute)})
		return err
	}))
	res, err := r.w.SweepSource(t.Context(), src, backups.SweepOptions{Now: time.Now(), Actor: "sweep:test"})
	require.NoError(t, err)
	require.Equal(t, []string{first.Snapshot.ID}, res.Purged, "%+v", res)
	_, err = r.local.Stat(t.Context(), first.Snapshot.BlobKey)
	require.ErrorIs(t, err, blob.ErrNotFound, "the purged snapshot's manifest is gone")

	v, err := r.w.VerifySample(t.Context(), time.Now())
	require.NoError(t, err)
	require.Equal(t, 1, v.Checked)
	require.Zero(t, v.Corrupt, "the second snapshot, whose every chunk the first stored, is whole")
	require.Equal(t, second.Snapshot.ID, v.Snapshots[0].ID)
}

// TestACheckMarksOnlyTheSnapshotsThatNeedADamagedPack: a check of a
// sound repository reads every pack and verifies both snapshots; after
// the pack that only the second run wrote is damaged, a check marks the
// second snapshot corrupt (naming the pack, with the operators' alert),
// leaves the first verified, and deletes nothing.
func TestACheckMarksOnlyTheSnapshotsThatNeedADamagedPack(t *testing.T) {
	t.Parallel()
	r, data, src := treeSource(t, nil)
	first := r.backedUp(t, src)
	packsOf := func() map[string]bool {
		infos, err := r.local.List(t.Context(), first.Snapshot.AccountID+"/repo/packs/")
		require.NoError(t, err)
		out := map[string]bool{}
		for _, in := range infos {
			out[in.Key] = true
		}
		return out
	}
	before := packsOf()
	require.NoError(t, os.WriteFile(filepath.Join(data, "new.txt"), []byte("written after the first run\n"), 0o644))
	second := r.backedUp(t, src)
	var added string
	for k := range packsOf() {
		if !before[k] {
			added = k
		}
	}
	require.NotEmpty(t, added, "the second run wrote a pack")

	w := r.worker(testSealer(t))
	rep, err := w.CheckRepositories(t.Context(), "", backups.Subset{Percent: 100}, "check:test")
	require.NoError(t, err)
	require.Equal(t, 1, rep.Accounts)
	require.Equal(t, 2, rep.Snapshots)
	require.Equal(t, 2, rep.Verified)
	require.Equal(t, rep.Packs, rep.PacksRead)
	require.Positive(t, rep.BytesRead)
	require.Empty(t, rep.Findings)

	p := filepath.Join(r.blobDir, filepath.FromSlash(added))
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	b[len(b)/2] ^= 0x40
	require.NoError(t, os.WriteFile(p, b, 0o600))
	objects, err := r.local.List(t.Context(), "")
	require.NoError(t, err)

	rep, err = w.CheckRepositories(t.Context(), first.Snapshot.AccountID, backups.Subset{Percent: 100}, "check:test")
	require.NoError(t, err)
	require.Equal(t, 1, rep.CorruptPacks)
	require.Equal(t, 1, rep.Verified)
	require.Equal(t, 1, rep.Corrupt)
	require.Len(t, rep.Findings, 1)
	require.Equal(t, second.Snapshot.ID, rep.Findings[0].SnapshotID)
	require.Contains(t, rep.Findings[0].Reason, "new.txt: pack "+strings.TrimPrefix(added, first.Snapshot.AccountID+"/repo/packs/")+" does not hash to its name")
	got, err := r.st.GetSnapshot(t.Context(), second.Snapshot.ID)
	require.NoError(t, err)
	require.Equal(t, store.SnapshotCorrupt, got.Integrity)
	alerts := r.events(t, events.NameBackupCorrupt)
	require.Len(t, alerts, 1)
	require.Equal(t, second.Snapshot.ID, alerts[0]["snapshot_id"])
	got, err = r.st.GetSnapshot(t.Context(), first.Snapshot.ID)
	require.NoError(t, err)
	require.Equal(t, store.SnapshotVerified, got.Integrity)
	after, err := r.local.List(t.Context(), "")
	require.NoError(t, err)
	require.Equal(t, objects, after, "a check deletes nothing")

	// A subset that reads no pack finds nothing new and verifies nothing.
	rep, err = w.CheckRepositories(t.Context(), first.Snapshot.AccountID, backups.Subset{N: 1, M: 256}, "check:test")
	require.NoError(t, err)
	require.Equal(t, "1/256", rep.Subset)
	require.Zero(t, rep.Verified)
	require.Equal(t, 1, rep.Corrupt, "a snapshot found corrupt stays so")
}

func TestParseSubset(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"": "all", "all": "all", "100%": "all", "2.5%": "2.5%", "3/7": "3/7", "1/1": "all"} {
		s, err := backups.ParseSubset(in)
		require.NoError(t, err, in)
		require.Equal(t, want, s.String(), in)
	}
	for _, in := range []string{"0%", "101%", "x%", "0/7", "8/7", "1/0", "1/257", "half", "1/2/3"} {
		_, err := backups.ParseSubset(in)
		require.Error(t, err, in)
		require.Contains(t, err.Error(), in)
	}
}
