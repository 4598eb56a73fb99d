package repo_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/repo"
)

// failAt is a blob store whose n-th change (Put or Delete) fails, as a
// crash or an outage at that point would stop a prune.
type failAt struct {
	blob.Store
	n     int64
	calls atomic.Int64
}

var errInjected = errors.New("injected blob store failure")

func (f *failAt) change() error {
	if f.calls.Add(1) == f.n {
		return errInjected
	}
	return nil
}

func (f *failAt) Put(ctx context.Context, key string, r io.Reader) (int64, string, error) {
	if err := f.change(); err != nil {
		return 0, "", err
	}
	return f.Store.Put(ctx, key, r)
}

func (f *failAt) Delete(ctx context.Context, key string) error {
	if err := f.change(); err != nil {
		return err
	}
	return f.Store.Delete(ctx, key)
}

// random is n pseudo-random bytes of seed.
func random(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// TestPruneNeverLosesAChunkAKeptSnapshotNeeds: three backups, the first
// one dropped. A prune that fails at each of its blob store changes in
// turn leaves both kept snapshots restorable every time; the prune that
// finally completes frees the dropped snapshot's content (rewriting the
// pack it shared with the kept ones), and the next one has nothing to do.
func TestPruneNeverLosesAChunkAKeptSnapshotNeeds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir, src := t.TempDir(), t.TempDir()
	blobs, err := blob.NewLocal(dir)
	require.NoError(t, err)
	write := func(name string, b []byte) {
		require.NoError(t, os.WriteFile(filepath.Join(src, name), b, 0o644))
	}
	write("shared.txt", bytes.Repeat([]byte("kept by every snapshot\n"), 100))
	write("old.bin", random(1, 3<<20))
	r := newRepo(t, blobs, fixedKey(9))
	dropped, _, err := r.BackupDirectory(ctx, src, nil)
	require.NoError(t, err)
	require.NoError(t, os.Remove(filepath.Join(src, "old.bin")))
	write("new.bin", random(2, 2<<20))
	second, m2, err := r.BackupDirectory(ctx, src, nil)
	require.NoError(t, err)
	write("newer.bin", random(3, 1<<20))
	third, m3, err := r.BackupDirectory(ctx, src, nil)
	require.NoError(t, err)
	keep := []repo.ID{second, third}
	want := map[repo.ID]*repo.Manifest{second: m2, third: m3}
	sizeOf := func() int64 {
		infos, err := blobs.List(ctx, "")
		require.NoError(t, err)
		var n int64
		for _, in := range infos {
			n += in.Size
		}
		return n
	}
	before := sizeOf()

	// Every kept snapshot restores, byte for byte, with a fresh view of
	// the repository.
	restorable := func(step int64) {
		t.Helper()
		r := newRepo(t, blobs, fixedKey(9))
		for id, m := range want {
			got, err := r.LoadManifest(ctx, id)
			require.NoError(t, err, "step %d", step)
			require.Equal(t, m.Nodes, got.Nodes)
			_, n, err := r.Check(ctx, got)
			require.NoError(t, err, "after a prune failed at change %d, snapshot %s lost a chunk", step, id)
			require.Equal(t, m.Stats.Bytes, n)
		}
	}
	later := time.Now().Add(time.Hour)

	// On a copy, uninterrupted: old.bin's pack also holds shared.txt's
	// chunk, so it is rewritten, not deleted whole.
	copyDir := t.TempDir()
	require.NoError(t, os.CopyFS(copyDir, os.DirFS(dir)))
	copied, err := blob.NewLocal(copyDir)
	require.NoError(t, err)
	opts := repo.PruneOptions{Keep: keep, MinAge: time.Minute, ReadGrace: 12 * time.Hour, Now: later}
	whole, err := newRepo(t, copied, fixedKey(9)).Prune(ctx, opts)
	require.NoError(t, err)
	require.Equal(t, 1, whole.PacksRepacked, "%+v", whole)
	require.Equal(t, 1, whole.PacksWritten)
	require.Equal(t, 1, whole.Manifests, "the dropped snapshot's manifest")
	require.Zero(t, whole.PacksDeleted, "a rewritten pack waits for the readers that may use it")
	require.Less(t, whole.BytesWritten, int64(64<<10), "only the shared chunk is copied")
	chk, err := newRepo(t, copied, fixedKey(9)).CheckPacks(ctx, nil)
	require.NoError(t, err)
	require.Zero(t, chk.Unindexed, "an obsolete pack is not a stray")
	require.Empty(t, chk.Missing)
	afterGrace := opts
	afterGrace.Now = later.Add(13 * time.Hour)
	whole, err = newRepo(t, copied, fixedKey(9)).Prune(ctx, afterGrace)
	require.NoError(t, err)
	require.Equal(t, 1, whole.PacksDeleted, "%+v", whole)
	require.Greater(t, whole.BytesFreed, int64(3<<20))

	for n := int64(1); ; n++ {
		f := &failAt{Store: blobs, n: n}
		_, err := newRepo(t, f, fixedKey(9)).Prune(ctx, opts)
		restorable(n)
		if err == nil {
			require.Less(t, f.calls.Load(), n, "the prune finished before the change that would fail")
			break
		}
		require.ErrorIs(t, err, errInjected)
		require.Less(t, n, int64(50), "a prune of a few packs makes a handful of changes")
	}
	_, err = newRepo(t, blobs, fixedKey(9)).LoadManifest(ctx, dropped)
	require.ErrorIs(t, err, blob.ErrNotFound, "the dropped snapshot's manifest is deleted")
	// After the read grace, a prune that fails at each change in turn,
	// then one that finishes, deletes what the first ones left obsolete
	// or stray.
	for n := int64(1); ; n++ {
		f := &failAt{Store: blobs, n: n}
		_, err := newRepo(t, f, fixedKey(9)).Prune(ctx, afterGrace)
		restorable(100 + n)
		if err == nil {
			break
		}
		require.ErrorIs(t, err, errInjected)
		require.Less(t, n, int64(50))
	}
	require.Less(t, sizeOf(), before-(2<<20), "old.bin's 3 MiB are freed")

	again, err := newRepo(t, blobs, fixedKey(9)).Prune(ctx, afterGrace)
	require.NoError(t, err)
	require.Equal(t, repo.PruneReport{Snapshots: 2, Chunks: again.Chunks}, again, "nothing is left to prune")
	infos, err := blobs.List(ctx, "acc_test/repo/index/")
	require.NoError(t, err)
	require.Len(t, infos, 1, "one index names what stays")
	restorable(0)
}

