package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDirectoryRoundTrip(t *testing.T) {
	t.Parallel()
	src := makeTree(t)
	want := snapshotTree(t, src)

	var reports []int64
	var buf bytes.Buffer
	m, err := WriteDirectory(testCtx(t), &buf, src, func(done int64) { reports = append(reports, done) })
	require.NoError(t, err)
	archive := buf.Bytes()

	t.Run("ManifestDescribesTheTree", func(t *testing.T) {
		require.Equal(t, KindDirectory, m.Kind)
		require.Equal(t, ".", m.Files[0].Path)
		require.Len(t, m.Files, len(want), "one manifest entry per tree entry")
		var total int64
		byPath := map[string]FileEntry{}
		for _, e := range m.Files {
			byPath[e.Path] = e
			total += e.Size
		}
		require.Equal(t, total, m.SourceBytes)
		sparse := byPath[sparseName]
		require.Equal(t, int64(sparseSize), sparse.Size)
		require.Len(t, sparse.SHA256, 64)
		require.Equal(t, "a/b/c/deep.txt", byPath["link-rel"].Link)
		require.Equal(t, "bad\xfftarget", byPath["link-bad-utf8"].Link)
		require.Contains(t, byPath, "bad\xffutf8")
		require.Equal(t, fs.FileMode(0o755)|fs.ModeSetuid, fs.FileMode(byPath["setuid"].Mode))
		require.Empty(t, m.Skipped)
		// The big file is mostly zeros and compresses to a fraction.
		require.Less(t, int64(len(archive)), m.SourceBytes/4)
	})

	t.Run("ProgressCountsUpToTheTotal", func(t *testing.T) {
		require.NotEmpty(t, reports)
		for i := 1; i < len(reports); i++ {
			require.GreaterOrEqual(t, reports[i], reports[i-1])
		}
		require.Equal(t, m.SourceBytes, reports[len(reports)-1])
		// Paced by the MiB, not called per chunk.
		require.LessOrEqual(t, len(reports), int(m.SourceBytes/progressBytes)+2)
	})

	t.Run("VerifyRebuildsTheSameManifest", func(t *testing.T) {
		vm, stats, err := Verify(testCtx(t), bytes.NewReader(archive))
		require.NoError(t, err)
		require.Equal(t, m, vm)
		var files int
		for _, e := range m.Files {
			if e.Type == TypeFile {
				files++
			}
		}
		require.Equal(t, Stats{Files: files, Bytes: m.SourceBytes}, stats)
	})

	t.Run("RestoreReproducesEveryByteModeAndTime", func(t *testing.T) {
		target := filepath.Join(t.TempDir(), "restored")
		var last int64
		stats, err := RestoreDirectory(testCtx(t), bytes.NewReader(archive), target,
			RestoreOptions{Progress: func(done int64) { last = done }})
		require.NoError(t, err)
		require.Equal(t, m.SourceBytes, stats.Bytes)
		require.Equal(t, m.SourceBytes, last)
		got := snapshotTree(t, target)
		require.Equal(t, restorable(want), withoutRoot(got))
		require.True(t, strings.HasPrefix(got["setuid"], "-rwxr-xr-x "), "no setuid bit is restored: %s", got["setuid"])

		// The sparse file came back sparse.
		fi, err := os.Stat(filepath.Join(target, sparseName))
		require.NoError(t, err)
		st := fi.Sys().(*syscall.Stat_t)
		require.Less(t, st.Blocks*512, int64(sparseSize/4), "restored sparse file allocates %d bytes", st.Blocks*512)
	})

	t.Run("RestoreIntoExistingEmptyDirectory", func(t *testing.T) {
		target := t.TempDir()
		require.NoError(t, os.Chmod(target, 0o750))
		_, err := RestoreDirectory(testCtx(t), bytes.NewReader(archive), target, RestoreOptions{})
		require.NoError(t, err)
		require.Equal(t, restorable(want), withoutRoot(snapshotTree(t, target)))
		fi, err := os.Stat(target)
		require.NoError(t, err)
		require.Equal(t, fs.FileMode(0o750), fi.Mode().Perm(), "the target directory keeps its own mode")
	})
}

