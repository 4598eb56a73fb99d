package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testCtx is a context that ends with the test.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// randomBytes returns n pseudo-random bytes from seed.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// treeSpec lists what makeTree creates, so tests can refer to it.
const (
	sparseName = "big-sparse.img"
	sparseSize = 24 << 20
)

// makeTree builds, under a fresh directory, a tree holding what a backup
// meets in the wild: nested and empty directories, empty files, files
// around the chunk size, a large sparse file, unusual names, symlinks of
// every sort, assorted modes and distinct modification times with
// nanoseconds. It returns the tree's root.
func makeTree(t testing.TB) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "src")
	mk := func(p string) {
		require.NoError(t, os.MkdirAll(filepath.Join(root, p), 0o755))
	}
	write := func(p string, data []byte, mode fs.FileMode) {
		full := filepath.Join(root, p)
		require.NoError(t, os.WriteFile(full, data, 0o600))
		require.NoError(t, os.Chmod(full, mode))
	}
	link := func(target, p string) {
		require.NoError(t, os.Symlink(target, filepath.Join(root, p)))
	}
	mk("a/b/c")
	mk("empty-dir")
	mk("ro-dir")
	mk("setgid-dir")
	mk("deep/1/2/3/4/5/6/7/8")
	write("a/b/c/deep.txt", randomBytes(1, 1000), 0o644)
	write("deep/1/2/3/4/5/6/7/8/leaf", []byte("leaf\n"), 0o640)
	write("empty.txt", nil, 0o644)
	write("a/exactly-chunk.bin", randomBytes(2, writeChunk), 0o644)
	write("a/chunk-plus-one.bin", randomBytes(3, writeChunk+1), 0o644)
	write("a/zeros-then-data.bin", append(make([]byte, 3*writeChunk), randomBytes(4, 100)...), 0o644)
	write("with space.txt", []byte("spaces"), 0o644)
	write("ünïcødé-文件.txt", []byte("unicode"), 0o644)
	write("-leading-dash", []byte("dash"), 0o644)
	write("--", []byte("double dash"), 0o644)
	write("new\nline", []byte("newline"), 0o644)
	write("tab\tname", []byte("tab"), 0o644)
	write(`back\slash`, []byte("backslash"), 0o644)
	write("bad\xffutf8", []byte("not utf-8"), 0o644)
	write("a-b", []byte("sorts between a and a/…"), 0o644)
	write(".hidden", []byte("hidden"), 0o600)
	write("exec.sh", []byte("#!/bin/sh\necho hi\n"), 0o755)
	write("private", []byte("secret"), 0o600)
	write("readonly", []byte("read only"), 0o444)
	write("setuid", []byte("setuid"), 0o755|fs.ModeSetuid)
	write("ro-dir/inside", []byte("inside a read-only directory"), 0o644)
	link("a/b/c/deep.txt", "link-rel")
	link("/etc/hostname", "link-abs")
	link("does/not/exist", "link-dangling")
	link("../empty.txt", "a/link-up")
	link("a", "link-dir")
	link("bad\xfftarget", "link-bad-utf8")

	// A large file that is mostly holes, with data at its start, middle
	// and end.
	f, err := os.Create(filepath.Join(root, sparseName))
	require.NoError(t, err)
	require.NoError(t, f.Truncate(sparseSize))
	for i, off := range []int64{0, sparseSize/2 + 12345, sparseSize - 777} {
		_, err := f.WriteAt(randomBytes(uint64(10+i), 777), off)
		require.NoError(t, err)
	}
	require.NoError(t, f.Close())

	// Modes of directories and distinct times everywhere, deepest first.
	var paths []string
	require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	}))
	sort.Sort(sort.Reverse(sort.StringSlice(paths)))
	base := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	for i, p := range paths {
		fi, err := os.Lstat(p)
		require.NoError(t, err)
		if fi.Mode()&fs.ModeSymlink != 0 {
			continue
		}
		mt := base.Add(time.Duration(i)*time.Hour + time.Duration(i*7919+1)*time.Nanosecond)
		require.NoError(t, os.Chtimes(p, mt, mt))
	}
	require.NoError(t, os.Chmod(filepath.Join(root, "setgid-dir"), 0o2775|fs.ModeSetgid))
	require.NoError(t, os.Chmod(filepath.Join(root, "ro-dir"), 0o555))
	return root
}

