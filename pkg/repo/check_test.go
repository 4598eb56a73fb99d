package repo_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/repo"
)

// TestCheckFindsCorruptAndMissingPacks: a sound repository checks clean
// with every pack read; a flipped byte in one pack and another pack
// deleted are each reported, and the snapshot that needs them is named
// damaged, while a snapshot that needs neither is not.
func TestCheckFindsCorruptAndMissingPacks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir, src := t.TempDir(), t.TempDir()
	blobs, err := blob.NewLocal(dir)
	require.NoError(t, err)
	tree(t, src, 7)
	r := newRepo(t, blobs, fixedKey(7))
	_, m, err := r.BackupDirectory(ctx, src, nil)
	require.NoError(t, err)
	small := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(small, "note.txt"), []byte("a note of its own\n"), 0o644))
	_, other, err := r.BackupDirectory(ctx, small, nil)
	require.NoError(t, err)

	r = newRepo(t, blobs, fixedKey(7))
	rep, err := r.CheckPacks(ctx, nil)
	require.NoError(t, err)
	require.Greater(t, rep.Packs, 2, "12 MiB and more make several packs")
	require.Equal(t, rep.Packs, rep.Read)
	require.Empty(t, rep.Missing)
	require.Empty(t, rep.Corrupt)
	require.Zero(t, rep.Unindexed)
	require.Greater(t, rep.Chunks, rep.Packs)
	require.Empty(t, r.Damage(m, &rep))

	none, err := r.CheckPacks(ctx, func(repo.ID) bool { return false })
	require.NoError(t, err)
	require.Zero(t, none.Read, "a subset that selects nothing reads nothing")
	require.Zero(t, none.Bytes)

	packs, err := filepath.Glob(filepath.Join(dir, "acc_test", "repo", "packs", "*"))
	require.NoError(t, err)
	// Find the pack holding the small tree's only chunk: it must stay
	// sound, so damage another two.
	notePack := ""
	for _, p := range packs {
		keep := map[string]bool{filepath.Base(p): true}
		rep, err := newRepo(t, &hiding{Store: blobs, keep: keep}, fixedKey(7)).CheckPacks(ctx, nil)
		require.NoError(t, err)
		if len(rep.Missing) == rep.Packs-1 && newRepo(t, blobs, fixedKey(7)).Damage(other, &rep) == "" {
			notePack = p
		}
	}
	require.NotEmpty(t, notePack)
	var flip, gone string
	for _, p := range packs {
		switch {
		case p == notePack:
		case flip == "":
			flip = p
		case gone == "":
			gone = p
		}
	}
	b, err := os.ReadFile(flip)
	require.NoError(t, err)
	b[30] ^= 0x01
	require.NoError(t, os.WriteFile(flip, b, 0o600))
	require.NoError(t, os.Remove(gone))

	rep, err = newRepo(t, blobs, fixedKey(7)).CheckPacks(ctx, nil)
	require.NoError(t, err)
	require.Len(t, rep.Missing, 1)
	require.Equal(t, filepath.Base(gone), rep.Missing[0].String())
	require.Len(t, rep.Corrupt, 1)
	for id, why := range rep.Corrupt {
		require.Equal(t, filepath.Base(flip), id.String())
		require.Contains(t, why, "does not hash to its name")
	}
	require.Equal(t, rep.Packs-1, rep.Read)
	r = newRepo(t, blobs, fixedKey(7))
	require.Regexp(t, `^[a-zA-Z./]+: pack [0-9a-f]{64} (is missing|does not hash to its name)`, r.Damage(m, &rep), "the tree's chunks lie in the damaged packs")
	require.Empty(t, r.Damage(other, &rep), "a snapshot that needs neither pack is intact")
}

// hiding is a blob store that lists only the packs in keep: the others
// look missing.
type hiding struct {
	blob.Store
	keep map[string]bool
}

func (h *hiding) List(ctx context.Context, prefix string) ([]blob.Info, error) {
	infos, err := h.Store.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var out []blob.Info
	for _, in := range infos {
		if !h.keep[filepath.Base(in.Key)] && filepath.Base(filepath.Dir(in.Key)) == "packs" {
			continue
		}
		out = append(out, in)
	}
	return out, nil
}

// vanishing is a blob store where the first index read is gone, as when
// a prune replaces the indexes between the listing and the reading.
type vanishing struct {
	blob.Store
	once sync.Once
}

