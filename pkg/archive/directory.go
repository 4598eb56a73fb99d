package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// keptModeBits are the fs.FileMode bits an entry records besides its type.
const keptModeBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// restoredModeBits are those a restore applies: never setuid or setgid,
// which would hand whoever may run the file the rights of its (restoring)
// owner.
const restoredModeBits = fs.ModePerm | fs.ModeSticky

// restoreTempPrefix starts the name of the temporary file a restore writes
// a file's contents to before it has been checked.
const restoreTempPrefix = ".levqor-restore-"

// WriteDirectory streams the tree under root to w as a directory archive
// (see doc.go for the format) and returns its manifest. It walks the tree
// depth first in byte order of names, storing directories, regular files
// and symbolic links (as links, never followed) with their modes and
// modification times; sockets, named pipes and devices are left out and
// listed in Manifest.Skipped. Each file is read once, in chunks, so memory
// stays flat whatever the file sizes.
//
// Every directory is opened as an os.Root and everything in it is looked
// up by name relative to that handle, so nothing outside root can be
// read, even if a directory is swapped for a symlink during the walk.
// An entry that vanishes between being listed and being opened is left
// out, as if deleted just before the backup. An entry replaced by
// another (a symlink swapped in for a directory, say) or a file that
// changes while it is read fails the backup with ErrSourceChanged. On
// any error w holds an incomplete stream that Verify rejects; the caller
// discards it.
func WriteDirectory(ctx context.Context, w io.Writer, root string, p Progress) (Manifest, error) {
	if root == "" {
		return Manifest{}, errors.New("archive: a source directory is required")
	}
	info, err := os.Stat(root)
	if err != nil {
		return Manifest{}, fmt.Errorf("archive: source directory: %w", err)
	}
	if !info.IsDir() {
		return Manifest{}, fmt.Errorf("archive: source %s is not a directory", root)
	}
	dir, err := os.OpenRoot(root)
	if err != nil {
		return Manifest{}, fmt.Errorf("archive: opening source directory: %w", err)
	}
	defer dir.Close()
	if info, err = dir.Stat("."); err != nil {
		return Manifest{}, fmt.Errorf("archive: source directory: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return Manifest{}, err
	}
	created := time.Now().UTC()
	sw, err := newStreamWriter(w, KindDirectory, created)
	if err != nil {
		return Manifest{}, err
	}
	dw := &dirWriter{
		ctx:      ctx,
		sw:       sw,
		progress: newProgressTracker(p),
		buf:      make([]byte, writeChunk),
		m:        Manifest{Kind: KindDirectory, CreatedAt: created},
	}
	if err := dw.writeEntry(".", info, ""); err != nil {
		return Manifest{}, err
	}
	if err := dw.walk(dir, "."); err != nil {
		return Manifest{}, err
	}
	t := trailer{Entries: int64(len(dw.m.Files)), Files: dw.files, SourceBytes: dw.bytes}
	if err := sw.finish(t); err != nil {
		return Manifest{}, err
	}
	dw.progress.finish()
	dw.m.SourceBytes = dw.bytes
	return dw.m, nil
}

// testHookBeforeOpen, when set by a test, runs between the lstat that
// decides how an entry is stored and the open that reads it, so a test
// can change the tree exactly there.
var testHookBeforeOpen func(rel string)

// dirWriter holds the state of one WriteDirectory.
type dirWriter struct {
	ctx      context.Context
	sw       *streamWriter
	progress *progressTracker
	buf      []byte
	m        Manifest
	files    int64
	bytes    int64
}

// walk writes the entries of the directory rel, open as dir. Every lookup
// is by a single name relative to dir, so a parent swapped for a symlink
// after dir was opened changes nothing.
func (d *dirWriter) walk(dir *os.Root, rel string) error {
	names, err := readNames(dir, -1)
	if err != nil {
		return fmt.Errorf("archive: reading directory %q: %w", rel, err)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		childRel := path.Join(rel, name)
		info, err := dir.Lstat(name)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("archive: reading %q: %w", childRel, err)
		}
		switch mode := info.Mode(); {
		case mode.IsDir():
			if err := d.writeDir(dir, name, childRel, info); err != nil {
				return err
			}
		case mode&fs.ModeSymlink != 0:
			target, err := dir.Readlink(name)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return d.openFailed(dir, name, childRel, info, err)
			}
			if err := d.writeEntry(childRel, info, target); err != nil {
				return err
			}
		case mode.IsRegular():
			if err := d.writeFile(dir, name, childRel, info); err != nil {
				return err
			}
		default:
			d.m.Skipped = append(d.m.Skipped, childRel)
		}
	}
	return nil
}