func TestCorruptArchive(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "d"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "d", "data.bin"), randomBytes(7, 300<<10), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "small"), []byte("small file"), 0o644))
	archive, _ := writeDir(t, src)

	t.Run("FlippedByteInTheMiddle", func(t *testing.T) {
		bad := bytes.Clone(archive)
		bad[len(bad)/2] ^= 0x01
		_, _, err := Verify(testCtx(t), bytes.NewReader(bad))
		require.ErrorIs(t, err, ErrCorrupt)

		target := filepath.Join(t.TempDir(), "t")
		require.NoError(t, os.Mkdir(target, 0o755))
		_, err = RestoreDirectory(testCtx(t), bytes.NewReader(bad), target, RestoreOptions{})
		require.ErrorIs(t, err, ErrCorrupt)
		require.Empty(t, listAll(t, target), "a failed restore leaves the empty target empty")
	})

	t.Run("EveryFlippedByteIsCaught", func(t *testing.T) {
		for i := HeaderSize; i < len(archive); i += 1 + len(archive)/300 {
			bad := bytes.Clone(archive)
			bad[i] ^= 0x40
			_, _, err := Verify(testCtx(t), bytes.NewReader(bad))
			require.ErrorIs(t, err, ErrCorrupt, "byte %d of %d flipped", i, len(archive))
		}
	})

	t.Run("TruncatedAnywhere", func(t *testing.T) {
		for n := 0; n < len(archive); n += 1 + len(archive)/100 {
			_, _, err := Verify(testCtx(t), bytes.NewReader(archive[:n]))
			require.ErrorIs(t, err, ErrCorrupt, "truncated to %d of %d bytes", n, len(archive))
		}
		_, _, err := Verify(testCtx(t), bytes.NewReader(archive[:len(archive)-1]))
		require.ErrorIs(t, err, ErrCorrupt)
	})

	t.Run("TrailingBytes", func(t *testing.T) {
		_, _, err := Verify(testCtx(t), bytes.NewReader(append(bytes.Clone(archive), 0)))
		require.ErrorIs(t, err, ErrCorrupt)
	})

	t.Run("NotAnArchive", func(t *testing.T) {
		_, _, err := Verify(testCtx(t), strings.NewReader("PGDMP this is something else"))
		require.ErrorIs(t, err, ErrCorrupt)
	})

	t.Run("NewerFormatIsNotCorrupt", func(t *testing.T) {
		newer := bytes.Clone(archive)
		newer[6] = formatVersion + 1
		_, _, err := Verify(testCtx(t), bytes.NewReader(newer))
		require.ErrorIs(t, err, ErrUnsupportedFormat)
		require.NotErrorIs(t, err, ErrCorrupt)
	})

	t.Run("ReaderFailureIsNotCorrupt", func(t *testing.T) {
		boom := errors.New("disk on fire")
		r := io.MultiReader(bytes.NewReader(archive[:len(archive)/2]), &failingReader{err: boom})
		_, _, err := Verify(testCtx(t), r)
		require.ErrorIs(t, err, boom)
		require.NotErrorIs(t, err, ErrCorrupt)
	})
}

type failingReader struct{ err error }

func (f *failingReader) Read([]byte) (int, error) { return 0, f.err }

// A file whose bytes do not match its checksum (with a stream that is
// otherwise intact, so only the file's own sum can tell) is never left
// under its name, and a file it would have replaced keeps its contents.
func TestRestoreChecksumMismatchLeavesNoFile(t *testing.T) {
	t.Parallel()
	bad := newCrafter(t, KindDirectory).
		dir(".").
		file("good", []byte("good bytes"), []byte("good bytes")).
		file("tampered", randomBytes(1, 600<<10), []byte("something else")).
		done()

	_, _, err := Verify(testCtx(t), bytes.NewReader(bad))
	require.ErrorIs(t, err, ErrCorrupt)
	require.Contains(t, err.Error(), "tampered")

	t.Run("EmptyTarget", func(t *testing.T) {
		target := filepath.Join(t.TempDir(), "new")
		_, err := RestoreDirectory(testCtx(t), bytes.NewReader(bad), target, RestoreOptions{})
		require.ErrorIs(t, err, ErrCorrupt)
		require.NoDirExists(t, target, "a target the restore created is removed again")
	})

	t.Run("OverwriteKeepsTheOldFile", func(t *testing.T) {
		target := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(target, "tampered"), []byte("old contents"), 0o644))
		_, err := RestoreDirectory(testCtx(t), bytes.NewReader(bad), target, RestoreOptions{Overwrite: true})
		require.ErrorIs(t, err, ErrCorrupt)
		data, err := os.ReadFile(filepath.Join(target, "tampered"))
		require.NoError(t, err)
		require.Equal(t, "old contents", string(data))
		for _, p := range listAll(t, target) {
			require.NotContains(t, p, restoreTempPrefix, "temporary file left behind")
		}
	})
}

