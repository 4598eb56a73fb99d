package backups_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// TestLevqorsDatabaseComesBackFromItsSelfBackup: levqor.selfbackup dumps
// the catalog into the blob store; the database is lost; the newest
// self-backup is restored into an empty one. Until the restored catalog
// is reconciled with the blob store, the sweep and blob.gc refuse to run,
// so the blob of a snapshot taken after the self-backup survives them;
// reconciling records that snapshot again from its blob and marks corrupt
// the one whose blob went after the self-backup; blob.gc then keeps the
// adopted blob. Both dialects.
func TestLevqorsDatabaseComesBackFromItsSelfBackup(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			urls := func() string {
				if dialect == "sqlite" {
					return "sqlite:" + filepath.Join(t.TempDir(), "levqor.db")
				}
				return storetest.PostgresURL(t)
			}
			dbURL, lostURL := urls(), urls()
			open := func(u string) *store.Store {
				st, err := store.Open(ctx, u, storetest.Logger(t))
				require.NoError(t, err)
				t.Cleanup(func() { st.Close() })
				require.NoError(t, st.Migrate(ctx))
				return st
			}
			b := setup(t, open(dbURL), starter)
			b.w.Settings.DatabaseURL, b.w.Settings.SelfBackupKeep = dbURL, 2
			src := b.source(t, nil)
			kept := b.snapshot(t, src, day(1))
			gone := b.snapshot(t, src, day(2))

			_, err := backups.RestoreDatabase(ctx, b.local, testSealer(t), backups.SelfBackupDir(bus.Topology{}), "", lostURL)
			require.ErrorIs(t, err, backups.ErrNoSelfBackup, "nothing to restore yet, said plainly")

			slot := time.Date(2026, 12, 1, 2, 45, 0, 0, time.UTC)
			info, err := b.w.SelfBackup(ctx, slot)
			require.NoError(t, err)
			require.Equal(t, "levqor-self/levqor/20261201T024500Z.v2", info.Key)
			require.Positive(t, info.Size)

			// After the self-backup: a new snapshot, a new source with
			// one, and a purge.
			after := b.snapshot(t, src, day(3))
			newSrc := b.source(t, nil)
			newSrcSnap, err := b.st.GetSnapshot(ctx, b.snapshot(t, newSrc, day(4)))
			require.NoError(t, err)
			afterSnap, err := b.st.GetSnapshot(ctx, after)
			require.NoError(t, err)
			goneSnap, err := b.st.GetSnapshot(ctx, gone)
			require.NoError(t, err)
			require.NoError(t, b.local.Delete(ctx, goneSnap.BlobKey))

			// Some time passes before the loss is noticed.
			hourAgo := time.Now().Add(-time.Hour)
			for _, key := range []string{afterSnap.BlobKey, newSrcSnap.BlobKey} {
				require.NoError(t, os.Chtimes(filepath.Join(b.local.Root(), filepath.FromSlash(key)), hourAgo, hourAgo))
			}

			// The database is lost; the newest self-backup goes into an
			// empty one, never into one that holds data.
			_, err = backups.RestoreDatabase(ctx, b.local, testSealer(t), backups.SelfBackupDir(bus.Topology{}), "", dbURL)
			require.Error(t, err, "a database that holds data is not restored over")
			restored, err := backups.RestoreDatabase(ctx, b.local, testSealer(t), backups.SelfBackupDir(bus.Topology{}), "", lostURL)
			require.NoError(t, err)
			require.Equal(t, info.Key, restored.Key)
			st := open(lostURL)
			require.NoError(t, st.RecordSelfRestore(ctx, store.SelfRestore{ID: "rst_test", BackupKey: restored.Key, BackupTakenAt: restored.TakenAt, RestoredAt: time.Now()}))
			// The services run again meanwhile: a run's blob written after
			// the restore, not yet recorded, is theirs, not reconcile's.
			running := b.acc + "/" + src + "/run_after_the_restore.lvq"
			_, _, err = b.local.Put(ctx, running, strings.NewReader("a run in progress"))
			require.NoError(t, err)
			w := &backups.Worker{Store: st, Blobs: b.local, Runtime: &command.Runtime{Store: st, Prefix: "levqor"},
				Settings: backups.Settings{MaxShare: 0.5, TrashGrace: time.Hour, GCAge: time.Hour}}
			_, err = st.GetSnapshot(ctx, kept)
			require.NoError(t, err, "the catalog is back")
			_, err = st.GetSnapshot(ctx, after)
			require.ErrorIs(t, err, store.ErrNotFound, "as it was at the self-backup")

			// Judged by the stale catalog, the new snapshot's blob would be
			// garbage: blob.gc and the sweep refuse to run.
			later := time.Now().Add(365 * 24 * time.Hour)
			_, err = w.CollectGarbage(ctx, later)
			require.ErrorIs(t, err, backups.ErrCatalogRestored)
			_, err = w.SweepSource(ctx, src, backups.SweepOptions{Now: later, Actor: "test"})
			var ce *command.Error
			require.ErrorAs(t, err, &ce)
			require.Equal(t, 409, ce.Status)
			require.NoError(t, w.SweepAll(ctx, later, "test"), "the job skips, saying why, and is not retried")
			_, err = b.local.Stat(ctx, afterSnap.BlobKey)
			require.NoError(t, err, "the new snapshot's blob survived")

			rep, err := w.ReconcileCatalog(ctx, "selfrestore:test")
			require.NoError(t, err)
			require.Len(t, rep.Adopted, 1, "the new snapshot, not the running upload")
			require.Equal(t, []string{gone}, rep.Missing)
			require.Equal(t, []string{newSrcSnap.BlobKey}, rep.Unknown, "the new source's blob is left alone")
			adopted, err := st.GetSnapshot(ctx, rep.Adopted[0])
			require.NoError(t, err)
			require.Equal(t, afterSnap.BlobKey, adopted.BlobKey)
			require.Equal(t, afterSnap.SHA256, adopted.SHA256)
			require.Equal(t, afterSnap.SizeBytes, adopted.SizeBytes)
			require.Equal(t, store.SnapshotActive, adopted.State)
			g, err := st.GetSnapshot(ctx, gone)
			require.NoError(t, err)
			require.Equal(t, store.SnapshotCorrupt, g.Integrity)
			_, err = w.ReconcileCatalog(ctx, "selfrestore:test")
			require.Error(t, err, "nothing is left to reconcile")

			res, err := w.CollectGarbage(ctx, later)
			require.NoError(t, err, "reconciled, blob.gc runs")
			require.Equal(t, 1, res.Deleted, "the abandoned upload only: %+v", res)
			for _, key := range []string{afterSnap.BlobKey, newSrcSnap.BlobKey} {
				_, err = b.local.Stat(ctx, key)
				require.NoError(t, err, "blob.gc keeps %s", key)
			}

			// The newest SelfBackupKeep are kept.
			for i := 1; i <= 2; i++ {
				_, err := b.w.SelfBackup(ctx, slot.AddDate(0, 0, i))
				require.NoError(t, err)
			}
			list, err := backups.ListSelfBackups(ctx, b.local, backups.SelfBackupDir(bus.Topology{}))
			require.NoError(t, err)
			require.Len(t, list, 2)
			require.Equal(t, "levqor-self/levqor/20261203T024500Z.v2", list[1].Key)
			left, err := b.local.List(ctx, "levqor-self/levqor/20261201T024500Z")
			require.NoError(t, err)
			require.Empty(t, left, "a self-backup rotated out leaves nothing")
		})
	}
}

