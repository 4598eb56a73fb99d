package backups_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/accounts"
	"github.com/levqor/levqor/pkg/archive"
	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/repo"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// TestAnErasedAccountsBackupsCannotBeRead: an account's directory is
// backed up (format 2) and its repository objects copied aside, as
// someone keeping a copy of the bucket would; then the account is
// erased as production erases it (accounts.request_erasure by an
// operator, carried out by accounts.offboard). Its data key is gone, its
// objects are gone from the blob store, the copies hold none of its
// plaintext and open under no key left (the master key, or a new data
// key), while the data key the erasure destroyed still opens them (the
// copies are whole: only the key stands between them and a reader).
// Another account's backups still restore byte for byte.
func TestAnErasedAccountsBackupsCannotBeRead(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		r := startRunner(t, st, nil)
		erased, kept := r.acc, r.account(t, pro, "active")

		dataE := filepath.Join(r.root, "erased")
		tree(t, dataE)
		canaryE := writeCanary(t, dataE)
		srcE := r.directorySource(t, "files", dataE)
		runE := r.backedUp(t, srcE)
		sumE, ok := backups.SummaryOf(runE.Snapshot)
		require.True(t, ok)
		require.Equal(t, backups.RepoFormat, sumE.Format, "a run writes the repository")

		dataK := filepath.Join(r.root, "kept")
		tree(t, dataK)
		canaryK := writeCanary(t, dataK)
		wantK := snapshotTree(t, dataK)
		var runK backups.RunView
		r.as(kept, func() { runK = r.backedUp(t, r.directorySource(t, "files", dataK)) })

		// The data key as it was: what the erasure must destroy.
		wrapped, err := st.AccountDataKey(ctx, erased)
		require.NoError(t, err)
		h, err := testSealer(t).Open(wrapped)
		require.NoError(t, err)
		oldKey, err := hex.DecodeString(h)
		require.NoError(t, err)

		// A copy of the account's objects, kept elsewhere.
		copies := map[string][]byte{}
		infos, err := r.local.List(ctx, erased+"/")
		require.NoError(t, err)
		kinds := map[string]int{}
		for _, in := range infos {
			copies[in.Key] = readBlob(t, r.local, in.Key)
			kinds[strings.Split(strings.TrimPrefix(in.Key, repo.AccountPrefix(erased)), "/")[0]]++
		}
		require.Positive(t, kinds["packs"], "%v", kinds)
		require.Positive(t, kinds["index"], "%v", kinds)
		require.Equal(t, 1, kinds["snapshots"], "%v", kinds)
		require.Contains(t, copies, runE.Snapshot.BlobKey)
		for key, b := range copies {
			require.False(t, bytes.Contains(b, canaryE), "object %s holds the account's plaintext", key)
		}

		// The erasure, as an operator asks for it and accounts.offboard
		// carries it out.
		aw := &accounts.Worker{Store: st, Runtime: &command.Runtime{Store: st, Prefix: "levqor"}, Blobs: r.local}
		c := runAccountsCommand(t, st, aw, accounts.ActionRequestErasure, erased,
			accounts.RequestErasureParams{Confirm: "Acme", Immediately: true, ByOperator: true})
		require.Equal(t, http.StatusAccepted, c.HTTPStatus, "%+v", c.Error)
		res, err := aw.Offboard(ctx, time.Now().Add(time.Minute))
		require.NoError(t, err)
		require.Equal(t, accounts.OffboardResult{Erased: 1}, res)
		er, err := st.LatestErasure(ctx, erased)
		require.NoError(t, err)
		require.Equal(t, store.ErasureDone, er.Status)
		require.Equal(t, 1, er.Report.DataKeys, "the report says the data key was destroyed")
		require.Equal(t, len(copies), er.Report.Blobs)
		require.Zero(t, er.Report.LockedBlobs)

		_, err = st.AccountDataKey(ctx, erased)
		require.ErrorIs(t, err, store.ErrNotFound, "the account's data key row is gone")
		left, err := r.local.List(ctx, erased+"/")
		require.NoError(t, err)
		require.Empty(t, left, "the account's objects are gone from the blob store")
		e := failed(t, r.restore(t, runE.SnapshotID, filepath.Join(r.root, "restored-erased")), http.StatusConflict, "id")
		require.Equal(t, "snapshot_purged", e.Code)
		_, err = os.Stat(filepath.Join(r.root, "restored-erased"))
		require.ErrorIs(t, err, fs.ErrNotExist, "nothing was restored")

		// The copies come back into the blob store, as someone holding
		// the bucket and the database would put them.
		for key, b := range copies {
			_, _, err := r.local.Put(ctx, key, bytes.NewReader(b))
			require.NoError(t, err)
		}
		chk, err := r.w.CheckRepositories(ctx, erased, backups.Subset{Percent: 100}, "check:test")
		require.NoError(t, err)
		require.Zero(t, chk.PacksRead, "the workers, holding every master key, open nothing of the account: %+v", chk)
		require.Zero(t, chk.Verified)

		manifest, err := repo.ParseID(runE.Snapshot.BlobKey[strings.LastIndexByte(runE.Snapshot.BlobKey, '/')+1:])
		require.NoError(t, err)
		fresh, err := repo.NewDataKey()
		require.NoError(t, err)
		master, err := hex.DecodeString(testMasterKey)
		require.NoError(t, err)
		for name, raw := range map[string][]byte{"the master key": master, "a new data key": fresh} {
			key, err := repo.NewKey(raw)
			require.NoError(t, err)
			rp, err := repo.Open(ctx, scratchCopy(t, copies), repo.AccountPrefix(erased), key)
			require.NoError(t, err, name)
			require.Len(t, rp.Damaged, kinds["index"], "%s opens no index", name)
			require.Zero(t, rp.Chunks(), name)
			_, err = rp.LoadManifest(ctx, manifest)
			require.ErrorIs(t, err, repo.ErrIntegrity, "%s opens no manifest", name)
			rebuilt, err := rp.RebuildIndex(ctx)
			require.NoError(t, err, name)
			require.Zero(t, rebuilt.Chunks, "%s opens no chunk of any pack: %+v", name, rebuilt)
			require.Len(t, rebuilt.Unreadable, kinds["packs"], name)
		}

		// The destroyed key would still read the copies: they are whole,
		// and the key was all that protected them.
		key, err := repo.NewKey(oldKey)
		require.NoError(t, err)
		rp, err := repo.Open(ctx, scratchCopy(t, copies), repo.AccountPrefix(erased), key)
		require.NoError(t, err)
		require.Empty(t, rp.Damaged)
		m, err := rp.LoadManifest(ctx, manifest)
		require.NoError(t, err)
		out := t.TempDir()
		_, _, err = rp.Restore(ctx, m, out, nil)
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(out, "canary.bin"))
		require.NoError(t, err)
		require.True(t, bytes.Contains(got, canaryE), "the old key restores the plaintext")

		// The other account is untouched: its key, objects and a restore.
		_, err = st.AccountDataKey(ctx, kept)
		require.NoError(t, err)
		for _, in := range mustList(t, r.local, kept+"/") {
			require.False(t, bytes.Contains(readBlob(t, r.local, in.Key), canaryK), "object %s holds plaintext", in.Key)
		}
		target := filepath.Join(r.root, "restored-kept")
		r.as(kept, func() { succeeded(t, r.restore(t, runK.SnapshotID, target), nil) })
		require.Equal(t, wantK, snapshotTree(t, target))
		chk, err = r.w.CheckRepositories(ctx, kept, backups.Subset{Percent: 100}, "check:test")
		require.NoError(t, err)
		require.Equal(t, 1, chk.Verified, "%+v", chk)
		require.Empty(t, chk.Findings)
	})
}