// snapshotTree describes every entry under root: type, mode, size,
// mtime (not for symlinks), content hash and link target.
func snapshotTree(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, err := filepath.Rel(root, p)
		require.NoError(t, err)
		fi, err := os.Lstat(p)
		require.NoError(t, err)
		desc := fi.Mode().String()
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			require.NoError(t, err)
			desc += " -> " + target
		case fi.IsDir():
			desc += " mtime=" + fi.ModTime().UTC().Format(time.RFC3339Nano)
		default:
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			sum := sha256.Sum256(data)
			desc += " size=" + itoa(fi.Size()) + " sha256=" + hex.EncodeToString(sum[:]) +
				" mtime=" + fi.ModTime().UTC().Format(time.RFC3339Nano)
		}
		out[rel] = desc
		return nil
	}))
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// writeDir archives root into memory.
func writeDir(t testing.TB, root string) ([]byte, Manifest) {
	t.Helper()
	var buf bytes.Buffer
	m, err := WriteDirectory(testCtx(t), &buf, root, nil)
	require.NoError(t, err)
	return buf.Bytes(), m
}

// listAll returns every path under dir, relative, sorted.
func listAll(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	}))
	return out
}

// crafter builds archives by hand, for the malformed and hostile streams
// WriteDirectory would never produce.
type crafter struct {
	t       testing.TB
	buf     bytes.Buffer
	sw      *streamWriter
	entries int64
	files   int64
	bytes   int64
}

func newCrafter(t testing.TB, kind string) *crafter {
	c := &crafter{t: t}
	sw, err := newStreamWriter(&c.buf, kind, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC))
	require.NoError(t, err)
	c.sw = sw
	return c
}

func (c *crafter) entry(rec entryRecord) *crafter {
	if rec.ModTime.IsZero() {
		rec.ModTime = time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	require.NoError(c.t, c.sw.writeJSON(recEntry, rec))
	c.entries++
	return c
}

func (c *crafter) dir(p string) *crafter {
	return c.entry(entryRecord{Path: p, Type: TypeDir, Mode: uint32(fs.ModeDir | 0o755)})
}

func (c *crafter) symlink(p, target string) *crafter {
	return c.entry(entryRecord{Path: p, Type: TypeSymlink, Mode: uint32(fs.ModeSymlink | 0o777), Link: target})
}

// file writes a file entry with content data and the sum of sumOf.
func (c *crafter) file(p string, data, sumOf []byte) *crafter {
	c.entry(entryRecord{Path: p, Type: TypeFile, Mode: 0o644, Size: int64(len(data))})
	require.NoError(c.t, c.sw.data(data))
	sum := sha256.Sum256(sumOf)
	require.NoError(c.t, c.sw.record(recSum, sum[:]))
	c.files++
	c.bytes += int64(len(data))
	return c
}

// dump writes a postgres archive's dump and closes the archive.
func (c *crafter) dump(data []byte) []byte {
	require.NoError(c.t, c.sw.data(data))
	sum := sha256.Sum256(data)
	require.NoError(c.t, c.sw.record(recSum, sum[:]))
	require.NoError(c.t, c.sw.finish(trailer{Files: 1, SourceBytes: int64(len(data))}))
	return c.buf.Bytes()
}

// done closes the archive with a trailer that agrees with what was
// written.
func (c *crafter) done() []byte {
	require.NoError(c.t, c.sw.finish(trailer{Entries: c.entries, Files: c.files, SourceBytes: c.bytes}))
	return c.buf.Bytes()
}

// countingWriter counts bytes and throws them away.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

var _ io.Writer = (*countingWriter)(nil)