// TestPruneRefusesWhatItCannotRead: a kept manifest that does not open,
// or an index that does not, stops the prune before it deletes anything.
func TestPruneRefusesWhatItCannotRead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir, src := t.TempDir(), t.TempDir()
	blobs, err := blob.NewLocal(dir)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(src, "a.bin"), random(4, 1<<20), 0o644))
	r := newRepo(t, blobs, fixedKey(5))
	first, _, err := r.BackupDirectory(ctx, src, nil)
	require.NoError(t, err)
	listAll := func() []blob.Info {
		infos, err := blobs.List(ctx, "")
		require.NoError(t, err)
		return infos
	}
	all := listAll()

	var missing repo.ID
	missing[0] = 1
	_, err = newRepo(t, blobs, fixedKey(5)).Prune(ctx, repo.PruneOptions{Keep: []repo.ID{first, missing}, Now: time.Now().Add(time.Hour)})
	require.ErrorIs(t, err, repo.ErrPruneRefused)
	require.Contains(t, err.Error(), "manifest "+missing.String())
	require.Equal(t, all, listAll(), "nothing deleted")

	idx, err := filepath.Glob(filepath.Join(dir, "acc_test", "repo", "index", "*"))
	require.NoError(t, err)
	require.Len(t, idx, 1)
	require.NoError(t, os.WriteFile(idx[0], []byte("not an index"), 0o600))
	all = listAll()
	_, err = newRepo(t, blobs, fixedKey(5)).Prune(ctx, repo.PruneOptions{Now: time.Now().Add(time.Hour)})
	require.ErrorIs(t, err, repo.ErrPruneRefused)
	require.Contains(t, err.Error(), "do not open")
	require.Equal(t, all, listAll(), "nothing deleted")
}

