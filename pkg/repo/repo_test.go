package repo_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/repo"
)

// tree writes a small tree under dir: text files, 12 MiB of pseudo-random
// bytes (several chunks), an empty file, a nested directory, a symlink.
func tree(t *testing.T, dir string, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	big := make([]byte, 12<<20)
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	files := map[string][]byte{
		"README.md":              []byte("# orders\nSECRET-MARKER-do-not-leak\n"),
		"data/big.bin":           big,
		"data/empty":             nil,
		"data/nested/deep/a.txt": bytes.Repeat([]byte("line of text\n"), 5000),
	}
	for name, b := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, b, 0o640))
	}
	require.NoError(t, os.Symlink("data/big.bin", filepath.Join(dir, "latest")))
}

func newRepo(t testing.TB, blobs blob.Store, dataKey []byte) *repo.Repo {
	t.Helper()
	return newRepoAt(t, blobs, "acc_test/repo/", dataKey)
}

func newRepoAt(t testing.TB, blobs blob.Store, prefix string, dataKey []byte) *repo.Repo {
	t.Helper()
	k, err := repo.NewKey(dataKey)
	require.NoError(t, err)
	r, err := repo.Open(context.Background(), blobs, prefix, k)
	require.NoError(t, err)
	return r
}

// fixedKey is a data key that is the same on every run: the chunker's
// polynomial comes from the key, so the tests that measure what a change
// stores see the same chunk boundaries every time.
func fixedKey(b byte) []byte { return bytes.Repeat([]byte{b}, repo.KeySize) }

func dataKey(t testing.TB) []byte {
	t.Helper()
	k, err := repo.NewDataKey()
	require.NoError(t, err)
	return k
}

// equalTrees checks that got holds what want holds: the same entries,
// types, bytes, permissions, symlink targets and file times.
func equalTrees(t *testing.T, want, got string) {
	t.Helper()
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(want, p)
		q := filepath.Join(got, rel)
		wi, err := os.Lstat(p)
		require.NoError(t, err)
		gi, err := os.Lstat(q)
		require.NoError(t, err, "%s restored", rel)
		require.Equal(t, wi.Mode().Type(), gi.Mode().Type(), rel)
		switch {
		case wi.Mode()&fs.ModeSymlink != 0:
			a, _ := os.Readlink(p)
			b, _ := os.Readlink(q)
			require.Equal(t, a, b, rel)
		case wi.Mode().IsRegular():
			a, _ := os.ReadFile(p)
			b, _ := os.ReadFile(q)
			require.True(t, bytes.Equal(a, b), "%s: same bytes", rel)
			require.Equal(t, wi.Mode().Perm(), gi.Mode().Perm(), rel)
			require.True(t, wi.ModTime().Equal(gi.ModTime()), "%s: %s vs %s", rel, wi.ModTime(), gi.ModTime())
		}
		return nil
	})
	require.NoError(t, err)
}

// TestATreeComesBackWhole: a backup of a tree restores byte for byte,
// with modes, times and symlinks; a directory lists as it was; one file
// restores on its own.
func TestATreeComesBackWhole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := t.TempDir()
	tree(t, src, 1)
	blobs, err := blob.NewLocal(t.TempDir())
	require.NoError(t, err)
	key := dataKey(t)
	r := newRepo(t, blobs, key)
	id, m, err := r.BackupDirectory(ctx, src, nil)
	require.NoError(t, err)
	require.Equal(t, 4, m.Stats.Files)
	require.Positive(t, m.Stats.NewPacks)

	// Another process opens the repository and the snapshot afresh.
	r2 := newRepo(t, blobs, key)
	m2, err := r2.LoadManifest(ctx, id)
	require.NoError(t, err)
	dst := t.TempDir()
	files, n, err := r2.Restore(ctx, m2, dst, nil)
	require.NoError(t, err)
	require.Equal(t, 4, files)
	require.Equal(t, m.Stats.Bytes, n)
	equalTrees(t, src, dst)

	ls, err := m2.List("data")
	require.NoError(t, err)
	var names []string
	for _, e := range ls {
		names = append(names, e.Path+":"+e.Type)
	}
	require.Equal(t, []string{"data/big.bin:file", "data/empty:file", "data/nested:dir"}, names)
	_, err = m2.List("nope")
	require.ErrorIs(t, err, os.ErrNotExist)

	var one bytes.Buffer
	for _, e := range m2.Nodes {
		if e.Path == "data/nested/deep/a.txt" {
			require.NoError(t, r2.WriteFile(ctx, &one, e))
		}
	}
	want, _ := os.ReadFile(filepath.Join(src, "data/nested/deep/a.txt"))
	require.Equal(t, want, one.Bytes(), "one file restores on its own")
}

