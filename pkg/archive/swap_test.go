package archive

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// These tests set package hooks, so they must not run in parallel with
// others: top-level tests without t.Parallel finish before any parallel
// one resumes.

// swapOnce installs a testHookBeforeOpen that runs swap the first time
// the walk is about to open rel.
func swapOnce(t *testing.T, rel string, swap func()) {
	t.Helper()
	done := false
	testHookBeforeOpen = func(got string) {
		if got == rel && !done {
			done = true
			swap()
		}
	}
	t.Cleanup(func() {
		testHookBeforeOpen = nil
		require.True(t, done, "the walk never reached %q", rel)
	})
}

// swapSetup is a source tree and, beside it, a directory holding a
// secret that must never reach the source's archive.
type swapSetup struct {
	src, outside string
	secret       []byte
}

func newSwapSetup(t *testing.T) swapSetup {
	t.Helper()
	base := t.TempDir()
	s := swapSetup{
		src:     filepath.Join(base, "src"),
		outside: filepath.Join(base, "blobs"),
		secret:  randomBytes(7, 1<<20),
	}
	require.NoError(t, os.MkdirAll(filepath.Join(s.src, "sub"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(s.src, "other"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(s.src, "a.txt"), []byte("a"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(s.src, "sub", "inner"), []byte("inner"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(s.src, "other", "inner"), []byte("other inner"), 0o644))
	require.NoError(t, os.Mkdir(s.outside, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(s.outside, "inner"), s.secret, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(s.outside, "secret"), s.secret, 0o600))
	return s
}

// write archives the source and returns the archive, its manifest, the
// most bytes the progress ever reported read, and the error.
func (s swapSetup) write(t *testing.T) ([]byte, Manifest, int64, error) {
	t.Helper()
	var buf bytes.Buffer
	var read int64
	m, err := WriteDirectory(testCtx(t), &buf, s.src, func(done int64) { read = max(read, done) })
	return buf.Bytes(), m, read, err
}

// replaceWithSymlink moves path aside and puts a symlink to target there.
func replaceWithSymlink(t *testing.T, path, target string) {
	t.Helper()
	require.NoError(t, os.Rename(path, path+".moved"))
	require.NoError(t, os.Symlink(target, path))
}

func TestWriteDirectoryEntrySwappedDuringTheWalk(t *testing.T) {
	t.Run("DirectoryBecomesSymlinkOutOfTheSource", func(t *testing.T) {
		s := newSwapSetup(t)
		swapOnce(t, "sub", func() { replaceWithSymlink(t, filepath.Join(s.src, "sub"), s.outside) })
		_, _, read, err := s.write(t)
		require.ErrorIs(t, err, ErrSourceChanged)
		require.ErrorContains(t, err, `"sub"`)
		require.Less(t, read, int64(len(s.secret)), "the outside files were read")
	})

	t.Run("DirectoryBecomesSymlinkWithinTheSource", func(t *testing.T) {
		s := newSwapSetup(t)
		swapOnce(t, "sub", func() { replaceWithSymlink(t, filepath.Join(s.src, "sub"), "other") })
		_, _, _, err := s.write(t)
		require.ErrorIs(t, err, ErrSourceChanged)
		require.ErrorContains(t, err, `"sub"`)
	})

	t.Run("FileBecomesSymlinkOutOfTheSource", func(t *testing.T) {
		s := newSwapSetup(t)
		swapOnce(t, "a.txt", func() {
			replaceWithSymlink(t, filepath.Join(s.src, "a.txt"), filepath.Join(s.outside, "secret"))
		})
		_, _, read, err := s.write(t)
		require.ErrorIs(t, err, ErrSourceChanged)
		require.ErrorContains(t, err, `"a.txt"`)
		require.Less(t, read, int64(len(s.secret)), "the outside file was read")
	})

	t.Run("FileBecomesNamedPipe", func(t *testing.T) {
		s := newSwapSetup(t)
		swapOnce(t, "a.txt", func() {
			p := filepath.Join(s.src, "a.txt")
			require.NoError(t, os.Remove(p))
			require.NoError(t, syscall.Mkfifo(p, 0o644))
		})
		// Opening a pipe for reading would wait for a writer forever.
		done := make(chan error, 1)
		go func() {
			_, err := WriteDirectory(testCtx(t), io.Discard, s.src, nil)
			done <- err
		}()
		select {
		case err := <-done:
			require.ErrorIs(t, err, ErrSourceChanged)
		case <-time.After(10 * time.Second):
			// Unblock the walk so the test can end.
			f, err := os.OpenFile(filepath.Join(s.src, "a.txt"), os.O_WRONLY, 0)
			if err == nil {
				_ = f.Close()
			}
			<-done
			t.Fatal("the backup waited on a named pipe swapped in for a file")
		}
	})

	t.Run("ParentBecomesSymlinkAfterItWasOpened", func(t *testing.T) {
		s := newSwapSetup(t)
		swapOnce(t, "sub/inner", func() { replaceWithSymlink(t, filepath.Join(s.src, "sub"), s.outside) })
		archive, m, read, err := s.write(t)
		// The walk holds sub open: it reads the file it listed, never the
		// one the new symlink leads to.
		require.NoError(t, err)
		require.Less(t, read, int64(len(s.secret)), "the outside file was read")
		var paths []string
		for _, e := range m.Files {
			paths = append(paths, e.Path)
		}
		require.Equal(t, []string{".", "a.txt", "other", "other/inner", "sub", "sub/inner"}, paths)

		target := filepath.Join(t.TempDir(), "restored")
		_, err = RestoreDirectory(testCtx(t), bytes.NewReader(archive), target, RestoreOptions{})
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(target, "sub", "inner"))
		require.NoError(t, err)
		require.Equal(t, "inner", string(got))
	})

	t.Run("DirectoryVanishesBeforeItIsOpened", func(t *testing.T) {
		s := newSwapSetup(t)
		swapOnce(t, "sub", func() { require.NoError(t, os.RemoveAll(filepath.Join(s.src, "sub"))) })
		_, m, _, err := s.write(t)
		require.NoError(t, err)
		for _, e := range m.Files {
			require.NotContains(t, e.Path, "sub", "a vanished directory is left out")
		}
	})
}

func TestRestoreTargetSwappedForSymlink(t *testing.T) {
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte("restored"), 0o644))
	archive, _ := writeDir(t, src)

	for name, existing := range map[string]bool{"CreatedTarget": false, "ExistingTarget": true} {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			target := filepath.Join(base, "target")
			elsewhere := filepath.Join(base, "elsewhere")
			require.NoError(t, os.Mkdir(elsewhere, 0o755))
			if existing {
				require.NoError(t, os.Mkdir(target, 0o755))
			}
			swapped := false
			testHookBeforeOpenTarget = func(string) {
				swapped = true
				replaceWithSymlink(t, target, elsewhere)
			}
			t.Cleanup(func() { testHookBeforeOpenTarget = nil })

			_, err := RestoreDirectory(testCtx(t), bytes.NewReader(archive), target, RestoreOptions{})
			require.True(t, swapped)
			require.ErrorContains(t, err, "was replaced")
			require.Empty(t, listAll(t, elsewhere), "the restore wrote through the swapped-in symlink")
			require.Empty(t, listAll(t, target+".moved"), "the restore wrote into the target after refusing it")
		})
	}
}