// TestFormatOneArchivesStillRestoreAndVerify: a snapshot a run recorded
// before the repository (a .lvq archive of format 1, its summary without
// a format) restores byte for byte through backup.restore_data and is
// verified by backup.verify and backup.verify_snapshot; once one byte of
// its blob is flipped, backup.verify marks it corrupt, with the
// operators' alert, deletes nothing, and a restore of it is refused.
func TestFormatOneArchivesStillRestoreAndVerify(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		r := startRunner(t, st, nil)
		data := filepath.Join(r.root, "data")
		tree(t, data)
		want := snapshotTree(t, data)
		src := r.directorySource(t, "files", data)
		snap := r.formatOne(t, src, data)

		target := filepath.Join(r.root, "restored")
		var restored backups.RestoreDataResult
		succeeded(t, r.restore(t, snap.ID, target), &restored)
		require.Equal(t, 7, restored.Files)
		sum, ok := backups.SummaryOf(snap)
		require.True(t, ok)
		require.Equal(t, sum.SourceBytes, restored.Bytes)
		require.Equal(t, want, snapshotTree(t, target), "every byte, mode and time")

		id := r.submit(t, backups.RunDomain, backups.ActionRestoreData, backups.RestoreDataParams{SnapshotID: snap.ID, ByOperator: true,
			RestoreDataBody: backups.RestoreDataBody{TargetPath: filepath.Join(r.root, "partial"), Include: []string{"a"}}})
		require.Equal(t, "not_browsable", failed(t, r.outcome(t, id, 30*time.Second), http.StatusUnprocessableEntity, "include").Code)

		v, err := r.w.VerifySample(ctx, time.Now())
		require.NoError(t, err)
		require.Equal(t, 1, v.Checked)
		require.Zero(t, v.Corrupt)
		require.Equal(t, store.SnapshotVerified, v.Snapshots[0].Integrity)
		var verified store.Snapshot
		succeeded(t, r.outcome(t, r.submit(t, backups.RunDomain, backups.ActionVerifySnapshot, backups.SnapshotParams{SnapshotID: snap.ID}), 30*time.Second), &verified)
		require.Equal(t, store.SnapshotVerified, verified.Integrity)
		require.Empty(t, r.events(t, events.NameBackupCorrupt))

		before := mustList(t, r.local, "")
		flipByte(t, filepath.Join(r.local.Root(), filepath.FromSlash(snap.BlobKey)))
		v, err = r.w.VerifySample(ctx, time.Now())
		require.NoError(t, err)
		require.Equal(t, 1, v.Checked)
		require.Equal(t, 1, v.Corrupt)
		got, err := st.GetSnapshot(ctx, snap.ID)
		require.NoError(t, err)
		require.Equal(t, store.SnapshotCorrupt, got.Integrity)
		require.Equal(t, store.SnapshotActive, got.State, "a corrupt snapshot is not deleted")
		require.NotEmpty(t, got.VerifyError)
		ev := r.events(t, events.NameBackupCorrupt)
		require.Len(t, ev, 1)
		require.Equal(t, snap.ID, ev[0]["snapshot_id"])
		after := mustList(t, r.local, "")
		require.Equal(t, len(before), len(after), "nothing deleted")
		for i := range before {
			require.Equal(t, before[i].Key, after[i].Key, "nothing deleted")
			require.Equal(t, before[i].Size, after[i].Size)
		}
		e := failed(t, r.restore(t, snap.ID, filepath.Join(r.root, "again")), http.StatusConflict, "id")
		require.Equal(t, "snapshot_corrupt", e.Code)
	})
}