// TestLockedPacksOutliveTheSnapshotsThatNeedThem: with LockWindow, a
// pack is locked as it is written (nobody deletes it, Levqor's prune
// included), the prune extends the locks of the packs kept snapshots
// use, and a pack no snapshot uses any more is deleted only once its
// lock has run out.
func TestLockedPacksOutliveTheSnapshotsThatNeedThem(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := t.TempDir()
	blobs, err := blob.NewLocal(t.TempDir())
	require.NoError(t, err)
	const window = 4 * time.Second
	open := func() *repo.Repo {
		r := newRepo(t, blobs, fixedKey(16))
		r.LockWindow = window
		return r
	}
	require.NoError(t, os.WriteFile(filepath.Join(src, "old.bin"), random(31, 1<<20), 0o644))
	dropped, _, err := open().BackupDirectory(ctx, src, nil)
	require.NoError(t, err)
	oldPacks, err := blobs.List(ctx, "acc_test/repo/packs/")
	require.NoError(t, err)
	require.Len(t, oldPacks, 1)
	oldPack := oldPacks[0].Key
	until, err := blobs.LockedUntil(ctx, oldPack)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(window), until, 2*time.Second, "locked as it is written")
	require.ErrorIs(t, blobs.Delete(ctx, oldPack), blob.ErrLocked, "nobody deletes a locked pack")

	require.NoError(t, os.Remove(filepath.Join(src, "old.bin")))
	require.NoError(t, os.WriteFile(filepath.Join(src, "new.bin"), random(32, 1<<20), 0o644))
	kept, m, err := open().BackupDirectory(ctx, src, nil)
	require.NoError(t, err)
	droppedManifest := "acc_test/repo/snapshots/" + dropped.String()
	require.ErrorIs(t, blobs.Delete(ctx, droppedManifest), blob.ErrLocked, "a manifest is locked as it is written: deleting it alone would lose its snapshot")
	opts := repo.PruneOptions{Keep: []repo.ID{kept}}

	packs, err := blobs.List(ctx, "acc_test/repo/packs/")
	require.NoError(t, err)
	require.Len(t, packs, 2)
	keptPack := packs[0].Key
	if keptPack == oldPack {
		keptPack = packs[1].Key
	}

	// The prune marks the old pack unused; while the store holds it
	// locked, no prune deletes it.
	opts.Now = time.Now()
	rep, err := open().Prune(ctx, opts)
	require.NoError(t, err)
	require.Equal(t, 1, rep.PacksUnused)
	require.Zero(t, rep.PacksDeleted, "deleted only after the read grace's next prune")
	if stillLocked := time.Now().Add(500 * time.Millisecond).Before(until); stillLocked {
		opts.Now = time.Now()
		rep, err = open().Prune(ctx, opts)
		require.NoError(t, err)
		if time.Now().Before(until) {
			require.Zero(t, rep.PacksDeleted, "still locked")
			_, err = blobs.Stat(ctx, oldPack)
			require.NoError(t, err)
		}
	}
	// Once less than half of its window is left, the kept pack's lock
	// is extended.
	keptUntil, err := blobs.LockedUntil(ctx, keptPack)
	require.NoError(t, err)
	keptManifest := "acc_test/repo/snapshots/" + kept.String()
	manifestLocked, err := blobs.LockedUntil(ctx, keptManifest)
	require.NoError(t, err)
	// The manifest is locked just after the pack: wait until both have
	// less than half their window left.
	time.Sleep(time.Until(later(keptUntil, manifestLocked).Add(-window / 2)))
	opts.Now = time.Now()
	rep, err = open().Prune(ctx, opts)
	require.NoError(t, err)
	require.Equal(t, 2, rep.LocksExtended, "the kept snapshot's pack and manifest had less than half their window left")
	extended, err := blobs.LockedUntil(ctx, keptPack)
	require.NoError(t, err)
	require.True(t, extended.After(keptUntil), "extended from %s to %s", keptUntil, extended)
	manifestUntil, err := blobs.LockedUntil(ctx, keptManifest)
	require.NoError(t, err)
	require.True(t, manifestUntil.After(manifestLocked), "the kept manifest's lock extended from %s to %s", manifestLocked, manifestUntil)

	require.Eventually(t, func() bool {
		opts.Now = time.Now()
		rep, err := open().Prune(ctx, opts)
		require.NoError(t, err)
		return rep.PacksDeleted == 1
	}, 10*time.Second, 250*time.Millisecond, "deleted once its lock ran out")
	_, err = blobs.Stat(ctx, oldPack)
	require.ErrorIs(t, err, blob.ErrNotFound)
	_, err = blobs.Stat(ctx, droppedManifest)
	require.ErrorIs(t, err, blob.ErrNotFound, "the dropped manifest went with its lock")
	_, n, err := open().Check(ctx, m)
	require.NoError(t, err, "the kept snapshot is whole")
	require.Equal(t, m.Stats.Bytes, n)
}

// TestLocksAreExtendedWhenThePruneCannotRun: a damaged index refuses the
// prune, but ExtendLocks still extends the locks of the packs the
// readable indexes list, so none comes unlocked while the damage waits
// for an operator.
func TestLocksAreExtendedWhenThePruneCannotRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir, src := t.TempDir(), t.TempDir()
	blobs, err := blob.NewLocal(dir)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(src, "a.bin"), random(41, 1<<20), 0o644))
	r := newRepo(t, blobs, fixedKey(17))
	r.LockWindow = time.Hour
	_, _, err = r.BackupDirectory(ctx, src, nil)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(src, "b.bin"), random(42, 1<<20), 0o644))
	_, _, err = r.BackupDirectory(ctx, src, nil)
	require.NoError(t, err)
	idx, err := filepath.Glob(filepath.Join(dir, "acc_test", "repo", "index", "*"))
	require.NoError(t, err)
	require.Len(t, idx, 2)
	require.NoError(t, os.WriteFile(idx[0], []byte("damaged"), 0o600))

	r = newRepo(t, blobs, fixedKey(17))
	r.LockWindow = time.Hour
	_, err = r.Prune(ctx, repo.PruneOptions{Now: time.Now()})
	require.ErrorIs(t, err, repo.ErrPruneRefused)
	later := time.Now().Add(40 * time.Minute) // less than half the window left
	n, err := r.ExtendLocks(ctx, later, nil)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the pack the readable index lists")
	packs, err := blobs.List(ctx, "acc_test/repo/packs/")
	require.NoError(t, err)
	extended := 0
	for _, p := range packs {
		until, err := blobs.LockedUntil(ctx, p.Key)
		require.NoError(t, err)
		if until.After(time.Now().Add(90 * time.Minute)) {
			extended++
		}
	}
	require.Equal(t, 1, extended)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