// TestOnlyChangedContentIsStored: a second backup of the same tree stores
// nothing new and reads no unchanged file; after a small change it
// stores a little; the same content in another account's repository
// gets other chunk ids.
func TestOnlyChangedContentIsStored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := t.TempDir()
	tree(t, src, 2)
	blobs, err := blob.NewLocal(t.TempDir())
	require.NoError(t, err)
	r := newRepo(t, blobs, fixedKey(2))
	_, first, err := r.BackupDirectory(ctx, src, nil)
	require.NoError(t, err)

	_, again, err := r.BackupDirectory(ctx, src, first)
	require.NoError(t, err)
	require.Zero(t, again.Stats.NewChunks, "nothing new is stored")
	require.Zero(t, again.Stats.ReadBytes, "no unchanged file is read")
	require.Equal(t, 4, again.Stats.Unchanged)

	// Rewrite 4 KiB in the middle of the 12 MiB file.
	p := filepath.Join(src, "data/big.bin")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	copy(b[1<<20:], bytes.Repeat([]byte{0xAB}, 4096))
	require.NoError(t, os.WriteFile(p, b, 0o640))
	later := time.Now().Add(time.Minute)
	require.NoError(t, os.Chtimes(p, later, later))
	_, changed, err := r.BackupDirectory(ctx, src, again)
	require.NoError(t, err)
	require.Equal(t, int64(len(b)), changed.Stats.ReadBytes, "only the changed file is read")
	require.Less(t, changed.Stats.StoredBytes, int64(len(b))/3, "a small change stores a little: %+v", changed.Stats)
	require.Positive(t, changed.Stats.NewChunks)

	// The same bytes under another account's key share no chunk.
	other := newRepoAt(t, blobs, "acc_other/repo/", dataKey(t))
	_, om, err := other.BackupDirectory(ctx, src, nil)
	require.NoError(t, err)
	ids := map[repo.ID]bool{}
	for _, n := range first.Nodes {
		for _, c := range n.Chunks {
			ids[c] = true
		}
	}
	for _, n := range om.Nodes {
		for _, c := range n.Chunks {
			require.False(t, ids[c], "chunk ids are keyed per account")
		}
	}
}