func TestRestoreNonEmptyTarget(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "dir"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "dir", "f"), []byte("from the archive"), 0o640))
	require.NoError(t, os.WriteFile(filepath.Join(src, "top"), []byte("top from the archive"), 0o644))
	require.NoError(t, os.Symlink("top", filepath.Join(src, "ln")))
	archive, _ := writeDir(t, src)

	newTarget := func(t *testing.T) string {
		target := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(target, "mine"), []byte("keep me"), 0o600))
		require.NoError(t, os.WriteFile(filepath.Join(target, "top"), []byte("old top"), 0o600))
		require.NoError(t, os.Mkdir(filepath.Join(target, "ln"), 0o755)) // a directory where a symlink goes
		require.NoError(t, os.Symlink("/etc", filepath.Join(target, "dir")))
		return target
	}

	t.Run("Refused", func(t *testing.T) {
		target := newTarget(t)
		before := snapshotTree(t, target)
		_, err := RestoreDirectory(testCtx(t), bytes.NewReader(archive), target, RestoreOptions{})
		require.ErrorIs(t, err, ErrTargetNotEmpty)
		require.Equal(t, before, snapshotTree(t, target), "a refused restore changes nothing")
	})

	t.Run("TargetIsAFile", func(t *testing.T) {
		target := filepath.Join(t.TempDir(), "file")
		require.NoError(t, os.WriteFile(target, nil, 0o600))
		_, err := RestoreDirectory(testCtx(t), bytes.NewReader(archive), target, RestoreOptions{})
		require.ErrorContains(t, err, "not a directory")
	})

	t.Run("Overwrite", func(t *testing.T) {
		target := newTarget(t)
		_, err := RestoreDirectory(testCtx(t), bytes.NewReader(archive), target, RestoreOptions{Overwrite: true})
		require.NoError(t, err)
		got := snapshotTree(t, target)
		want := snapshotTree(t, src)
		delete(got, "mine")
		require.Equal(t, withoutRoot(want), withoutRoot(got), "archived entries replace what was there")
		data, err := os.ReadFile(filepath.Join(target, "mine"))
		require.NoError(t, err)
		require.Equal(t, "keep me", string(data), "other entries are kept")
		// The symlink to /etc that stood where a directory belongs was
		// replaced, not written through.
		_, err = os.Stat("/etc/f")
		require.ErrorIs(t, err, fs.ErrNotExist)
	})
}