// writeDir opens the directory name in dir, checks it is the one the walk
// listed, and writes it and its contents.
func (d *dirWriter) writeDir(dir *os.Root, name, rel string, listed fs.FileInfo) error {
	if testHookBeforeOpen != nil {
		testHookBeforeOpen(rel)
	}
	sub, err := dir.OpenRoot(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return d.openFailed(dir, name, rel, listed, err)
	}
	defer sub.Close()
	info, err := sub.Stat(".")
	if err != nil {
		return fmt.Errorf("archive: reading %q: %w", rel, err)
	}
	if !info.IsDir() || !os.SameFile(listed, info) {
		return fmt.Errorf("%w: %q was replaced while the backup listed it", ErrSourceChanged, rel)
	}
	if err := d.writeEntry(rel, listed, ""); err != nil {
		return err
	}
	return d.walk(sub, rel)
}

// openFailed explains an entry that was listed but could not be opened:
// ErrSourceChanged if something else now stands in its place (such as a
// symlink leading out of the source, which the os.Root refuses to
// follow), else the error itself.
func (d *dirWriter) openFailed(dir *os.Root, name, rel string, listed fs.FileInfo, err error) error {
	if now, lerr := dir.Lstat(name); lerr == nil && !os.SameFile(listed, now) {
		return fmt.Errorf("%w: %q was replaced while the backup listed it", ErrSourceChanged, rel)
	}
	return fmt.Errorf("archive: opening %q: %w", rel, err)
}

// writeEntry writes the entry record of a directory or symlink, or the
// entry record that opens a file, and adds it to the manifest.
func (d *dirWriter) writeEntry(rel string, info fs.FileInfo, link string) error {
	e := FileEntry{
		Path:    rel,
		Mode:    uint32(info.Mode() & (keptModeBits | fs.ModeDir | fs.ModeSymlink)),
		ModTime: info.ModTime().UTC(),
		Link:    link,
	}
	switch {
	case info.IsDir():
		e.Type = TypeDir
	case info.Mode()&fs.ModeSymlink != 0:
		e.Type = TypeSymlink
	default:
		e.Type = TypeFile
		e.Size = info.Size()
	}
	rec := entryRecord{Type: e.Type, Mode: e.Mode, ModTime: e.ModTime, Size: e.Size}
	rec.Path, rec.PathBytes = nameFields(e.Path)
	rec.Link, rec.LinkBytes = nameFields(e.Link)
	if err := d.sw.writeJSON(recEntry, rec); err != nil {
		return err
	}
	d.m.Files = append(d.m.Files, e)
	return nil
}

// writeFile writes a regular file: its entry, its contents in data
// records and the sum record. It is opened without blocking, so a named pipe swapped in for the file
// is found by the identity check rather than waited on.
func (d *dirWriter) writeFile(dir *os.Root, name, rel string, listed fs.FileInfo) error {
	if testHookBeforeOpen != nil {
		testHookBeforeOpen(rel)
	}
	f, err := dir.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return d.openFailed(dir, name, rel, listed, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("archive: reading %q: %w", rel, err)
	}
	if !info.Mode().IsRegular() || !os.SameFile(listed, info) {
		return fmt.Errorf("%w: %q was replaced while the backup listed it", ErrSourceChanged, rel)
	}
	if err := d.writeEntry(rel, info, ""); err != nil {
		return err
	}
	h := sha256.New()
	for left := info.Size(); left > 0; {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		n, err := io.ReadFull(f, d.buf[:min(int64(len(d.buf)), left)])
		if n > 0 {
			h.Write(d.buf[:n])
			if werr := d.sw.data(d.buf[:n]); werr != nil {
				return werr
			}
			left -= int64(n)
			d.bytes += int64(n)
			d.progress.add(int64(n))
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: %q shrank while it was read", ErrSourceChanged, rel)
		}
		if err != nil {
			return fmt.Errorf("archive: reading %q: %w", rel, err)
		}
	}
	if n, _ := f.Read(d.buf[:1]); n > 0 {
		return fmt.Errorf("%w: %q grew while it was read", ErrSourceChanged, rel)
	}
	after, err := f.Stat()
	if err != nil {
		return fmt.Errorf("archive: reading %q: %w", rel, err)
	}
	if after.Size() != info.Size() || !after.ModTime().Equal(info.ModTime()) {
		return fmt.Errorf("%w: %q was modified while it was read", ErrSourceChanged, rel)
	}
	d.files++
	sum := h.Sum(nil)
	d.m.Files[len(d.m.Files)-1].SHA256 = hex.EncodeToString(sum)
	return d.sw.record(recSum, sum)
}

