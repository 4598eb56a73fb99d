// Package repo is Levqor's backup repository, format v2: a customer's file
// trees and database dumps stored encrypted, deduplicated and browsable in
// a blob store (package blob), as restic, Kopia and Borg store theirs.
//
// Content is cut into chunks by content-defined chunking (Rabin
// fingerprints, github.com/restic/chunker, with a polynomial derived from
// the account's key so that chunk boundaries reveal nothing across
// tenants). A chunk's id is an HMAC-SHA256 of its bytes under the
// account's key: equal content dedupes within an account and cannot be
// linked across accounts. Each chunk is compressed with zstd and sealed
// with AES-256-GCM, then packed with others into pack files of a few MiB.
// An index maps chunk ids to packs; a snapshot's manifest lists its files
// (names, modes, times, sizes, symlinks, chunk lists). Indexes and
// manifests are sealed too. Under the repository's prefix:
//
//	packs/<sha256 of the pack>    sealed chunks, then the sealed pack header
//	index/<id>                    sealed: which chunks each new pack holds
//	snapshots/<id>                sealed: one snapshot's manifest
//
// A sealed object is a 12-byte nonce followed by AES-256-GCM over its zstd
// compression; the additional data binds it to what it is (a chunk to its
// id), so a pack's bytes cannot be passed off as another object.
package repo

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/restic/chunker"

	"github.com/levqor/levqor/pkg/blob"
)

// KeySize is the size of an account's data key.
const KeySize = 32

// ID names a chunk, a pack, an index or a snapshot: 32 bytes, shown in hex.
type ID [32]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// MarshalText writes the id in hex.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText reads an id in hex.
func (id *ID) UnmarshalText(b []byte) error {
	p, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

// ParseID reads an id in hex.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("repo: %q is not an id (64 hex digits)", s)
	}
	copy(id[:], b)
	return id, nil
}

// Key is what an account's data key gives the repository: the key of
// chunk ids, the AEAD that seals everything, and the chunker's polynomial.
type Key struct {
	idKey []byte
	aead  cipher.AEAD
	pol   chunker.Pol
}

// NewKey derives the repository's keys from an account's data key
// (KeySize random bytes, kept wrapped by a master key). The data key
// destroyed, nothing sealed under it can be read again.
func NewKey(dataKey []byte) (*Key, error) {
	if len(dataKey) != KeySize {
		return nil, fmt.Errorf("repo: a data key is %d bytes, not %d", KeySize, len(dataKey))
	}
	idKey, err := hkdf.Key(sha256.New, dataKey, nil, "levqor repo v2 chunk ids", 32)
	if err != nil {
		return nil, err
	}
	encKey, err := hkdf.Key(sha256.New, dataKey, nil, "levqor repo v2 encryption", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	// 255 blocks of HKDF output: far more tries than DerivePolynomial
	// needs (one in 53 is irreducible).
	stream, err := hkdf.Key(sha256.New, dataKey, nil, "levqor repo v2 chunker polynomial", 255*sha256.Size)
	if err != nil {
		return nil, err
	}
	pol, err := chunker.DerivePolynomial(bytes.NewReader(stream))
	if err != nil {
		return nil, err
	}
	return &Key{idKey: idKey, aead: aead, pol: pol}, nil
}

// NewDataKey makes a new random data key.
func NewDataKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("repo: generating a data key: %w", err)
	}
	return k, nil
}

// chunkID is the keyed id of a chunk's bytes.
func (k *Key) chunkID(data []byte) ID {
	m := hmac.New(sha256.New, k.idKey)
	m.Write(data)
	var id ID
	copy(id[:], m.Sum(nil))
	return id
}

var (
	zenc     *zstd.Encoder
	zdec     *zstd.Decoder
	zstdOnce sync.Once
)

func codecs() (*zstd.Encoder, *zstd.Decoder) {
	zstdOnce.Do(func() {
		zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
		zdec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(64<<20))
	})
	return zenc, zdec
}

// seal compresses plain and seals it, bound to ad.
func (k *Key) seal(plain, ad []byte) []byte { return k.sealTo(nil, plain, ad) }

// sealTo is seal appending to dst, compressing and sealing in place, so
// that a backup that reuses dst allocates no buffer per chunk.
func (k *Key) sealTo(dst, plain, ad []byte) []byte {
	enc, _ := codecs()
	n := k.aead.NonceSize()
	start := len(dst)
	// The nonce, then the compressed form, sealed where it lies.
	dst = slices.Grow(dst, n+len(plain)+len(plain)/64+k.aead.Overhead()+1024)[:start+n]
	_, _ = rand.Read(dst[start:])
	dst = enc.EncodeAll(plain, dst)
	dst = slices.Grow(dst, k.aead.Overhead())
	body := dst[start+n:]
	out := k.aead.Seal(body[:0], dst[start:start+n], body, ad)
	return dst[:start+n+len(out)]
}