// TestNothingIsReadableWithoutTheKey: no stored object holds the
// plaintext; another key cannot open the repository; a flipped byte in a
// pack fails the restore instead of restoring wrong bytes.
func TestNothingIsReadableWithoutTheKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := t.TempDir()
	tree(t, src, 3)
	dir := t.TempDir()
	blobs, err := blob.NewLocal(dir)
	require.NoError(t, err)
	key := dataKey(t)
	r := newRepo(t, blobs, key)
	id, _, err := r.BackupDirectory(ctx, src, nil)
	require.NoError(t, err)

	var packs []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		for _, s := range []string{"SECRET-MARKER", "line of text", "README.md", "nested"} {
			require.False(t, bytes.Contains(b, []byte(s)), "%s holds %q", p, s)
		}
		if strings.Contains(p, "/packs/") {
			packs = append(packs, p)
		}
		return nil
	}))

	k, err := repo.NewKey(dataKey(t))
	require.NoError(t, err)
	other, err := repo.Open(ctx, blobs, "acc_test/repo/", k)
	require.NoError(t, err, "a repository with unreadable indexes still opens, to say what is damaged")
	require.NotEmpty(t, other.Damaged, "another key reads no index")
	require.Zero(t, other.Chunks())
	_, err = other.LoadManifest(ctx, id)
	require.ErrorIs(t, err, repo.ErrIntegrity, "another key opens no manifest")

	require.NotEmpty(t, packs)
	b, err := os.ReadFile(packs[0])
	require.NoError(t, err)
	b[20] ^= 0xFF // inside the pack's first chunk (its header is at the end)
	require.NoError(t, os.WriteFile(packs[0], b, 0o600))
	m, err := newRepo(t, blobs, key).LoadManifest(ctx, id)
	require.NoError(t, err)
	_, _, err = newRepo(t, blobs, key).Restore(ctx, m, t.TempDir(), nil)
	require.ErrorIs(t, err, repo.ErrIntegrity)
}

// TestADumpThatChangedALittleStoresALittle: a database dump backed up as
// a stream, then again with a few rows changed, stores a fraction of it
// the second time, and restores exactly.
func TestADumpThatChangedALittleStoresALittle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var dump bytes.Buffer
	rng := rand.New(rand.NewPCG(4, 4))
	for i := range 200000 {
		fmt.Fprintf(&dump, "INSERT INTO orders VALUES (%d, 'cus_%016x', %d, '%s');\n", i, rng.Uint64(), rng.IntN(100000), strings.Repeat("x", rng.IntN(40)))
	}
	blobs, err := blob.NewLocal(t.TempDir())
	require.NoError(t, err)
	r := newRepo(t, blobs, fixedKey(4))
	_, first, err := r.BackupStream(ctx, "orders.sql", bytes.NewReader(dump.Bytes()))
	require.NoError(t, err)
	changed := bytes.Replace(dump.Bytes(), []byte("INSERT INTO orders VALUES (100000,"), []byte("INSERT INTO orders VALUES (100000, 'changed',"), 1)
	require.NotEqual(t, dump.Bytes(), changed)
	id, second, err := r.BackupStream(ctx, "orders.sql", bytes.NewReader(changed))
	require.NoError(t, err)
	require.Less(t, second.Stats.NewChunks, first.Stats.NewChunks, "%+v vs %+v", second.Stats, first.Stats)
	require.Less(t, second.Stats.StoredBytes*3, first.Stats.StoredBytes, "a few changed rows store a fraction")

	m, err := r.LoadManifest(ctx, id)
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, r.WriteFile(ctx, &out, m.Nodes[0]))
	require.Equal(t, changed, out.Bytes())
	_, _ = io.Copy(io.Discard, &out)
}

// failingPack is a blob store that cannot store a third pack.
type failingPack struct {
	blob.Store
	packs atomic.Int64
}

var errPackDown = fmt.Errorf("pack store down")

func (f *failingPack) Put(ctx context.Context, key string, r io.Reader) (int64, string, error) {
	if strings.Contains(key, "/packs/") && f.packs.Add(1) == 3 {
		return 0, "", errPackDown
	}
	return f.Store.Put(ctx, key, r)
}

// TestABackupThatFailsLeavesNoPacks: the packs a failed backup stored
// before it began storing its index are deleted again: nothing else can
// use them. (Once it began, the index may be stored though its Put
// failed, and the packs stay for the prune to judge.)
func TestABackupThatFailsLeavesNoPacks(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	tree(t, src, 5)
	local, err := blob.NewLocal(t.TempDir())
	require.NoError(t, err)
	r := newRepo(t, &failingPack{Store: local}, dataKey(t))
	_, _, err = r.BackupDirectory(t.Context(), src, nil)
	require.ErrorIs(t, err, errPackDown)
	left, err := local.List(t.Context(), "")
	require.NoError(t, err)
	require.Empty(t, left)
}

