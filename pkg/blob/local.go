package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// tempPrefix starts the name of every temporary file Put writes. Keys
// cannot start a segment with '.', so a temporary file never collides with
// a blob and List never shows one.
const tempPrefix = ".tmp-"

// Local is a Store on a local file system: the blob under key "a/b/c"
// is the file <root>/a/b/c. Put writes a temporary file in the target's
// directory, fsyncs it, renames it over the target and fsyncs the
// directory, so a blob is either wholly there or not at all, even across a
// power cut.
//
// A file system cannot hold both a file "a" and a directory "a", so on
// Local a key cannot be both a blob and the prefix of another key
// followed by '/'; Put fails on such a key.
type Local struct {
	root string
}

var _ Store = (*Local)(nil)

// NewLocal returns a store rooted at dir, creating it (mode 0700) if it
// does not exist.
func NewLocal(dir string) (*Local, error) {
	if dir == "" {
		return nil, errors.New("blob: a directory is required")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("blob: %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("blob: creating %s: %w", abs, err)
	}
	return &Local{root: abs}, nil
}

// Root is the directory the store keeps its blobs in.
func (l *Local) Root() string { return l.root }

// path maps a validated key to its file. The check that the result stays
// under the root is redundant with ValidateKey and kept as a second lock.
func (l *Local) path(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	p := filepath.Join(l.root, filepath.FromSlash(key))
	if !strings.HasPrefix(p, l.root+string(filepath.Separator)) {
		return "", fmt.Errorf("%w: %q leaves the store", ErrInvalidKey, clip(key))
	}
	return p, nil
}

// Put implements Store.
func (l *Local) Put(ctx context.Context, key string, r io.Reader) (size int64, sum string, err error) {
	p, err := l.path(key)
	if err != nil {
		return 0, "", err
	}
	if err := ctx.Err(); err != nil {
		return 0, "", fmt.Errorf("blob: putting %s: %w", key, err)
	}
	if until, err := readLock(lockPath(p)); err != nil {
		return 0, "", fmt.Errorf("blob: putting %s: %w", key, err)
	} else if time.Now().Before(until) {
		return 0, "", fmt.Errorf("blob %s until %s: %w", key, until.Format(time.RFC3339), ErrLocked)
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, "", fmt.Errorf("blob: putting %s: %w", key, err)
	}
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return 0, "", fmt.Errorf("blob: putting %s: %w", key, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	h := sha256.New()
	size, err = io.Copy(io.MultiWriter(f, h), ctxReader{ctx: ctx, r: r})
	if err != nil {
		return 0, "", fmt.Errorf("blob: putting %s: %w", key, err)
	}
	if err = f.Sync(); err != nil {
		return 0, "", fmt.Errorf("blob: putting %s: syncing: %w", key, err)
	}
	if err = f.Close(); err != nil {
		return 0, "", fmt.Errorf("blob: putting %s: %w", key, err)
	}
	if err = ctx.Err(); err != nil {
		return 0, "", fmt.Errorf("blob: putting %s: %w", key, err)
	}
	if err = os.Rename(tmp, p); err != nil {
		return 0, "", fmt.Errorf("blob: putting %s: %w", key, err)
	}
	if err = syncDir(dir); err != nil {
		return 0, "", fmt.Errorf("blob: putting %s: syncing directory: %w", key, err)
	}
	return size, hex.EncodeToString(h.Sum(nil)), nil
}

// Get implements Store.
func (l *Local) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := l.path(key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("blob: getting %s: %w", key, err)
	}
	if _, err := l.regular(p, key); err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blob: getting %s: %w", key, err)
	}
	return f, nil
}

// GetRange implements Store.
func (l *Local) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("blob: getting %s: negative range %d+%d", key, off, n)
	}
	rc, err := l.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	f := rc.(*os.File)
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, off, n), f}, nil
}