// formatOne records a snapshot of the directory data of src as runs
// recorded them before the repository: a format 1 archive under
// <account>/<source>/<run>.lvq, its summary without a format.
func (r *runner) formatOne(t *testing.T, src, data string) *store.Snapshot {
	t.Helper()
	ctx := t.Context()
	var buf bytes.Buffer
	m, err := archive.WriteDirectory(ctx, &buf, data, nil)
	require.NoError(t, err)
	runID, err := command.NewID(backups.RunIDPrefix)
	require.NoError(t, err)
	key := fmt.Sprintf("%s/%s/%s.lvq", r.acc, src, runID)
	size, sha, err := r.local.Put(ctx, key, bytes.NewReader(buf.Bytes()))
	require.NoError(t, err)
	sum := backups.ManifestSummary{Kind: m.Kind, SourceBytes: m.SourceBytes, CreatedAt: m.CreatedAt.UTC(), Skipped: len(m.Skipped)}
	for _, f := range m.Files {
		switch f.Type {
		case archive.TypeFile:
			sum.Files++
		case archive.TypeDir:
			sum.Dirs++
		case archive.TypeSymlink:
			sum.Symlinks++
		}
	}
	raw, err := json.Marshal(sum)
	require.NoError(t, err)
	require.NotContains(t, string(raw), `"format"`, "a format 1 summary names no format")
	id, err := command.NewID(backups.SnapshotIDPrefix)
	require.NoError(t, err)
	require.NoError(t, r.st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.InsertSnapshot(ctx, store.Snapshot{ID: id, AccountID: r.acc, SourceID: src, TakenAt: time.Now().Add(-24 * time.Hour).Truncate(time.Second),
			SizeBytes: size, SHA256: sha, BlobKey: key, Tags: []string{}, RecordedBy: "key_ops", RecordedAt: time.Now(), Manifest: raw})
		return err
	}))
	s, err := r.st.GetSnapshot(ctx, id)
	require.NoError(t, err)
	return s
}