// TestARestoreGrantsNoSetuidAndKeepsTheTargetsMode: a setuid program
// comes back without its setuid bit (restored by Levqor, it would run
// with the restoring user's rights), and the target directory keeps its
// own mode.
func TestARestoreGrantsNoSetuidAndKeepsTheTargetsMode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := t.TempDir()
	p := filepath.Join(src, "tool")
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755))
	require.NoError(t, os.Chmod(p, 0o755|os.ModeSetuid))
	require.NoError(t, os.Mkdir(filepath.Join(src, "shared"), 0o755))
	require.NoError(t, os.Chmod(filepath.Join(src, "shared"), 0o775|os.ModeSetgid))
	require.NoError(t, os.Chmod(src, 0o777))
	blobs, err := blob.NewLocal(t.TempDir())
	require.NoError(t, err)
	r := newRepo(t, blobs, fixedKey(3))
	_, m, err := r.BackupDirectory(ctx, src, nil)
	require.NoError(t, err)

	target := t.TempDir()
	require.NoError(t, os.Chmod(target, 0o750))
	_, _, err = r.Restore(ctx, m, target, nil)
	require.NoError(t, err)
	fi, err := os.Stat(filepath.Join(target, "tool"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o755), fi.Mode(), "no setuid bit")
	fi, err = os.Stat(filepath.Join(target, "shared"))
	require.NoError(t, err)
	require.Equal(t, os.ModeDir|0o775, fi.Mode(), "no setgid bit")
	fi, err = os.Stat(target)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o750), fi.Mode().Perm(), "the target keeps its mode")
}

// counting is a blob store that counts the bytes read from packs.
type counting struct {
	blob.Store
	packBytes atomic.Int64
}

type countedReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countedReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *counting) wrap(key string, rc io.ReadCloser, err error) (io.ReadCloser, error) {
	if err != nil || !strings.Contains(key, "/packs/") {
		return rc, err
	}
	return countedReader{rc, &c.packBytes}, nil
}

func (c *counting) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := c.Store.Get(ctx, key)
	return c.wrap(key, rc, err)
}

func (c *counting) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	rc, err := c.Store.GetRange(ctx, key, off, n)
	return c.wrap(key, rc, err)
}

// TestRestoringOneFileReadsOnlyItsChunks: from a snapshot of 10,000
// files, restoring one reads that file's chunks from the packs and
// nothing else of them.
func TestRestoringOneFileReadsOnlyItsChunks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := t.TempDir()
	for i := range 10_000 {
		dir := filepath.Join(src, fmt.Sprintf("d%02d", i/100))
		require.NoError(t, os.MkdirAll(dir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d.txt", i)), fmt.Appendf(nil, "file %d: %s\n", i, strings.Repeat("x", i%300)), 0o644))
	}
	blobs, err := blob.NewLocal(t.TempDir())
	require.NoError(t, err)
	_, m, err := newRepo(t, blobs, fixedKey(6)).BackupDirectory(ctx, src, nil)
	require.NoError(t, err)
	require.Equal(t, 10_000, m.Stats.Files)

	c := &counting{Store: blobs}
	r := newRepo(t, c, fixedKey(6))
	one := "d42/f04217.txt"
	n, ok := m.Find(one)
	require.True(t, ok)
	target := t.TempDir()
	files, size, err := r.Restore(ctx, m, target, func(x repo.Node) bool { return x.Path == one || x.Path == "d42" })
	require.NoError(t, err)
	require.Equal(t, 1, files)
	require.Equal(t, n.Size, size)
	b, err := os.ReadFile(filepath.Join(target, "d42", "f04217.txt"))
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("file 4217: %s\n", strings.Repeat("x", 4217%300)), string(b))
	require.Len(t, n.Chunks, 1)
	require.Less(t, c.packBytes.Load(), int64(1024), "one small chunk read, sealed: %d bytes of the packs", c.packBytes.Load())
	require.Positive(t, c.packBytes.Load())
	require.Greater(t, m.Stats.StoredBytes, int64(100<<10), "the packs hold far more")
}