// Archives crafted to write outside the target are refused, by Verify and
// by the restore, and nothing appears outside the target.
func TestRestoreRejectsUnsafeArchives(t *testing.T) {
	t.Parallel()
	cases := map[string]func(c *crafter){
		"DotDot":          func(c *crafter) { c.dir(".").file("../evil", []byte("x"), []byte("x")) },
		"DotDotInside":    func(c *crafter) { c.dir(".").dir("a").file("a/../../evil", []byte("x"), []byte("x")) },
		"Absolute":        func(c *crafter) { c.dir(".").file("/tmp/evil", []byte("x"), []byte("x")) },
		"DotComponent":    func(c *crafter) { c.dir(".").dir("a").file("a/./evil", []byte("x"), []byte("x")) },
		"EmptyComponent":  func(c *crafter) { c.dir(".").dir("a").file("a//evil", []byte("x"), []byte("x")) },
		"TrailingSlash":   func(c *crafter) { c.dir(".").dir("a/") },
		"ThroughSymlink":  func(c *crafter) { c.dir(".").symlink("link", "../outside").file("link/evil", []byte("x"), []byte("x")) },
		"ThroughAbsLink":  func(c *crafter) { c.dir(".").symlink("link", "/tmp").dir("link/evil") },
		"UnderAFile":      func(c *crafter) { c.dir(".").file("f", nil, nil).file("f/evil", []byte("x"), []byte("x")) },
		"MissingParent":   func(c *crafter) { c.dir(".").file("nodir/evil", []byte("x"), []byte("x")) },
		"Duplicate":       func(c *crafter) { c.dir(".").file("f", []byte("1"), []byte("1")).file("f", []byte("2"), []byte("2")) },
		"OutOfOrder":      func(c *crafter) { c.dir(".").file("b", nil, nil).file("a", nil, nil) },
		"NoRoot":          func(c *crafter) { c.file("f", nil, nil) },
		"RootTwice":       func(c *crafter) { c.dir(".").dir(".") },
		"RootIsFile":      func(c *crafter) { c.file(".", nil, nil) },
		"NulInName":       func(c *crafter) { c.dir(".").file("a\x00b", nil, nil) },
		"DirWithFileMode": func(c *crafter) { c.dir(".").entry(entryRecord{Path: "d", Type: TypeDir, Mode: 0o755}) },
		"DeviceMode": func(c *crafter) {
			c.dir(".").entry(entryRecord{Path: "dev", Type: TypeFile, Mode: uint32(fs.ModeDevice | 0o644)})
		},
		"UnknownType": func(c *crafter) { c.dir(".").entry(entryRecord{Path: "x", Type: "hardlink", Mode: 0o644}) },
		"EmptySymlink": func(c *crafter) {
			c.dir(".").entry(entryRecord{Path: "l", Type: TypeSymlink, Mode: uint32(fs.ModeSymlink)})
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := newCrafter(t, KindDirectory)
			build(c)
			archive := c.done()

			_, _, err := Verify(testCtx(t), bytes.NewReader(archive))
			require.ErrorIs(t, err, ErrCorrupt)

			outer := t.TempDir()
			target := filepath.Join(outer, "target")
			require.NoError(t, os.Mkdir(target, 0o755))
			_, err = RestoreDirectory(testCtx(t), bytes.NewReader(archive), target, RestoreOptions{})
			require.ErrorIs(t, err, ErrCorrupt)
			require.Equal(t, []string{"target"}, listAll(t, outer), "nothing written outside the target")
			require.Empty(t, listAll(t, target), "nothing left in the target")
			_, err = os.Lstat("/tmp/evil")
			require.ErrorIs(t, err, fs.ErrNotExist)
		})
	}
}

func TestWriteDirectoryWhileTheSourceChanges(t *testing.T) {
	t.Parallel()

	t.Run("FileGrowsWhileRead", func(t *testing.T) {
		src := t.TempDir()
		big := filepath.Join(src, "growing.log")
		require.NoError(t, os.WriteFile(big, randomBytes(1, 4<<20), 0o644))
		appended := false
		_, err := WriteDirectory(testCtx(t), io.Discard, src, func(int64) {
			if appended {
				return
			}
			appended = true
			f, err := os.OpenFile(big, os.O_APPEND|os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.WriteString("one more line\n")
			require.NoError(t, err)
			require.NoError(t, f.Close())
		})
		require.ErrorIs(t, err, ErrSourceChanged)
		require.ErrorContains(t, err, "growing.log")
	})

	t.Run("FileRewrittenInPlace", func(t *testing.T) {
		src := t.TempDir()
		big := filepath.Join(src, "db.file")
		require.NoError(t, os.WriteFile(big, randomBytes(1, 4<<20), 0o644))
		touched := false
		_, err := WriteDirectory(testCtx(t), io.Discard, src, func(int64) {
			if !touched {
				touched = true
				later := time.Now().Add(time.Hour)
				require.NoError(t, os.Chtimes(big, later, later))
			}
		})
		require.ErrorIs(t, err, ErrSourceChanged)
	})

	t.Run("FileVanishesBeforeItIsRead", func(t *testing.T) {
		src := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(src, "a-big"), randomBytes(1, 3<<20), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(src, "b-gone"), []byte("deleted during the backup"), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(src, "c-kept"), []byte("kept"), 0o644))
		var buf bytes.Buffer
		m, err := WriteDirectory(testCtx(t), &buf, src, func(int64) {
			_ = os.Remove(filepath.Join(src, "b-gone"))
		})
		require.NoError(t, err)
		var paths []string
		for _, e := range m.Files {
			paths = append(paths, e.Path)
		}
		require.Equal(t, []string{".", "a-big", "c-kept"}, paths)
		vm, _, err := Verify(testCtx(t), bytes.NewReader(buf.Bytes()))
		require.NoError(t, err)
		require.Equal(t, m, vm)
	})
}

func TestWriteDirectorySkipsSpecialFiles(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	require.NoError(t, syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "file"), []byte("x"), 0o644))
	archive, m := writeDir(t, src)
	require.Equal(t, []string{"fifo"}, m.Skipped)
	require.Len(t, m.Files, 2)
	target := filepath.Join(t.TempDir(), "t")
	_, err := RestoreDirectory(testCtx(t), bytes.NewReader(archive), target, RestoreOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{"file"}, listAll(t, target))
}