// ErrIntegrity means an object does not open with the account's key: it
// was damaged, altered, or sealed under another key.
var ErrIntegrity = errors.New("repo: an object failed its integrity check (damaged, altered, or another account's key)")

// open reverses seal.
func (k *Key) open(sealed, ad []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < n+k.aead.Overhead() {
		return nil, ErrIntegrity
	}
	z, err := k.aead.Open(nil, sealed[:n], sealed[n:], ad)
	if err != nil {
		return nil, ErrIntegrity
	}
	_, dec := codecs()
	plain, err := dec.DecodeAll(z, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIntegrity, err)
	}
	return plain, nil
}

// AccountPrefix is where an account's repository keeps its objects in
// Levqor's blob store.
func AccountPrefix(accountID string) string { return accountID + "/repo/" }

// IsRepoKey reports whether key is an object of an account's repository
// (a pack, an index or a manifest), never a snapshot's own blob.
func IsRepoKey(key string) bool {
	_, rest, ok := strings.Cut(key, "/")
	return ok && strings.HasPrefix(rest, "repo/")
}

// Repo is one account's repository in a blob store.
type Repo struct {
	blobs  blob.Store
	prefix string
	key    *Key

	// Progress, when set, is told how many bytes of the source a backup
	// has read or found unchanged so far.
	Progress func(done int64)

	// Damaged are the index objects Open could not read: damaged,
	// altered, or sealed under another key.
	Damaged []string

	// LockWindow, when set, locks every pack and manifest in the blob store (Lock:
	// S3 Object Lock, or the local store's own) for this long from when
	// it is written, and each prune extends the lock of every pack a kept
	// snapshot still uses once less than half of it is left: a pack
	// cannot be deleted, by Levqor or by anyone holding the bucket, while
	// a snapshot that is kept (or held) needs it, nor for LockWindow
	// after the last one is dropped.
	LockWindow time.Duration

	mu sync.Mutex
	// index says where each stored chunk is; loaded by Open.
	index map[ID]location
	// indexKeys are the index objects Open read, and packs what they say
	// each pack holds (a chunk stored twice is in two packs; index has
	// one of them): what a prune replaces.
	indexKeys []string
	packs     map[ID][]indexChunk
	// obsolete are packs a prune found unused, with when: readers that
	// opened the repository before may still read them, so they are
	// deleted by a later prune, once no such reader can be left.
	obsolete map[ID]time.Time
	// locked is until when each pack is locked, as the indexes say.
	locked map[ID]time.Time
}

// location is where a chunk is: its pack, the sealed bytes' offset and
// length there, and its plain length.
type location struct {
	Pack   ID     `json:"pack"`
	Offset uint32 `json:"offset"`
	Length uint32 `json:"length"`
	Raw    uint32 `json:"raw"`
}

// Open opens the repository under prefix (e.g. "acc_…/repo/") and reads
// its index.
func Open(ctx context.Context, blobs blob.Store, prefix string, key *Key) (*Repo, error) {
	if !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("repo: prefix %q must end in /", prefix)
	}
	// A prune replaces the indexes: one listed may be gone when it is
	// read, and the index that replaced it was not listed. Then the
	// listing is read again.
	var r *Repo
	for attempt := 1; ; attempt++ {
		r = &Repo{blobs: blobs, prefix: prefix, key: key, index: map[ID]location{}, packs: map[ID][]indexChunk{}, obsolete: map[ID]time.Time{},
			locked: map[ID]time.Time{}}
		vanished, err := r.readIndexes(ctx, attempt == 3)
		if err != nil {
			return nil, err
		}
		if !vanished {
			break
		}
	}
	// A chunk is read from a pack no prune found unused, where it has a
	// copy in one (only a prune interrupted halfway leaves a chunk in
	// both).
	for p, chunks := range r.packs {
		if _, gone := r.obsolete[p]; gone {
			continue
		}
		for _, c := range chunks {
			if _, gone := r.obsolete[r.index[c.ID].Pack]; gone {
				r.index[c.ID] = location{Pack: p, Offset: c.Offset, Length: c.Length, Raw: c.Raw}
			}
		}
	}
	return r, nil
}

