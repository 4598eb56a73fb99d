// Package blobtest is the conformance suite of blob.Store: every
// implementation (the local file system and the S3-compatible store)
// must pass Run, which checks the promises safe deletion relies on:
// atomic writes, idempotent deletes, correct checksums, prefix listing and
// the refusal of keys that could escape the store.
package blobtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/blob"
)

// Run checks s against the blob.Store contract. Each subtest works under
// its own random key prefix, so s may hold other blobs and Run may be
// called on the same store from parallel tests.
func Run(t *testing.T, s blob.Store) {
	t.Helper()
	base := "conformance-" + randomHex(t, 6) + "/"
	ctx := t.Context()

	t.Run("PutReturnsSizeAndChecksumAndGetReadsItBack", func(t *testing.T) {
		t.Parallel()
		key := base + "roundtrip/blob-1"
		data := randomBytes(t, 70_001)
		size, sum, err := s.Put(ctx, key, bytes.NewReader(data))
		require.NoError(t, err)
		require.Equal(t, int64(len(data)), size)
		require.Equal(t, sha(data), sum)
		require.Equal(t, data, read(t, s, key))
		info, err := s.Stat(ctx, key)
		require.NoError(t, err)
		require.Equal(t, key, info.Key)
		require.Equal(t, int64(len(data)), info.Size)
		require.False(t, info.ModTime.IsZero())
	})

	t.Run("GetRangeReadsPartOfABlob", func(t *testing.T) {
		t.Parallel()
		key := base + "range/blob"
		data := randomBytes(t, 70_001)
		_, _, err := s.Put(ctx, key, bytes.NewReader(data))
		require.NoError(t, err)
		part := func(off, n int64) []byte {
			t.Helper()
			rc, err := s.GetRange(ctx, key, off, n)
			require.NoError(t, err)
			defer rc.Close()
			b, err := io.ReadAll(rc)
			require.NoError(t, err)
			return b
		}
		require.Equal(t, data[1000:6000], part(1000, 5000))
		require.Equal(t, data[:1], part(0, 1))
		require.Equal(t, data[70_000:], part(70_000, 10), "a range past the end yields what there is")
		require.Empty(t, part(80_000, 10))
		require.Empty(t, part(10, 0))
		_, err = s.GetRange(ctx, base+"range/missing", 0, 10)
		require.ErrorIs(t, err, blob.ErrNotFound)
	})

	t.Run("EmptyBlob", func(t *testing.T) {
		t.Parallel()
		key := base + "empty/blob"
		size, sum, err := s.Put(ctx, key, bytes.NewReader(nil))
		require.NoError(t, err)
		require.Zero(t, size)
		require.Equal(t, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", sum)
		require.Empty(t, read(t, s, key))
	})

	t.Run("LargeBlobIsStreamed", func(t *testing.T) {
		t.Parallel()
		key := base + "large/blob.bin"
		data := randomBytes(t, 5<<20+17)
		size, sum, err := s.Put(ctx, key, onlyReader{bytes.NewReader(data)})
		require.NoError(t, err)
		require.Equal(t, int64(len(data)), size)
		require.Equal(t, sha(data), sum)
		require.Equal(t, sha(data), sha(read(t, s, key)))
	})

	t.Run("PutReplaces", func(t *testing.T) {
		t.Parallel()
		key := base + "replace/blob"
		_, _, err := s.Put(ctx, key, strings.NewReader("first version"))
		require.NoError(t, err)
		_, sum, err := s.Put(ctx, key, strings.NewReader("second"))
		require.NoError(t, err)
		require.Equal(t, sha([]byte("second")), sum)
		require.Equal(t, "second", string(read(t, s, key)))
	})

	t.Run("MissingBlobIsNotFound", func(t *testing.T) {
		t.Parallel()
		key := base + "missing/never-written"
		_, err := s.Get(ctx, key)
		require.ErrorIs(t, err, blob.ErrNotFound)
		_, err = s.Stat(ctx, key)
		require.ErrorIs(t, err, blob.ErrNotFound)
	})

	t.Run("DeleteIsIdempotent", func(t *testing.T) {
		t.Parallel()
		key := base + "delete/blob"
		_, _, err := s.Put(ctx, key, strings.NewReader("to be deleted"))
		require.NoError(t, err)
		require.NoError(t, s.Delete(ctx, key))
		_, err = s.Get(ctx, key)
		require.ErrorIs(t, err, blob.ErrNotFound, "deleted")
		require.NoError(t, s.Delete(ctx, key), "deleting again succeeds: a crashed deletion can be repeated")
		require.NoError(t, s.Delete(ctx, base+"delete/never-written"))
		list, err := s.List(ctx, base+"delete/")
		require.NoError(t, err)
		require.Empty(t, list)
	})

	t.Run("FailedPutLeavesNoTrace", func(t *testing.T) {
		t.Parallel()
		key := base + "failed/new"
		broken := io.MultiReader(strings.NewReader("partial content"), errReader{errors.New("connection reset")})
		_, _, err := s.Put(ctx, key, broken)
		require.Error(t, err)
		_, err = s.Stat(ctx, key)
		require.ErrorIs(t, err, blob.ErrNotFound, "no partial blob")
		list, err := s.List(ctx, base+"failed/")
		require.NoError(t, err)
		require.Empty(t, list, "nothing listed, not even a temporary file")

		old := base + "failed/existing"
		_, _, err = s.Put(ctx, old, strings.NewReader("the good copy"))
		require.NoError(t, err)
		_, _, err = s.Put(ctx, old, io.MultiReader(strings.NewReader("bad"), errReader{errors.New("disk full")}))
		require.Error(t, err)
		require.Equal(t, "the good copy", string(read(t, s, old)), "a failed replace keeps the old blob")
	})

	t.Run("CancelledPutLeavesNoTrace", func(t *testing.T) {
		t.Parallel()
		key := base + "cancelled/blob"
		cctx, cancel := context.WithCancel(ctx)
		r := &cancelAfter{r: bytes.NewReader(randomBytes(t, 1<<20)), after: 64 << 10, cancel: cancel}
		_, _, err := s.Put(cctx, key, r)
		require.ErrorIs(t, err, context.Canceled)
		_, err = s.Stat(ctx, key)
		require.ErrorIs(t, err, blob.ErrNotFound)
	})

	t.Run("ListByPrefix", func(t *testing.T) {
		t.Parallel()
		p := base + "list/"
		for _, k := range []string{"acc_1/src_a/s2", "acc_1/src_a/s1", "acc_1/src_ab/s3", "acc_2/src_c/s4"} {
			_, _, err := s.Put(ctx, p+k, strings.NewReader(k))
			require.NoError(t, err)
		}
		keys := func(prefix string) []string {
			list, err := s.List(ctx, prefix)
			require.NoError(t, err)
			out := []string{}
			for _, i := range list {
				require.Equal(t, int64(len(strings.TrimPrefix(i.Key, p))), i.Size, i.Key)
				out = append(out, strings.TrimPrefix(i.Key, p))
			}
			return out
		}
		require.Equal(t, []string{"acc_1/src_a/s1", "acc_1/src_a/s2"}, keys(p+"acc_1/src_a/"), "ordered by key")
		require.Equal(t, []string{"acc_1/src_a/s1", "acc_1/src_a/s2", "acc_1/src_ab/s3"}, keys(p+"acc_1/src_a"), "a prefix, not a directory")
		require.Equal(t, []string{"acc_1/src_a/s1", "acc_1/src_a/s2", "acc_1/src_ab/s3", "acc_2/src_c/s4"}, keys(p))
		require.Equal(t, []string{"acc_2/src_c/s4"}, keys(p+"acc_2/src_c/s4"))
		require.Empty(t, keys(p+"acc_3/"))
	})

	t.Run("InvalidKeysAreRefused", func(t *testing.T) {
		t.Parallel()
		for _, key := range InvalidKeys {
			_, _, err := s.Put(ctx, key, strings.NewReader("x"))
			require.ErrorIs(t, err, blob.ErrInvalidKey, "Put %q", key)
			_, err = s.Get(ctx, key)
			require.ErrorIs(t, err, blob.ErrInvalidKey, "Get %q", key)
			_, err = s.Stat(ctx, key)
			require.ErrorIs(t, err, blob.ErrInvalidKey, "Stat %q", key)
			require.ErrorIs(t, s.Delete(ctx, key), blob.ErrInvalidKey, "Delete %q", key)
		}
		for _, prefix := range []string{"../", "/", "a//", "..", "a/../"} {
			_, err := s.List(ctx, prefix)
			require.ErrorIs(t, err, blob.ErrInvalidKey, "List %q", prefix)
		}
	})

	t.Run("ReadersNeverSeeAPartialBlob", func(t *testing.T) {
		t.Parallel()
		key := base + "concurrent/blob"
		versions := make([][]byte, 6)
		valid := map[string]bool{}
		for i := range versions {
			versions[i] = bytes.Repeat([]byte{byte('a' + i)}, 256<<10+i)
			valid[sha(versions[i])] = true
		}
		_, _, err := s.Put(ctx, key, bytes.NewReader(versions[0]))
		require.NoError(t, err)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := range versions {
			wg.Go(func() {
				if _, _, err := s.Put(ctx, key, bytes.NewReader(versions[i])); err != nil {
					errs <- err
				}
			})
		}
		for range 4 {
			wg.Go(func() {
				for range 10 {
					rc, err := s.Get(ctx, key)
					if err != nil {
						errs <- err
						return
					}
					b, err := io.ReadAll(rc)
					_ = rc.Close()
					if err != nil {
						errs <- err
						return
					}
					if !valid[sha(b)] {
						errs <- fmt.Errorf("read %d bytes that are no version written", len(b))
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	})
}

// InvalidKeys are keys every Store must refuse: path traversal, absolute
// paths, empty or dot segments, hidden names, characters that need
// quoting, and overlong keys.
var InvalidKeys = []string{
	"",
	"..",
	"../escape",
	"a/../../escape",
	"a/..",
	"./a",
	"a/./b",
	"/etc/passwd",
	"a//b",
	"a/",
	".hidden",
	"a/.tmp-123",
	`a\..\b`,
	"a\x00b",
	"a\nb",
	" a",
	"a b",
	"é",
	"a/%2e%2e/b",
	strings.Repeat("a", blob.MaxSegmentLength+1),
	strings.Repeat("abcdefgh/", blob.MaxKeyLength/9+1) + "x",
}

func read(t *testing.T, s blob.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), key)
	require.NoError(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

func randomHex(t *testing.T, n int) string {
	return hex.EncodeToString(randomBytes(t, n))
}

// onlyReader hides every method but Read, so a store cannot take a
// shortcut (WriterTo, Seeker) and must stream.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// cancelAfter cancels its context once after bytes have been read.
type cancelAfter struct {
	r      io.Reader
	after  int
	read   int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.read >= c.after {
		c.cancel()
	}
	n, err := c.r.Read(p)
	c.read += n
	return n, err
}

// RunLocks checks that s locks blobs as Store.Lock says: a locked blob
// cannot be deleted (nor replaced) before its date, a lock is never
// shortened, a lock past its date no longer holds, and locking a missing
// blob is ErrNotFound.
func RunLocks(t *testing.T, s blob.Store) {
	t.Helper()
	base := "locks-" + randomHex(t, 6) + "/"
	ctx := t.Context()
	put := func(key string) {
		t.Helper()
		_, _, err := s.Put(ctx, key, bytes.NewReader(randomBytes(t, 1000)))
		require.NoError(t, err)
	}

	key := base + "pack"
	put(key)
	until, err := s.LockedUntil(ctx, key)
	require.NoError(t, err)
	require.True(t, until.IsZero(), "not locked yet")
	day := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
	require.NoError(t, s.Lock(ctx, key, day))
	until, err = s.LockedUntil(ctx, key)
	require.NoError(t, err)
	require.WithinDuration(t, day, until, time.Second)
	err = s.Delete(ctx, key)
	require.ErrorIs(t, err, blob.ErrLocked, "a locked blob is not deleted")
	_, err = s.Stat(ctx, key)
	require.NoError(t, err, "and it is still there")
	require.NoError(t, s.Lock(ctx, key, time.Now().Add(time.Hour)), "an earlier date is not an error")
	until, err = s.LockedUntil(ctx, key)
	require.NoError(t, err)
	require.WithinDuration(t, day, until, time.Second, "but it does not shorten the lock")

	soon := base + "soon"
	put(soon)
	require.NoError(t, s.Lock(ctx, soon, time.Now().Add(4*time.Second)))
	require.ErrorIs(t, s.Delete(ctx, soon), blob.ErrLocked)
	require.Eventually(t, func() bool { return s.Delete(ctx, soon) == nil }, 10*time.Second, 200*time.Millisecond,
		"once its date has passed the blob is deleted")
	_, err = s.Stat(ctx, soon)
	require.ErrorIs(t, err, blob.ErrNotFound)

	require.ErrorIs(t, s.Lock(ctx, base+"missing", day), blob.ErrNotFound)
	infos, err := s.List(ctx, base)
	require.NoError(t, err)
	require.Len(t, infos, 1, "List shows the blobs, not their locks")
}