// RestoreDirectory restores a directory archive from r into target,
// creating target if it does not exist. It recreates directories, files
// and symlinks with their modes and modification times (directories'
// once their contents are in place); ownership is not recorded, so
// restored entries belong to the restoring user.
//
// A non-empty target is refused with ErrTargetNotEmpty unless
// opts.Overwrite is set; then archived entries replace those of the same
// name and other entries are kept.
//
// Every checksum is checked on the way: a file is written to a temporary
// name beside its final place and renamed there only once its SHA-256
// matched, so no file under its final name ever holds unchecked bytes.
// The archive's structure is checked too, and nothing is written outside
// target: absolute paths, ".." and entries under a symlink are refused
// as ErrCorrupt, and all writes go through an os.Root at target. On
// failure into a target that was empty (or absent), everything restored
// so far is removed again, so the restore can simply be repeated.
func RestoreDirectory(ctx context.Context, r io.Reader, target string, opts RestoreOptions) (Stats, error) {
	return RestoreInto(target, opts, func(root *os.Root) (Stats, error) {
		return restoreDirectory(ctx, r, root, opts)
	})
}

// RestoreInto prepares target as RestoreDirectory does (created if
// absent, refused with ErrTargetNotEmpty if it holds anything and
// opts.Overwrite is not set, opened as an os.Root that nothing escapes)
// and has restore write into it. On failure into a target that was empty
// (or absent), everything restore wrote is removed again.
func RestoreInto(target string, opts RestoreOptions, restore func(root *os.Root) (Stats, error)) (Stats, error) {
	if target == "" {
		return Stats{}, errors.New("archive: a restore target is required")
	}
	createdTarget := false
	info, err := os.Stat(target)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(target, 0o700); err != nil {
			return Stats{}, fmt.Errorf("archive: creating restore target: %w", err)
		}
		createdTarget = true
	case err != nil:
		return Stats{}, fmt.Errorf("archive: restore target: %w", err)
	case !info.IsDir():
		return Stats{}, fmt.Errorf("archive: restore target %s is not a directory", target)
	}
	if testHookBeforeOpenTarget != nil {
		testHookBeforeOpenTarget(target)
	}
	root, err := os.OpenRoot(target)
	if err != nil {
		return Stats{}, fmt.Errorf("archive: opening restore target: %w", err)
	}
	defer root.Close()
	// The directory opened must be the one checked above (or, if just
	// created, the one now at target itself, not a symlink put there in
	// between); else the restore would write wherever that points.
	opened, err := root.Stat(".")
	if err != nil {
		return Stats{}, fmt.Errorf("archive: opening restore target: %w", err)
	}
	if createdTarget {
		info, err = os.Lstat(target)
	}
	if err != nil || !os.SameFile(info, opened) {
		return Stats{}, fmt.Errorf("archive: restore target %s was replaced while the restore opened it", target)
	}
	names, err := readNames(root, 1)
	if err != nil {
		return Stats{}, fmt.Errorf("archive: reading restore target: %w", err)
	}
	wasEmpty := len(names) == 0
	if !wasEmpty && !opts.Overwrite {
		return Stats{}, fmt.Errorf("%w: %s holds %q", ErrTargetNotEmpty, target, names[0])
	}

	stats, err := restore(root)
	if err == nil {
		return stats, nil
	}
	// Cleared through root, so only what the restore wrote goes, even if
	// target names a different directory by now.
	if wasEmpty {
		if names, rerr := readNames(root, -1); rerr == nil {
			for _, n := range names {
				_ = root.RemoveAll(n)
			}
		}
	}
	if createdTarget {
		_ = os.Remove(target)
	}
	return Stats{}, err
}

// testHookBeforeOpenTarget, when set by a test, runs between the checks
// of a restore target and its opening.
var testHookBeforeOpenTarget func(target string)

func readNames(root *os.Root, n int) ([]string, error) {
	f, err := root.Open(".")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(n)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return names, nil
}