func TestWriteDirectoryBadSource(t *testing.T) {
	t.Parallel()
	_, err := WriteDirectory(testCtx(t), io.Discard, filepath.Join(t.TempDir(), "missing"), nil)
	require.ErrorIs(t, err, fs.ErrNotExist)
	f := filepath.Join(t.TempDir(), "plain")
	require.NoError(t, os.WriteFile(f, nil, 0o644))
	_, err = WriteDirectory(testCtx(t), io.Discard, f, nil)
	require.ErrorContains(t, err, "not a directory")
	_, err = WriteDirectory(testCtx(t), io.Discard, "", nil)
	require.Error(t, err)
}

func TestCancellationStopsPromptly(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "big"), randomBytes(5, 8<<20), 0o644))
	archive, _ := writeDir(t, src)

	t.Run("Write", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		w := &countingWriter{}
		_, err := WriteDirectory(ctx, w, src, func(int64) { cancel() })
		require.ErrorIs(t, err, context.Canceled)
		require.Less(t, w.n, int64(4<<20), "stopped soon after the cancel")
	})

	t.Run("Restore", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		target := filepath.Join(t.TempDir(), "t")
		_, err := RestoreDirectory(ctx, bytes.NewReader(archive), target,
			RestoreOptions{Progress: func(int64) { cancel() }})
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, ErrCorrupt)
		require.NoDirExists(t, target)
	})

	t.Run("Verify", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, _, err := Verify(ctx, bytes.NewReader(archive))
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, ErrCorrupt)
	})
}

func TestKinds(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644))
	dirArchive, _ := writeDir(t, src)
	pgArchive := newCrafter(t, KindPostgres).dump([]byte("PGDMP dump bytes"))

	kind, err := KindOf(bytes.NewReader(dirArchive))
	require.NoError(t, err)
	require.Equal(t, KindDirectory, kind)

	kind, rest, err := PeekKind(bytes.NewReader(pgArchive))
	require.NoError(t, err)
	require.Equal(t, KindPostgres, kind)
	// The returned reader still holds the whole stream.
	m, stats, err := Verify(testCtx(t), rest)
	require.NoError(t, err)
	require.Equal(t, int64(16), m.DumpSize)
	require.Equal(t, Stats{Files: 1, Bytes: 16}, stats)

	// A postgres stream must hold a dump, even an empty one's sum.
	_, _, err = Verify(testCtx(t), bytes.NewReader(newCrafter(t, KindPostgres).done()))
	require.ErrorIs(t, err, ErrCorrupt)

	_, err = KindOf(strings.NewReader("LVQ"))
	require.ErrorIs(t, err, ErrCorrupt)

	_, err = RestorePostgres(testCtx(t), bytes.NewReader(dirArchive), "dbname=nothing", RestoreOptions{})
	require.ErrorIs(t, err, ErrKindMismatch)
	_, err = RestoreDirectory(testCtx(t), bytes.NewReader(pgArchive), t.TempDir(), RestoreOptions{})
	require.ErrorIs(t, err, ErrKindMismatch)
}

func TestManifestJSONNames(t *testing.T) {
	t.Parallel()
	// The worker stores manifests as JSON; the names are part of that
	// contract.
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644))
	_, m := writeDir(t, src)
	b, err := json.Marshal(m)
	require.NoError(t, err)
	for _, key := range []string{`"kind":"directory"`, `"files":[`, `"source_bytes":1`, `"created_at":`, `"sha256":"2d711642`, `"mod_time":`} {
		assert.Contains(t, string(b), key)
	}
}

// restorable is tree as a restore brings it back: without its root (the
// target keeps its own mode and time) and without setuid or setgid bits.
func restorable(tree map[string]string) map[string]string {
	out := withoutRoot(tree)
	for p, desc := range out {
		mode, rest, _ := strings.Cut(desc, " ")
		kind := strings.NewReplacer("u", "", "g", "").Replace(mode[:len(mode)-9])
		if kind == "" {
			kind = "-"
		}
		out[p] = kind + mode[len(mode)-9:] + " " + rest
	}
	return out
}

func withoutRoot(tree map[string]string) map[string]string {
	out := maps.Clone(tree)
	delete(out, ".")
	return out
}
