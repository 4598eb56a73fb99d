package archive

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"
)

// Archive kinds: what a stream holds. The kind is written in the stream's
// fixed header, so KindOf can tell it without decompressing anything.
const (
	// KindDirectory is a tree of directories, regular files and symbolic
	// links, written by WriteDirectory and restored by RestoreDirectory.
	KindDirectory = "directory"
	// KindPostgres is one pg_dump archive in its custom format, written by
	// WritePostgres and restored by RestorePostgres.
	KindPostgres = "postgres"
)

// Entry types of a FileEntry.
const (
	// TypeDir is a directory.
	TypeDir = "dir"
	// TypeFile is a regular file; its bytes follow its entry.
	TypeFile = "file"
	// TypeSymlink is a symbolic link; it is stored, never followed.
	TypeSymlink = "symlink"
)

// Progress is told how far a long operation has come: done is the
// cumulative count of source bytes read so far (file contents or dump
// bytes, before compression). It is called at most about every MiB or
// every second, whichever comes first, and once more at the end with the
// total, from the goroutine running the operation; it must not block for
// long, as the stream waits for it.
type Progress func(done int64)

// FileEntry describes one entry of a directory archive.
type FileEntry struct {
	// Path is the entry's path relative to the archived root, with '/'
	// separators; the root itself is ".".
	Path string `json:"path"`
	// Type is TypeDir, TypeFile or TypeSymlink.
	Type string `json:"type"`
	// Mode holds io/fs.FileMode bits: the type bit (fs.ModeDir,
	// fs.ModeSymlink, none for a file), the permission bits, and setuid,
	// setgid and sticky.
	Mode uint32 `json:"mode"`
	// ModTime is the entry's modification time, in UTC.
	ModTime time.Time `json:"mod_time"`
	// Size is a file's length in bytes; 0 for directories and symlinks.
	Size int64 `json:"size"`
	// SHA256 is the lower-case hex SHA-256 of a file's contents; empty for
	// directories and symlinks.
	SHA256 string `json:"sha256,omitempty"`
	// Link is a symlink's target, exactly as stored on disk.
	Link string `json:"link,omitempty"`
}

// Manifest describes what an archive holds. WriteDirectory and
// WritePostgres return it once the stream is complete, and Verify rebuilds
// the same manifest from the stream itself.
type Manifest struct {
	// Kind is KindDirectory or KindPostgres.
	Kind string `json:"kind"`
	// Files lists a directory archive's entries in stream order, the root
	// (".") first; nil for a postgres archive.
	Files []FileEntry `json:"files,omitempty"`
	// Skipped lists, for a directory archive, paths of entries that a
	// backup cannot hold and left out: sockets, named pipes and devices.
	Skipped []string `json:"skipped,omitempty"`
	// DumpSHA256 is the lower-case hex SHA-256 of a postgres archive's
	// pg_dump output.
	DumpSHA256 string `json:"dump_sha256,omitempty"`
	// DumpSize is the length of that dump in bytes.
	DumpSize int64 `json:"dump_size,omitempty"`
	// SourceBytes is the total of the uncompressed source bytes: the sum
	// of file sizes, or the dump's size.
	SourceBytes int64 `json:"source_bytes"`
	// CreatedAt is when the archive was started, in UTC.
	CreatedAt time.Time `json:"created_at"`
}

// Stats counts what Verify checked or a restore wrote.
type Stats struct {
	// Files is the number of regular files (for a postgres archive: 1, the
	// dump).
	Files int `json:"files"`
	// Bytes is their total size in bytes.
	Bytes int64 `json:"bytes"`
}

// RestoreOptions tune RestoreDirectory and RestorePostgres.
type RestoreOptions struct {
	// Overwrite allows restoring into a non-empty target: a directory
	// whose entries of the same name are replaced (others are kept), or a
	// database whose objects of the same name are dropped first
	// (pg_restore --clean --if-exists).
	Overwrite bool
	// TempDir is where RestorePostgres spools the dump while checking it;
	// "" means os.TempDir(). RestoreDirectory writes its temporary files
	// next to their final place instead, inside the target.
	TempDir string
	// Progress, if set, is told how many source bytes have been restored.
	Progress Progress
}