func restoreDirectory(ctx context.Context, r io.Reader, root *os.Root, opts RestoreOptions) (Stats, error) {
	sr, err := openStream(ctx, r, opts.Progress)
	if err != nil {
		return Stats{}, err
	}
	defer sr.close()
	if sr.kind != KindDirectory {
		return Stats{}, fmt.Errorf("%w: a %s archive cannot be restored as a directory", ErrKindMismatch, sr.kind)
	}
	d := &dirRestorer{
		root: root,
		sr:   sr,
		buf:  make([]byte, writeChunk),
		zero: make([]byte, writeChunk),
	}
	for {
		e, err := sr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Stats{}, err
		}
		switch e.Type {
		case TypeDir:
			// The target itself keeps its own mode and time: it is the
			// restore's, not the snapshot's.
			if e.Path != "." {
				if err := d.mkdir(e.Path); err != nil {
					return Stats{}, err
				}
				d.dirs = append(d.dirs, *e)
			}
		case TypeFile:
			if err := d.file(e); err != nil {
				return Stats{}, err
			}
		case TypeSymlink:
			if err := d.symlink(e); err != nil {
				return Stats{}, err
			}
		}
	}
	// Directories last and deepest first: filling a directory changes its
	// modification time, and its mode may forbid writing into it.
	for i := len(d.dirs) - 1; i >= 0; i-- {
		e := d.dirs[i]
		name := filepath.FromSlash(e.Path)
		if err := root.Chmod(name, fs.FileMode(e.Mode)&restoredModeBits); err != nil {
			return Stats{}, fmt.Errorf("archive: restoring mode of %q: %w", e.Path, err)
		}
		if err := root.Chtimes(name, time.Time{}, e.ModTime); err != nil {
			return Stats{}, fmt.Errorf("archive: restoring time of %q: %w", e.Path, err)
		}
	}
	return d.stats, nil
}

// dirRestorer holds the state of one RestoreDirectory.
type dirRestorer struct {
	root  *os.Root
	sr    *streamReader
	buf   []byte
	zero  []byte
	dirs  []FileEntry
	stats Stats
}

// mkdir creates a directory, writable by its owner until its own mode is
// applied at the end. An existing directory is kept; anything else in its
// place (only possible with Overwrite) is replaced.
func (d *dirRestorer) mkdir(p string) error {
	name := filepath.FromSlash(p)
	err := d.root.Mkdir(name, 0o700)
	if err == nil || !errors.Is(err, fs.ErrExist) {
		return wrapRestore(p, err)
	}
	fi, err := d.root.Lstat(name)
	if err != nil {
		return wrapRestore(p, err)
	}
	if fi.IsDir() {
		return wrapRestore(p, d.root.Chmod(name, fi.Mode().Perm()|0o700))
	}
	if err := d.root.Remove(name); err != nil {
		return wrapRestore(p, err)
	}
	return wrapRestore(p, d.root.Mkdir(name, 0o700))
}

// symlink recreates a symlink, replacing what is in its place (only
// possible with Overwrite).
func (d *dirRestorer) symlink(e *FileEntry) error {
	name := filepath.FromSlash(e.Path)
	err := d.root.Symlink(e.Link, name)
	if err == nil || !errors.Is(err, fs.ErrExist) {
		return wrapRestore(e.Path, err)
	}
	if err := d.root.RemoveAll(name); err != nil {
		return wrapRestore(e.Path, err)
	}
	return wrapRestore(e.Path, d.root.Symlink(e.Link, name))
}

// file writes a file's contents to a temporary file beside its final
// place, leaving holes where the contents are zero, and renames it into
// place once the contents matched their checksum.
func (d *dirRestorer) file(e *FileEntry) error {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.FromSlash(path.Join(path.Dir(e.Path), restoreTempPrefix+hex.EncodeToString(rnd[:])))
	f, err := d.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return wrapRestore(e.Path, err)
	}
	placed := false
	defer func() {
		if !placed {
			_ = f.Close()
			_ = d.root.Remove(tmp)
		}
	}()
	var off int64
	for {
		n, err := io.ReadFull(d.sr, d.buf)
		if n > 0 {
			if !bytes.Equal(d.buf[:n], d.zero[:n]) {
				if _, werr := f.WriteAt(d.buf[:n], off); werr != nil {
					return wrapRestore(e.Path, werr)
				}
			}
			off += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	// The checksum has matched (the stream reader returns EOF only then).
	if err := f.Truncate(off); err != nil {
		return wrapRestore(e.Path, err)
	}
	if err := f.Close(); err != nil {
		return wrapRestore(e.Path, err)
	}
	if err := d.root.Chmod(tmp, fs.FileMode(e.Mode)&restoredModeBits); err != nil {
		return wrapRestore(e.Path, err)
	}
	if err := d.root.Chtimes(tmp, time.Time{}, e.ModTime); err != nil {
		return wrapRestore(e.Path, err)
	}
	name := filepath.FromSlash(e.Path)
	if fi, err := d.root.Lstat(name); err == nil && fi.IsDir() {
		if err := d.root.RemoveAll(name); err != nil {
			return wrapRestore(e.Path, err)
		}
	}
	if err := d.root.Rename(tmp, name); err != nil {
		return wrapRestore(e.Path, err)
	}
	placed = true
	d.stats.Files++
	d.stats.Bytes += off
	return nil
}

func wrapRestore(p string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("archive: restoring %q: %w", p, err)
}