// readIndexes reads every index into r; vanished reports an index
// listed but gone when read (unless last, when it counts as damaged).
func (r *Repo) readIndexes(ctx context.Context, last bool) (vanished bool, err error) {
	infos, err := r.blobs.List(ctx, r.prefix+"index/")
	if err != nil {
		return false, err
	}
	for _, in := range infos {
		var ix indexFile
		if _, err := r.readSealed(ctx, in.Key, "index", &ix); err != nil {
			if errors.Is(err, blob.ErrNotFound) && !last {
				return true, nil
			}
			if errors.Is(err, ErrIntegrity) || errors.Is(err, blob.ErrNotFound) {
				// The chunks it lists are in no index: the snapshots that
				// need them fail their checks, and the next backup stores
				// them again.
				r.Damaged = append(r.Damaged, in.Key)
				continue
			}
			return false, fmt.Errorf("repo: reading index %s: %w", in.Key, err)
		}
		r.indexKeys = append(r.indexKeys, in.Key)
		for _, p := range ix.Packs {
			if p.LockedUntil.After(r.locked[p.ID]) {
				r.locked[p.ID] = p.LockedUntil
			}
			// Two indexes may list one pack (a prune interrupted after
			// writing its index): each chunk of it counts once.
			for _, c := range p.Chunks {
				if !slices.ContainsFunc(r.packs[p.ID], func(e indexChunk) bool { return e.ID == c.ID }) {
					r.packs[p.ID] = append(r.packs[p.ID], c)
				}
			}
			for _, c := range p.Chunks {
				r.index[c.ID] = location{Pack: p.ID, Offset: c.Offset, Length: c.Length, Raw: c.Raw}
			}
		}
		for _, o := range ix.Obsolete {
			if at, ok := r.obsolete[o.ID]; !ok || o.Since.Before(at) {
				r.obsolete[o.ID] = o.Since
			}
			if o.LockedUntil.After(r.locked[o.ID]) {
				r.locked[o.ID] = o.LockedUntil
			}
		}
	}
	return false, nil
}

// indexFile is one index object: the chunks of the packs one writer made
// or, written by a prune, of every pack that stays, and the packs it
// found unused, to be deleted later.
type indexFile struct {
	Packs    []indexPack    `json:"packs"`
	Obsolete []obsoletePack `json:"obsolete,omitempty"`
}

// obsoletePack is a pack no snapshot uses since Since.
type obsoletePack struct {
	ID          ID        `json:"id"`
	Since       time.Time `json:"since"`
	LockedUntil time.Time `json:"locked_until,omitzero"`
}

type indexPack struct {
	ID     ID           `json:"id"`
	Chunks []indexChunk `json:"chunks"`
	// LockedUntil is until when the pack is locked in the blob store
	// (LockWindow), as far as the writer of this index knows.
	LockedUntil time.Time `json:"locked_until,omitzero"`
}

type indexChunk struct {
	ID     ID     `json:"id"`
	Offset uint32 `json:"offset"`
	Length uint32 `json:"length"`
	Raw    uint32 `json:"raw"`
}

// Chunks is how many distinct chunks the repository holds.
func (r *Repo) Chunks() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.index)
}

func (r *Repo) has(id ID) (location, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.index[id]
	return l, ok
}

// Object is one object of the repository as the blob store keeps it.
type Object struct {
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// writeSealed stores v as JSON sealed under kind, at a random id.
func (r *Repo) writeSealed(ctx context.Context, kind string, v any) (ID, Object, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return ID{}, Object{}, err
	}
	var id ID
	if _, err := rand.Read(id[:]); err != nil {
		return id, Object{}, err
	}
	sealed := r.key.seal(plain, []byte(kind+"/"+id.String()))
	key := r.prefix + kind + "/" + id.String()
	size, sum, err := r.blobs.Put(ctx, key, bytes.NewReader(sealed))
	if err != nil {
		return id, Object{}, err
	}
	if kind == "snapshots" && r.LockWindow > 0 {
		// A manifest is its snapshot's only list of chunks: locked like
		// its packs, or deleting it alone would lose the snapshot.
		if err := r.blobs.Lock(ctx, key, time.Now().Add(r.LockWindow).UTC().Truncate(time.Second)); err != nil {
			return id, Object{}, fmt.Errorf("repo: locking manifest %s: %w", id, err)
		}
	}
	return id, Object{Key: key, Size: size, SHA256: sum}, nil
}

// SnapshotKey is the key of snapshot id's manifest in the blob store.
func (r *Repo) SnapshotKey(id ID) string { return r.prefix + "snapshots/" + id.String() }

// Prefix is where the repository keeps its objects ("acc_…/repo/").
func (r *Repo) Prefix() string { return r.prefix }

// readSealed reads the sealed JSON object under key into v and says how
// it is stored. A missing object wraps blob.ErrNotFound; one that does not
// open, ErrIntegrity.
func (r *Repo) readSealed(ctx context.Context, key, kind string, v any) (Object, error) {
	rc, err := r.blobs.Get(ctx, key)
	if err != nil {
		return Object{}, err
	}
	sealed, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return Object{}, err
	}
	sum := sha256.Sum256(sealed)
	obj := Object{Key: key, Size: int64(len(sealed)), SHA256: hex.EncodeToString(sum[:])}
	id := key[strings.LastIndexByte(key, '/')+1:]
	plain, err := r.key.open(sealed, []byte(kind+"/"+id))
	if err != nil {
		return obj, err
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return obj, fmt.Errorf("%w: %v", ErrIntegrity, err)
	}
	return obj, nil
}