// Delete implements Store.
func (l *Local) Delete(ctx context.Context, key string) error {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: deleting %s: %w", key, err)
	}
	if _, err := l.regular(p, key); errors.Is(err, ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	until, err := readLock(lockPath(p))
	if err != nil {
		return fmt.Errorf("blob: deleting %s: %w", key, err)
	}
	if time.Now().Before(until) {
		return fmt.Errorf("blob %s until %s: %w", key, until.Format(time.RFC3339), ErrLocked)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob: deleting %s: %w", key, err)
	}
	if err := os.Remove(lockPath(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob: deleting the lock of %s: %w", key, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("blob: deleting %s: syncing directory: %w", key, err)
	}
	return nil
}

// lockPrefix starts the name of the file beside a blob that says until
// when it is locked; like a temporary file, List never shows one.
const lockPrefix = ".lock-"

func lockPath(p string) string { return filepath.Join(filepath.Dir(p), lockPrefix+filepath.Base(p)) }

// readLock reads a lock file: the zero time when there is none.
func readLock(p string) (time.Time, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(string(b)))
	if err != nil {
		return time.Time{}, fmt.Errorf("lock file %s: %w", p, err)
	}
	return t, nil
}

// Lock implements Store: the date is kept in a file beside the blob,
// written as a blob is (temporary file, fsync, rename).
func (l *Local) Lock(ctx context.Context, key string, until time.Time) error {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	if _, err := l.regular(p, key); err != nil {
		return err
	}
	lp := lockPath(p)
	cur, err := readLock(lp)
	if err != nil {
		return fmt.Errorf("blob: locking %s: %w", key, err)
	}
	until = until.UTC().Truncate(time.Second)
	if !until.After(cur) {
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(p), tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("blob: locking %s: %w", key, err)
	}
	_, err = f.WriteString(until.Format(time.RFC3339) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), lp)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("blob: locking %s: %w", key, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("blob: locking %s: syncing directory: %w", key, err)
	}
	return nil
}

// LockedUntil implements Store.
func (l *Local) LockedUntil(ctx context.Context, key string) (time.Time, error) {
	p, err := l.path(key)
	if err != nil {
		return time.Time{}, err
	}
	if _, err := l.regular(p, key); err != nil {
		return time.Time{}, err
	}
	until, err := readLock(lockPath(p))
	if err != nil || !time.Now().Before(until) {
		return time.Time{}, err
	}
	return until, nil
}

// Stat implements Store.
func (l *Local) Stat(ctx context.Context, key string) (Info, error) {
	p, err := l.path(key)
	if err != nil {
		return Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("blob: stat %s: %w", key, err)
	}
	fi, err := l.regular(p, key)
	if err != nil {
		return Info{}, err
	}
	return Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime().UTC()}, nil
}

// regular returns the file info of p if it is a regular file; a missing
// path, a directory (the prefix of other keys) or anything else, such as
// a symbolic link someone placed in the store, is ErrNotFound.
func (l *Local) regular(p, key string) (fs.FileInfo, error) {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || (err == nil && !fi.Mode().IsRegular()) {
		return nil, fmt.Errorf("blob %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blob: stat %s: %w", key, err)
	}
	return fi, nil
}

// List implements Store. It walks only the directory the prefix names.
func (l *Local) List(ctx context.Context, prefix string) ([]Info, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	start := l.root
	if prefix != "" {
		dir := path.Dir(prefix)
		if strings.HasSuffix(prefix, "/") {
			dir = strings.TrimSuffix(prefix, "/")
		}
		if dir != "." {
			start = filepath.Join(l.root, filepath.FromSlash(dir))
		}
	}
	out := []Info{}
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		name := d.Name()
		if p != start && strings.HasPrefix(name, ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil // a temporary file
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(l.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted while listing
		}
		if err != nil {
			return err
		}
		out = append(out, Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime().UTC()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("blob: listing %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// syncDir fsyncs a directory so that a rename or removal in it survives a
// crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	serr := d.Sync()
	cerr := d.Close()
	if serr != nil {
		return serr
	}
	return cerr
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// RemoveAbandoned implements Janitor: it deletes the temporary files of
// Puts that were never finished (their process died) and were last
// written before before.
func (l *Local) RemoveAbandoned(ctx context.Context, before time.Time) (int, error) {
	n := 0
	err := filepath.WalkDir(l.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // finished (renamed) or removed meanwhile
		}
		if err != nil {
			return err
		}
		if !fi.ModTime().Before(before) {
			return nil
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("blob: removing abandoned writes: %w", err)
	}
	return n, nil
}
