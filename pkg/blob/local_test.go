package blob_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/blob/blobtest"
)

func TestLocalConformance(t *testing.T) {
	t.Parallel()
	s, err := blob.NewLocal(filepath.Join(t.TempDir(), "blobs"))
	require.NoError(t, err)
	blobtest.Run(t, s)
}

// TestLocalKeysCannotLeaveTheRoot tries every invalid key against a store
// whose root has a sibling directory an attacker would aim for, and checks
// that nothing outside the root was created, read or removed.
func TestLocalKeysCannotLeaveTheRoot(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	outside := filepath.Join(dir, "secret")
	require.NoError(t, os.WriteFile(outside, []byte("not a blob"), 0o600))
	s, err := blob.NewLocal(filepath.Join(dir, "blobs"))
	require.NoError(t, err)
	ctx := t.Context()

	for _, key := range append([]string{"../secret", "../escape", "x/../../secret"}, blobtest.InvalidKeys...) {
		_, _, err := s.Put(ctx, key, strings.NewReader("overwritten"))
		require.ErrorIs(t, err, blob.ErrInvalidKey, key)
		_, err = s.Get(ctx, key)
		require.ErrorIs(t, err, blob.ErrInvalidKey, key)
		require.ErrorIs(t, s.Delete(ctx, key), blob.ErrInvalidKey, key)
	}
	b, err := os.ReadFile(outside)
	require.NoError(t, err)
	require.Equal(t, "not a blob", string(b), "the file beside the store is untouched")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.ElementsMatch(t, []string{"blobs", "secret"}, names, "nothing was created beside the store")
}

// TestLocalDoesNotFollowLinks: a symbolic link someone placed in the store
// is not a blob, so neither Get nor Delete reaches what it points to.
func TestLocalDoesNotFollowLinks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	require.NoError(t, os.WriteFile(target, []byte("outside"), 0o600))
	s, err := blob.NewLocal(filepath.Join(dir, "blobs"))
	require.NoError(t, err)
	require.NoError(t, os.Symlink(target, filepath.Join(s.Root(), "link")))
	ctx := t.Context()
	_, err = s.Get(ctx, "link")
	require.ErrorIs(t, err, blob.ErrNotFound)
	require.NoError(t, s.Delete(ctx, "link"))
	_, err = os.Stat(target)
	require.NoError(t, err, "the link's target survives")
	list, err := s.List(ctx, "")
	require.NoError(t, err)
	require.Empty(t, list)
}

// TestLocalFailedPutRemovesItsTemporaryFile: on disk, not only through the
// interface.
func TestLocalFailedPutRemovesItsTemporaryFile(t *testing.T) {
	t.Parallel()
	s, err := blob.NewLocal(t.TempDir())
	require.NoError(t, err)
	_, _, err = s.Put(t.Context(), "acc_1/src_1/snap", &failing{})
	require.Error(t, err)
	var files []string
	require.NoError(t, filepath.WalkDir(s.Root(), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	}))
	require.Empty(t, files)
}

func TestValidateKey(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "acc_x/src_y/snap_z", "A-1.tar.gz", "2026/10/31/db.dump", "a..b"} {
		require.NoError(t, blob.ValidateKey(ok), ok)
	}
	for _, bad := range blobtest.InvalidKeys {
		err := blob.ValidateKey(bad)
		require.ErrorIs(t, err, blob.ErrInvalidKey, "%q", bad)
	}
	err := blob.ValidateKey("acc_1/../etc")
	require.ErrorContains(t, err, "segment 2", "the message points at the bad part")
}

type failing struct{ n int }

func (f *failing) Read(p []byte) (int, error) {
	if f.n > 0 {
		return 0, fs.ErrClosed
	}
	f.n++
	return copy(p, "some bytes"), nil
}