// TestSelfBackupsAreSealed: a self-backup holds every account's catalog,
// people and wrapped keys, so whoever holds the bucket must read none of
// it: no object of it holds the database's bytes, and it restores only
// with the master keys. A self-backup of format 1, written in clear
// before, still restores.
func TestSelfBackupsAreSealed(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	dbURL := "sqlite:" + filepath.Join(dir, "levqor.db")
	st, err := store.Open(ctx, dbURL, storetest.Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	require.NoError(t, st.Migrate(ctx))
	b := setup(t, st, starter)
	b.w.Settings.DatabaseURL = dbURL
	const marker = "a-customer-name-only-the-database-holds"
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.InsertAccount(ctx, store.Account{ID: "acc_" + strings.Repeat("m", 26), Name: marker, ContactEmail: "m@example.com", StripeCustomerID: "cus_m"})
		return err
	}))
	selfDir := backups.SelfBackupDir(bus.Topology{})
	info, err := b.w.SelfBackup(ctx, time.Date(2026, 12, 1, 2, 45, 0, 0, time.UTC))
	require.NoError(t, err)
	require.Equal(t, 2, info.Format)

	objs, err := b.local.List(ctx, selfDir)
	require.NoError(t, err)
	require.Greater(t, len(objs), 2, "a record, a pack, an index, a manifest")
	for _, o := range objs {
		raw, err := os.ReadFile(filepath.Join(b.local.Root(), filepath.FromSlash(o.Key)))
		require.NoError(t, err)
		require.NotContains(t, unpacked(t, raw), marker, "%s holds the database in clear", o.Key)
	}
	list, err := backups.ListSelfBackups(ctx, b.local, selfDir)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, info.Key, list[0].Key)
	require.Greater(t, list[0].Size, int64(len(marker)), "the size counts the repository")

	restoreTo := func(sealer *keys.Sealer) (string, error) {
		u := "sqlite:" + filepath.Join(t.TempDir(), "restored.db")
		_, err := backups.RestoreDatabase(ctx, b.local, sealer, selfDir, "", u)
		return u, err
	}
	_, err = restoreTo(nil)
	require.ErrorContains(t, err, "set LEVQOR_MASTER_KEYS")
	other, err := keys.ParseMasterKeys(strings.Repeat("ab", 32))
	require.NoError(t, err)
	_, err = restoreTo(other)
	require.ErrorIs(t, err, keys.ErrSealed, "another deployment's master key opens nothing")
	u, err := restoreTo(testSealer(t))
	require.NoError(t, err)
	restored, err := store.Open(ctx, u, storetest.Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { restored.Close() })
	acc, err := restored.GetAccount(ctx, "acc_"+strings.Repeat("m", 26))
	require.NoError(t, err)
	require.Equal(t, marker, acc.Name)

	// A self-backup of format 1, as they were written before: restored.
	var legacy bytes.Buffer
	require.NoError(t, backups.DumpDatabase(ctx, &legacy, st, dbURL))
	require.Contains(t, unpacked(t, legacy.Bytes()), marker, "in clear, the name shows: the check above can see it")
	_, _, err = b.local.Put(ctx, selfDir+"20261130T024500Z.lvq", &legacy)
	require.NoError(t, err)
	u = "sqlite:" + filepath.Join(t.TempDir(), "legacy.db")
	got, err := backups.RestoreDatabase(ctx, b.local, nil, selfDir, selfDir+"20261130T024500Z.lvq", u)
	require.NoError(t, err)
	require.Equal(t, 1, got.Format)
	legacyDB, err := store.Open(ctx, u, storetest.Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { legacyDB.Close() })
	_, err = legacyDB.GetAccount(ctx, "acc_"+strings.Repeat("m", 26))
	require.NoError(t, err)
}

// unpacked is raw with every zstd frame found in it decompressed: what
// someone holding the object reads without a key.
func unpacked(t *testing.T, raw []byte) string {
	t.Helper()
	out := append([]byte(nil), raw...)
	magic := []byte{0x28, 0xb5, 0x2f, 0xfd}
	dec, err := zstd.NewReader(nil)
	require.NoError(t, err)
	defer dec.Close()
	for i := 0; ; {
		j := bytes.Index(raw[i:], magic)
		if j < 0 {
			return string(out)
		}
		i += j
		if err := dec.Reset(bytes.NewReader(raw[i:])); err == nil {
			plain, _ := io.ReadAll(dec)
			out = append(out, plain...)
		}
		i++
	}
}
