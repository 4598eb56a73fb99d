package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Store keeps blobs: opaque byte streams under keys. Implementations must
// be safe for concurrent use, and must never let a reader see a partly
// written blob.
type Store interface {
	// Put stores everything r yields under key, replacing any blob there,
	// and returns its size and SHA-256 (lower-case hex). The write is
	// atomic: until Put returns nil the key holds the old blob or nothing,
	// and a failed Put (an error from r, a cancelled ctx, a full disk)
	// leaves no trace.
	Put(ctx context.Context, key string, r io.Reader) (size int64, sha256 string, err error)
	// Get opens the blob under key for reading; the caller closes it. A
	// missing blob is an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// GetRange opens n bytes of the blob under key from offset off: a
	// chunk of a pack, read without the rest. A range past the end
	// yields what there is (the caller checks the length); a missing
	// blob is an error wrapping ErrNotFound.
	GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error)
	// Delete removes the blob under key. Deleting a blob that does not
	// exist succeeds, so a deletion interrupted by a crash can simply be
	// repeated.
	Delete(ctx context.Context, key string) error
	// Lock keeps the blob under key from deletion until until: Delete
	// fails wrapping ErrLocked before then. A lock is only ever extended,
	// never shortened. A missing blob is an error wrapping ErrNotFound.
	Lock(ctx context.Context, key string, until time.Time) error
	// LockedUntil is until when the blob under key is locked: the zero
	// time when it is not (or no longer).
	LockedUntil(ctx context.Context, key string) (time.Time, error)
	// Stat describes the blob under key, or fails wrapping ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)
	// List returns every blob whose key starts with prefix ("" lists
	// all), ordered by key.
	List(ctx context.Context, prefix string) ([]Info, error)
}

// Info describes one stored blob.
type Info struct {
	// Key is the blob's key.
	Key string `json:"key"`
	// Size is its length in bytes.
	Size int64 `json:"size"`
	// ModTime is when it was last written.
	ModTime time.Time `json:"mod_time"`
}

// ErrNotFound is wrapped by Get and Stat for a key that holds no blob.
var ErrNotFound = errors.New("blob: not found")

// ErrLocked is wrapped by Delete for a blob locked until a later date
// (Lock; S3 Object Lock).
var ErrLocked = errors.New("blob: locked")

// ErrInvalidKey is wrapped by every method given a key (or prefix) that
// ValidateKey refuses.
var ErrInvalidKey = errors.New("blob: invalid key")

// Key limits. They keep keys valid file names on every common file
// system and valid object names in S3-compatible stores.
const (
	// MaxKeyLength bounds a whole key in bytes.
	MaxKeyLength = 512
	// MaxSegmentLength bounds one '/'-separated segment in bytes.
	MaxSegmentLength = 255
)

// ValidateKey checks that key is a relative path of '/'-separated
// segments, each made of ASCII letters, digits, '.', '_' and '-' and
// starting with a letter or digit. That rules out, by construction,
// absolute paths, empty segments ("a//b"), "." and ".." (path traversal),
// hidden files (where file stores keep their temporary files),
// backslashes, control characters and anything a shell or URL would need
// to quote. The error wraps ErrInvalidKey and says what is wrong.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if len(key) > MaxKeyLength {
		return fmt.Errorf("%w: key is longer than %d bytes", ErrInvalidKey, MaxKeyLength)
	}
	for i, seg := range strings.Split(key, "/") {
		if err := validateSegment(seg); err != nil {
			return fmt.Errorf("%w: segment %d of %q: %s", ErrInvalidKey, i+1, clip(key), err)
		}
	}
	return nil
}

// ValidatePrefix checks a List prefix: "" or a valid key, optionally
// ending in '/'.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	trimmed := strings.TrimSuffix(prefix, "/")
	if err := ValidateKey(trimmed); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	return nil
}

func validateSegment(seg string) error {
	if seg == "" {
		return errors.New("empty segment (a leading, trailing or doubled '/')")
	}
	if len(seg) > MaxSegmentLength {
		return fmt.Errorf("longer than %d bytes", MaxSegmentLength)
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return errors.New("must start with a letter or digit")
		}
		if !alnum && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("character %q is not allowed (letters, digits, '.', '_', '-')", rune(c))
		}
	}
	return nil
}

// clip shortens a key for an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Janitor is implemented by stores that can leave debris behind a crash:
// a temporary file of a Put the process died in, or a multipart upload
// never completed nor aborted. Blob garbage collection calls it.
type Janitor interface {
	// RemoveAbandoned removes the debris begun before before and returns
	// how much it removed.
	RemoveAbandoned(ctx context.Context, before time.Time) (int, error)
}