// restore restores snapshot id of the runner's account into target
// through backup.restore_data and returns the command.
func (r *runner) restore(t *testing.T, id, target string) *store.Command {
	t.Helper()
	cmd := r.submit(t, backups.RunDomain, backups.ActionRestoreData, backups.RestoreDataParams{
		SnapshotID: id, ByOperator: true, RestoreDataBody: backups.RestoreDataBody{TargetPath: target}})
	return r.outcome(t, cmd, 60*time.Second)
}

// as runs fn with the runner acting for account acc.
func (r *runner) as(acc string, fn func()) {
	prev := r.acc
	r.acc = acc
	defer func() { r.acc = prev }()
	fn()
}

// writeCanary writes 16 KiB of random bytes to canary.bin under dir and
// returns a stretch of them that only a plaintext copy could hold.
func writeCanary(t *testing.T, dir string) []byte {
	t.Helper()
	b := make([]byte, 16<<10)
	_, err := rand.Read(b)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "canary.bin"), b, 0o644))
	return b[8<<10 : 8<<10+64]
}

func readBlob(t *testing.T, s blob.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), key)
	require.NoError(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	return b
}

func mustList(t *testing.T, s blob.Store, prefix string) []blob.Info {
	t.Helper()
	infos, err := s.List(t.Context(), prefix)
	require.NoError(t, err)
	return infos
}

// scratchCopy is a blob store of its own holding objects.
func scratchCopy(t *testing.T, objects map[string][]byte) *blob.Local {
	t.Helper()
	l, err := blob.NewLocal(filepath.Join(t.TempDir(), "copy"))
	require.NoError(t, err)
	for k, b := range objects {
		_, _, err := l.Put(t.Context(), k, bytes.NewReader(b))
		require.NoError(t, err)
	}
	return l
}

// runAccountsCommand carries out an accounts command of account acc as
// accounts-cmd does.
func runAccountsCommand(t *testing.T, st *store.Store, w *accounts.Worker, action, acc string, params any) *store.Command {
	t.Helper()
	id, err := command.NewID(command.IDPrefix)
	require.NoError(t, err)
	raw, err := json.Marshal(params)
	require.NoError(t, err)
	env := command.Envelope{ID: id, Domain: accounts.Domain, Action: action, AccountID: acc, KeyID: "key_ops", Params: raw, CreatedAt: time.Now()}
	payload, err := json.Marshal(env)
	require.NoError(t, err)
	_, _, err = st.CreateCommand(t.Context(), store.Command{ID: id, Scope: "operator", AccountID: acc, Domain: accounts.Domain, Action: action, RequestHash: "h", Payload: payload})
	require.NoError(t, err)
	m := &bus.Message{Subject: "levqor.cmd.accounts." + action, Header: nats.Header{bus.HeaderMsgID: {id}}, Data: payload,
		Stream: "COMMANDS", Consumer: accounts.ConsumerCommands, StreamSeq: 1, Deliveries: 1}
	require.NoError(t, w.Runtime.Handler(w.Handle)(t.Context(), m))
	c, err := st.GetCommand(t.Context(), id)
	require.NoError(t, err)
	return c
}