func (v *vanishing) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	gone := false
	if strings.Contains(key, "/index/") {
		v.once.Do(func() { gone = true })
	}
	if gone {
		return nil, fmt.Errorf("blob %s: %w", key, blob.ErrNotFound)
	}
	return v.Store.Get(ctx, key)
}

// TestAnIndexGoneWhileOpeningIsNotDamage: an index that vanishes between
// the listing and its reading makes Open list again, not report damage
// (which would mark sound snapshots corrupt).
func TestAnIndexGoneWhileOpeningIsNotDamage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte("content"), 0o644))
	blobs, err := blob.NewLocal(t.TempDir())
	require.NoError(t, err)
	_, m, err := newRepo(t, blobs, fixedKey(14)).BackupDirectory(ctx, src, nil)
	require.NoError(t, err)
	r := newRepo(t, &vanishing{Store: blobs}, fixedKey(14))
	require.Empty(t, r.Damaged)
	_, _, err = r.Check(ctx, m)
	require.NoError(t, err)
}

// TestAnIndexIsRebuiltFromThePacks: an index that does not open hides
// its chunks and refuses the prune; rebuilding the index from the packs'
// own headers brings them back, and the prune runs again.
func TestAnIndexIsRebuiltFromThePacks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir, src := t.TempDir(), t.TempDir()
	tree(t, src, 15)
	blobs, err := blob.NewLocal(dir)
	require.NoError(t, err)
	id, m, err := newRepo(t, blobs, fixedKey(15)).BackupDirectory(ctx, src, nil)
	require.NoError(t, err)
	idx, err := filepath.Glob(filepath.Join(dir, "acc_test", "repo", "index", "*"))
	require.NoError(t, err)
	require.Len(t, idx, 1)
	require.NoError(t, os.WriteFile(idx[0], []byte("damaged"), 0o600))

	r := newRepo(t, blobs, fixedKey(15))
	require.Len(t, r.Damaged, 1)
	_, _, err = r.Check(ctx, m)
	require.ErrorIs(t, err, repo.ErrIntegrity, "its chunks are in no index")
	_, err = r.Prune(ctx, repo.PruneOptions{Keep: []repo.ID{id}, Now: time.Now()})
	require.ErrorIs(t, err, repo.ErrPruneRefused)

	rep, err := r.RebuildIndex(ctx)
	require.NoError(t, err)
	require.Equal(t, m.Stats.NewPacks, rep.Packs)
	require.Equal(t, m.Stats.NewChunks, rep.Chunks)
	require.Empty(t, rep.Unreadable)
	require.Equal(t, []string{"acc_test/repo/index/" + filepath.Base(idx[0])}, rep.Replaced)

	fresh := newRepo(t, blobs, fixedKey(15))
	require.Empty(t, fresh.Damaged)
	_, n, err := fresh.Check(ctx, m)
	require.NoError(t, err)
	require.Equal(t, m.Stats.Bytes, n)
	_, err = fresh.Prune(ctx, repo.PruneOptions{Keep: []repo.ID{id}, Now: time.Now()})
	require.NoError(t, err)

	// A damaged chunk costs that chunk, never the rest of its pack: damage
	// a pack that holds more than one (pack names are random, so which
	// one that is differs from run to run).
	var shared string
	for id, n := range fresh.ChunksPerPack() {
		if n > 1 {
			shared = filepath.Join(dir, "acc_test", "repo", "packs", id.String())
			break
		}
	}
	require.NotEmpty(t, shared, "some pack holds several chunks")
	b, err := os.ReadFile(shared)
	require.NoError(t, err)
	b[20] ^= 1 // inside the pack's first chunk
	require.NoError(t, os.WriteFile(shared, b, 0o600))
	idx, err = filepath.Glob(filepath.Join(dir, "acc_test", "repo", "index", "*"))
	require.NoError(t, err)
	for _, p := range idx {
		require.NoError(t, os.WriteFile(p, []byte("damaged"), 0o600))
	}
	rep, err = newRepo(t, blobs, fixedKey(15)).RebuildIndex(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, rep.BadChunks)
	require.Equal(t, m.Stats.NewPacks, rep.Packs, "the damaged pack's other chunks are indexed")
	require.Equal(t, m.Stats.NewChunks-1, rep.Chunks)
}
