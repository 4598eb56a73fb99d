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
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/repo"
	"github.com/levqor/levqor/pkg/store"
)

// TestDamagedRepositoryObjectsAreNamedMarkedAndKept: the bad input of
// the backup repository (format 2) beyond a damaged pack and a flipped
// manifest byte: a manifest cut short, an index gone from the blob store,
// and a pack sealed under another account's key. Each time a
// verification marks the snapshot corrupt, saying what is damaged, with
// one audit entry and one operators' alert naming the snapshot; nothing
// is deleted; and a restore of the snapshot fails with an error naming
// it.
func TestDamagedRepositoryObjectsAreNamedMarkedAndKept(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// damage damages the repository under snap and returns what the
		// recorded reason must say.
		damage func(t *testing.T, r *runner, snap *store.Snapshot) []string
	}{
		{"ATruncatedManifest", func(t *testing.T, r *runner, snap *store.Snapshot) []string {
			p := r.objectPath(snap.BlobKey)
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(p, b[:len(b)/2], 0o600))
			manifest := snap.BlobKey[strings.LastIndexByte(snap.BlobKey, '/')+1:]
			return []string{"snapshot " + manifest, "integrity check"}
		}},
		{"AMissingIndex", func(t *testing.T, r *runner, snap *store.Snapshot) []string {
			indexes := r.keys(t, snap.AccountID+"/repo/index/")
			require.NotEmpty(t, indexes, "the run wrote an index")
			require.NoError(t, os.Remove(r.objectPath(indexes[0])))
			return []string{"is in no index"}
		}},
		{"APackSealedUnderAnotherAccountsKey", func(t *testing.T, r *runner, snap *store.Snapshot) []string {
			// Another account backs the same tree up into its own
			// repository, under its own data key, in the same bucket.
			victim := r.acc
			r.acc = r.account(t, pro, "active")
			data := filepath.Join(r.root, "other")
			tree(t, data)
			r.backedUp(t, r.directorySource(t, "other", data))
			theirs := r.largest(t, r.acc+"/repo/packs/")
			r.acc = victim

			// Their pack replaces one of ours: the chunks our index places
			// in it are read, and none opens under our key. (Chunking is
			// keyed too, so the packs' lengths may differ by a few bytes:
			// a shorter one is padded, for the failure to be the key's,
			// not a chunk past the end.)
			ours := r.keys(t, victim+"/repo/packs/")
			require.NotEmpty(t, ours)
			b, err := os.ReadFile(r.objectPath(theirs))
			require.NoError(t, err)
			fi, err := os.Stat(r.objectPath(ours[0]))
			require.NoError(t, err)
			if short := fi.Size() - int64(len(b)); short > 0 {
				b = append(b, make([]byte, short)...)
			}
			require.NoError(t, os.WriteFile(r.objectPath(ours[0]), b, 0o600))
			return []string{"in pack " + strings.TrimPrefix(ours[0], victim+"/repo/packs/") + ": " + repo.ErrIntegrity.Error()}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _, src := treeSource(t, nil)
			snap := r.backedUp(t, src).Snapshot
			require.NotNil(t, snap)
			sum, ok := backups.SummaryOf(snap)
			require.True(t, ok)
			require.Equal(t, backups.RepoFormat, sum.Format)

			says := tc.damage(t, r, snap)
			objects, err := r.local.List(t.Context(), "")
			require.NoError(t, err)
			deletes := r.deleted()

			// Verification: the snapshot is corrupt, saying what is damaged.
			id := r.submit(t, backups.RunDomain, backups.ActionVerifySnapshot, backups.SnapshotParams{SnapshotID: snap.ID})
			var got store.Snapshot
			succeeded(t, r.outcome(t, id, 60*time.Second), &got)
			require.Equal(t, snap.ID, got.ID)
			require.Equal(t, store.SnapshotCorrupt, got.Integrity)
			for _, s := range says {
				require.Contains(t, got.VerifyError, s)
			}
			require.Equal(t, store.SnapshotActive, got.State, "a corrupt snapshot is kept")
			stored, err := r.st.GetSnapshot(t.Context(), snap.ID)
			require.NoError(t, err)
			require.Equal(t, store.SnapshotCorrupt, stored.Integrity)
			require.Equal(t, got.VerifyError, stored.VerifyError)

			// The operators' alert and the audit trail name the snapshot.
			alerts := r.events(t, events.NameBackupCorrupt)
			require.Len(t, alerts, 1)
			require.Equal(t, snap.ID, alerts[0]["snapshot_id"])
			require.Equal(t, r.acc, alerts[0]["account_id"])
			require.Equal(t, src, alerts[0]["source_id"])
			require.Equal(t, "corrupt:"+snap.ID, alerts[0]["incident"])
			require.Equal(t, got.VerifyError, alerts[0]["reason"])
			require.Equal(t, 1, actions(r.audit(t, src))[backups.AuditCorrupt])

			// A restore fails, naming the snapshot and why.
			rid := r.submit(t, backups.RunDomain, backups.ActionRestoreData, backups.RestoreDataParams{
				SnapshotID: snap.ID, ByOperator: true, RestoreDataBody: backups.RestoreDataBody{TargetPath: filepath.Join(r.root, "restored")}})
			e := failed(t, r.outcome(t, rid, 60*time.Second), http.StatusConflict, "id")
			require.Equal(t, "snapshot_corrupt", e.Code)
			require.Contains(t, e.Message, snap.ID)
			require.Contains(t, e.Message, got.VerifyError)

			// A second verification finds the same and alerts no more.
			id = r.submit(t, backups.RunDomain, backups.ActionVerifySnapshot, backups.SnapshotParams{SnapshotID: snap.ID})
			succeeded(t, r.outcome(t, id, 60*time.Second), &got)
			require.Equal(t, store.SnapshotCorrupt, got.Integrity)
			require.Len(t, r.events(t, events.NameBackupCorrupt), 1, "one alert per corrupt snapshot")

			// Nothing was deleted, nor even tried.
			after, err := r.local.List(t.Context(), "")
			require.NoError(t, err)
			require.Equal(t, objects, after, "no object of the repository is deleted")
			require.Equal(t, deletes, r.deleted(), "no deletion was attempted")
		})
	}
}

// objectPath is where the runner's blob store keeps key.
func (r *runner) objectPath(key string) string {
	return filepath.Join(r.blobDir, filepath.FromSlash(key))
}

// keys lists the keys under prefix.
func (r *runner) keys(t *testing.T, prefix string) []string {
	t.Helper()
	infos, err := r.local.List(t.Context(), prefix)
	require.NoError(t, err)
	out := make([]string, 0, len(infos))
	for _, in := range infos {
		out = append(out, in.Key)
	}
	return out
}

// largest is the key of the largest object under prefix.
func (r *runner) largest(t *testing.T, prefix string) string {
	t.Helper()
	infos, err := r.local.List(t.Context(), prefix)
	require.NoError(t, err)
	require.NotEmpty(t, infos, prefix)
	best := infos[0]
	for _, in := range infos[1:] {
		if in.Size > best.Size {
			best = in
		}
	}
	return best.Key
}

// deleted is the keys the worker has asked the blob store to delete.
func (r *runner) deleted() []string {
	r.blobs.mu.Lock()
	defer r.blobs.mu.Unlock()
	return append([]string{}, r.blobs.deletes...)
}