// TestAStreamThatFailsMidwayReturnsAtOnce: when storing fails while the
// stream's next chunk is being cut from a pipe whose writer has not
// finished, the backup returns its error without waiting for the pipe.
// (With this data and key, the first pack is stored, and fails, while the
// cutting goroutine waits for bytes the writer holds back: a backup that
// waited for that goroutine would never return.)
func TestAStreamThatFailsMidwayReturnsAtOnce(t *testing.T) {
	t.Parallel()
	blobs, err := blob.NewLocal(t.TempDir())
	require.NoError(t, err)
	r := newRepo(t, &failAt{Store: blobs, n: 1}, fixedKey(2))
	pr, pw := io.Pipe()
	release := make(chan struct{})
	go func() {
		_, _ = pw.Write(random(11, 9<<20))
		<-release // the writer is not done: the reader would block
		_ = pw.Close()
	}()
	done := make(chan error, 1)
	go func() {
		_, _, err := r.BackupStream(context.Background(), "dump", pr)
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, errInjected)
	case <-time.After(10 * time.Second):
		t.Fatal("the backup waited for a stream it no longer reads")
	}
	close(release)
}

// TestAFileThatGrowsWhileReadIsStoredAsListed: bytes appended while a
// file is read are left for the next run; the snapshot holds the file as
// it was listed and restores and checks whole.
func TestAFileThatGrowsWhileReadIsStoredAsListed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := t.TempDir()
	log := filepath.Join(src, "app.log")
	first := random(21, 3<<20)
	require.NoError(t, os.WriteFile(log, first, 0o644))
	blobs, err := blob.NewLocal(t.TempDir())
	require.NoError(t, err)
	r := newRepo(t, blobs, fixedKey(12))
	var once sync.Once
	r.Progress = func(int64) {
		once.Do(func() {
			f, err := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.Write(random(22, 2<<20))
			require.NoError(t, err)
			require.NoError(t, f.Close())
		})
	}
	_, m, err := r.BackupDirectory(ctx, src, nil)
	require.NoError(t, err)
	require.Equal(t, int64(len(first)), m.Nodes[0].Size)
	_, n, err := newRepo(t, blobs, fixedKey(12)).Check(ctx, m)
	require.NoError(t, err, "the snapshot is whole")
	require.Equal(t, int64(len(first)), n)
	var out bytes.Buffer
	require.NoError(t, newRepo(t, blobs, fixedKey(12)).WriteFile(ctx, &out, m.Nodes[0]))
	require.Equal(t, first, out.Bytes())
}

// TestADirectorySwappedForALinkOutsideIsNotFollowed: a directory of the
// source replaced, mid-backup, by a symbolic link to a directory outside
// it stops the backup; nothing outside is read.
func TestADirectorySwappedForALinkOutsideIsNotFollowed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, outside := t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "a.bin"), random(23, 2<<20), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(src, "b"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "b", "mine.txt"), []byte("mine"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret.txt"), []byte("MASTER-KEY"), 0o600))
	blobs, err := blob.NewLocal(t.TempDir())
	require.NoError(t, err)
	r := newRepo(t, blobs, fixedKey(13))
	var once sync.Once
	r.Progress = func(int64) {
		once.Do(func() { // a.bin is being read: b is listed, not yet entered
			require.NoError(t, os.Rename(filepath.Join(src, "b"), filepath.Join(src, "b.old")))
			require.NoError(t, os.Symlink(outside, filepath.Join(src, "b")))
		})
	}
	_, m, err := r.BackupDirectory(ctx, src, nil)
	require.Error(t, err, "the walk does not leave the source")
	require.Nil(t, m)
}