// ErrCorrupt is wrapped by every error that reports an archive that is
// damaged or malformed: a checksum that does not match, a truncated or
// undecodable stream, or a structure the format forbids (such as a path
// that would leave the restore target). A reader's own I/O errors and
// context cancellation are returned as they are, never as ErrCorrupt, so
// a caller may mark a snapshot corrupt exactly when this matches.
var ErrCorrupt = errors.New("archive: corrupt")

// ErrTargetNotEmpty is wrapped by RestoreDirectory and RestorePostgres
// when the target already holds files (or database objects) and
// RestoreOptions.Overwrite is not set. Nothing has been changed.
var ErrTargetNotEmpty = errors.New("archive: restore target is not empty")

// ErrUnsupportedFormat is wrapped when a stream carries this package's
// magic bytes but a format version or kind it does not know, as written by
// a newer release. The archive may well be intact; it is not ErrCorrupt.
var ErrUnsupportedFormat = errors.New("archive: unsupported format")

// ErrKindMismatch is wrapped when an archive of one kind is given to the
// restore of another (a postgres archive to RestoreDirectory, or the
// reverse).
var ErrKindMismatch = errors.New("archive: wrong archive kind")

// ErrSourceChanged is wrapped by WriteDirectory when a file changed while
// it was being read (its size, modification time or identity differs from
// when its entry was taken), or an entry was replaced between being
// listed and being opened (a directory swapped for a symlink, say). The backup fails rather than record a file
// torn between two versions; running it again usually succeeds.
var ErrSourceChanged = errors.New("archive: source changed during backup")

// KindOf reads an archive's fixed header (HeaderSize bytes) from r and
// returns its kind. It consumes those bytes: to go on reading the same
// stream, use PeekKind instead.
func KindOf(r io.Reader) (string, error) {
	var h [HeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return "", fmt.Errorf("%w: stream shorter than its %d-byte header", ErrCorrupt, HeaderSize)
		}
		return "", fmt.Errorf("archive: reading header: %w", err)
	}
	return parseFixedHeader(h[:])
}

// PeekKind is KindOf for a stream the caller goes on reading: it returns
// the kind and a reader that yields the whole stream again, header
// included, ready for Verify or a restore.
func PeekKind(r io.Reader) (string, io.Reader, error) {
	var h [HeaderSize]byte
	n, err := io.ReadFull(r, h[:])
	rest := io.MultiReader(bytes.NewReader(h[:n]), r)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return "", rest, fmt.Errorf("%w: stream shorter than its %d-byte header", ErrCorrupt, HeaderSize)
		}
		return "", rest, fmt.Errorf("archive: reading header: %w", err)
	}
	kind, err := parseFixedHeader(h[:])
	return kind, rest, err
}

// progressBytes and progressInterval pace Progress calls.
const (
	progressBytes    = 1 << 20
	progressInterval = time.Second
)

// progressTracker counts source bytes and calls a Progress at the pace its
// doc promises.
type progressTracker struct {
	fn        Progress
	done      int64
	lastBytes int64
	lastTime  time.Time
}

func newProgressTracker(fn Progress) *progressTracker {
	return &progressTracker{fn: fn, lastTime: time.Now()}
}

func (p *progressTracker) add(n int64) {
	p.done += n
	if p.fn == nil || n == 0 {
		return
	}
	if p.done-p.lastBytes >= progressBytes || time.Since(p.lastTime) >= progressInterval {
		p.report()
	}
}

// finish reports the final total.
func (p *progressTracker) finish() {
	if p.fn != nil {
		p.report()
	}
}

func (p *progressTracker) report() {
	p.lastBytes = p.done
	p.lastTime = time.Now()
	p.fn(p.done)
}
