package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/restic/chunker"
)

// PackTarget is the most a pack holds, but for a single larger chunk:
// the next chunk that would pass it begins a new pack.
const PackTarget = 4 << 20

// Node is one entry of a snapshot's tree.
type Node struct {
	// Path is slash-separated and relative to the snapshot's root; the
	// root itself is not listed.
	Path    string      `json:"path"`
	Type    string      `json:"type"` // "file", "dir" or "symlink"
	Mode    fs.FileMode `json:"mode"`
	ModTime time.Time   `json:"mtime"`
	Size    int64       `json:"size,omitempty"`
	// Inode tells a file that changed from one that did not, with its
	// size and modification time (as restic does).
	Inode  uint64 `json:"inode,omitempty"`
	Target string `json:"target,omitempty"` // a symlink's
	Chunks []ID   `json:"chunks,omitempty"`
}

// Node types.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
)

// Manifest is one snapshot: its tree, sorted by path, and what storing it
// took.
type Manifest struct {
	Version int       `json:"version"`
	Time    time.Time `json:"time"`
	Nodes   []Node    `json:"nodes"`
	Stats   Stats     `json:"stats"`
	// Object is where the manifest itself is stored, set by the backup
	// that wrote it and by LoadManifest; it is not part of the manifest.
	Object Object `json:"-"`
}

// Stats say what a backup read and stored.
type Stats struct {
	// Files backed up; of them Unchanged, whose chunks were taken from
	// the previous snapshot without reading them.
	Files     int `json:"files"`
	Unchanged int `json:"unchanged"`
	// Bytes is the size of the tree's files; ReadBytes what was read of
	// them.
	Bytes     int64 `json:"bytes"`
	ReadBytes int64 `json:"read_bytes"`
	// Chunks in the snapshot, NewChunks of them stored by this backup,
	// taking StoredBytes (sealed) in NewPacks packs.
	Chunks      int   `json:"chunks"`
	NewChunks   int   `json:"new_chunks"`
	StoredBytes int64 `json:"stored_bytes"`
	NewPacks    int   `json:"new_packs"`
}

// writer packs new chunks and, at the end, records them in one index.
type writer struct {
	r       *Repo
	pack    bytes.Buffer
	entries []indexChunk
	done    []indexPack
	stats   *Stats
	// pending are chunks in the open pack, not yet in r.index.
	pending map[ID]bool
	// chunker, buf and buf2 are reused from file to file: a chunk can be
	// 8 MiB, and a large file is cut into one buffer while the chunk in
	// the other is stored; sealed is where each chunk is compressed and
	// sealed before it is copied into the pack.
	chunker   *chunker.Chunker
	buf, buf2 []byte
	sealed    []byte
	// indexed is set once the index of the writer's packs is stored,
	// indexTried once storing it was begun.
	indexed, indexTried bool
	// progressed is how much of the source was read or found unchanged.
	progressed int64
}

// advance counts n more bytes of the source done and tells Progress.
func (w *writer) advance(n int64) {
	w.progressed += n
	if w.r.Progress != nil {
		w.r.Progress(w.progressed)
	}
}

// add stores data as a chunk unless the repository has it, and returns
// its id.
func (w *writer) add(ctx context.Context, data []byte) (ID, error) {
	return w.addWithID(ctx, w.r.key.chunkID(data), data)
}

// addWithID is add for a chunk whose id is already computed.
func (w *writer) addWithID(ctx context.Context, id ID, data []byte) (ID, error) {
	w.stats.Chunks++
	if _, ok := w.r.has(id); ok || w.pending[id] {
		return id, nil
	}
	w.sealed = w.r.key.sealTo(w.sealed[:0], data, id[:])
	sealed := w.sealed
	// A pack is stored before it would pass PackTarget: it holds at most
	// that, or one chunk larger than it.
	if w.pack.Len() > 0 && w.pack.Len()+len(sealed) > PackTarget {
		if err := w.flush(ctx); err != nil {
			return id, err
		}
	}
	if w.pack.Cap() == 0 {
		w.pack.Grow(max(PackTarget, chunker.MaxSize) + 64<<10)
	}
	w.entries = append(w.entries, indexChunk{ID: id, Offset: uint32(w.pack.Len()), Length: uint32(len(sealed)), Raw: uint32(len(data))})
	w.pack.Write(sealed)
	w.pending[id] = true
	w.stats.NewChunks++
	w.stats.StoredBytes += int64(len(sealed))
	return id, nil
}

// flush stores the open pack: its chunks, then its sealed header (the
// same entries as the index, so a lost index can be rebuilt from the
// packs) and the header's length.
func (w *writer) flush(ctx context.Context) error {
	if len(w.entries) == 0 {
		return nil
	}
	header, err := json.Marshal(w.entries)
	if err != nil {
		return err
	}
	sealed := w.r.key.seal(header, []byte("pack header"))
	w.pack.Write(sealed)
	_ = binary.Write(&w.pack, binary.LittleEndian, uint32(len(sealed)))
	id := ID(sha256.Sum256(w.pack.Bytes()))
	key := w.r.prefix + "packs/" + id.String()
	if _, _, err := w.r.blobs.Put(ctx, key, bytes.NewReader(w.pack.Bytes())); err != nil {
		return fmt.Errorf("repo: storing pack %s: %w", id, err)
	}
	var locked time.Time
	if w.r.LockWindow > 0 {
		locked = time.Now().Add(w.r.LockWindow).UTC().Truncate(time.Second)
		if err := w.r.blobs.Lock(ctx, key, locked); err != nil {
			return fmt.Errorf("repo: locking pack %s: %w", id, err)
		}
	}
	w.stats.NewPacks++
	w.r.mu.Lock()
	for _, e := range w.entries {
		w.r.index[e.ID] = location{Pack: id, Offset: e.Offset, Length: e.Length, Raw: e.Raw}
	}
	w.r.mu.Unlock()
	w.done = append(w.done, indexPack{ID: id, Chunks: w.entries, LockedUntil: locked})
	w.entries, w.pending = nil, map[ID]bool{}
	w.pack.Reset()
	return nil
}

// abort deletes the packs this writer stored, when a backup fails before
// its index is stored: no index names them, so nothing else uses their
// chunks. (Once the index is stored, other backups may.) It is best
// effort: a pack left is removed by the prune.
func (w *writer) abort(ctx context.Context) {
	if w.indexed || w.indexTried {
		// An index whose Put failed may be stored all the same (a lost
		// answer): the packs it names stay, for the prune to judge.
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for _, p := range w.done {
		_ = w.r.blobs.Delete(ctx, w.r.prefix+"packs/"+p.ID.String())
	}
}

// finish stores the last pack and the index of every pack this writer
// made. Until the index is stored, a crash leaves packs no index names:
// their chunks are stored again by the next backup, and the prune step
// removes such packs.
func (w *writer) finish(ctx context.Context) error {
	if err := w.flush(ctx); err != nil {
		return err
	}
	if len(w.done) == 0 {
		return nil
	}
	w.indexTried = true
	_, _, err := w.r.writeSealed(ctx, "index", indexFile{Packs: w.done})
	w.indexed = err == nil
	return err
}

// chunkStream cuts r into chunks and stores those the repository lacks.
func (w *writer) chunkStream(ctx context.Context, r io.Reader, size int64) ([]ID, int64, error) {
	if w.chunker == nil {
		w.chunker, w.buf = chunker.New(r, w.r.key.pol), make([]byte, chunker.MaxSize)
	} else {
		w.chunker.Reset(r, w.r.key.pol)
	}
	cuts, stop := w.cut(size)
	defer stop()
	var ids []ID
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return nil, n, err
		}
		k := cuts()
		if errors.Is(k.err, io.EOF) {
			return ids, n, nil
		}
		if k.err != nil {
			return nil, n, k.err
		}
		n += int64(len(k.data))
		w.advance(int64(len(k.data)))
		id, err := w.addWithID(ctx, k.id, k.data)
		if err != nil {
			return nil, n, err
		}
		ids = append(ids, id)
		k.done()
	}
}

// piece is one chunk cut from a stream, with its id; done hands its
// buffer back.
type piece struct {
	id   ID
	data []byte
	err  error
	done func()
}

// pipelineAbove is the size from which a stream is cut in a goroutine of
// its own while the chunks already cut are hashed, compressed, sealed and
// stored: the two halves of a backup's work then run on two cores. A
// smaller file is one or two chunks, not worth the hand-over.
const pipelineAbove = 4 * chunker.MinSize

// cut returns the next chunk of the writer's chunker each time it is
// called, and a stop to call once done. A stream larger than
// pipelineAbove (or of unknown size, -1) is cut ahead in a goroutine,
// into one of two buffers, while the previous chunk is stored.
func (w *writer) cut(size int64) (next func() piece, stop func()) {
	c := w.chunker
	if size >= 0 && size < pipelineAbove {
		return func() piece {
			chunk, err := c.Next(w.buf)
			p := piece{data: chunk.Data, err: err, done: func() {}}
			if err == nil {
				p.id = w.r.key.chunkID(chunk.Data)
			}
			return p
		}, func() {}
	}
	if w.buf2 == nil {
		w.buf2 = make([]byte, chunker.MaxSize)
	}
	free := make(chan []byte, 2)
	free <- w.buf
	free <- w.buf2
	pieces := make(chan piece, 1)
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			var b []byte
			select {
			case b = <-free:
			case <-quit:
				return
			}
			chunk, err := c.Next(b)
			p := piece{data: chunk.Data, err: err, done: func() { free <- chunk.Data[:0] }}
			if err == nil {
				// The chunk's id is hashed here, on the cutting side, which
				// has time to spare: the storing side is the slower.
				p.id = w.r.key.chunkID(chunk.Data)
			}
			select {
			case pieces <- p:
			case <-quit:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	ended := false
	return func() piece {
			p := <-pieces
			ended = p.err != nil
			return p
		}, func() {
			close(quit)
			if ended {
				<-finished
				return
			}
			// Stopped midway: the goroutine may be blocked reading (a pipe
			// whose writer waits for this to return). It keeps the chunker
			// and buffers until its read ends; the writer makes new ones.
			w.chunker, w.buf, w.buf2 = nil, nil, nil
		}
}

// ErrSourceChanged means a file was replaced by another between the
// listing of its directory and its reading: the backup stops, to be run
// again, rather than store a file it did not list.
var ErrSourceChanged = errors.New("repo: the source changed while it was read")

// readFile cuts the regular file name of root, listed as info, into
// chunks: opened without blocking (a pipe swapped in is refused, never
// waited on) and checked to be the file listed, then read up to size.
func (w *writer) readFile(ctx context.Context, rt *os.Root, name string, info fs.FileInfo, size int64) ([]ID, int64, error) {
	f, err := rt.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() || !os.SameFile(info, fi) {
		return nil, 0, fmt.Errorf("%w: %s was replaced after it was listed", ErrSourceChanged, name)
	}
	return w.chunkStream(ctx, io.LimitReader(f, size), size)
}

// BackupDirectory stores the tree under root as a snapshot and returns its
// id and manifest. prev, the source's previous snapshot (nil for none),
// lets it skip reading files whose size, modification time and inode are
// unchanged: their chunks are taken from prev.
func (r *Repo) BackupDirectory(ctx context.Context, root string, prev *Manifest) (ID, *Manifest, error) {
	switch st, err := os.Stat(root); {
	case err != nil:
		return ID{}, nil, fmt.Errorf("source directory: %w", err)
	case !st.IsDir():
		return ID{}, nil, fmt.Errorf("source directory: %s is not a directory", root)
	}
	// Everything is read through the root: a directory or file swapped
	// for a symbolic link while the backup runs cannot lead it outside.
	rt, err := os.OpenRoot(root)
	if err != nil {
		return ID{}, nil, fmt.Errorf("source directory: %w", err)
	}
	defer rt.Close()
	m := &Manifest{Version: 2, Time: time.Now().UTC()}
	w := &writer{r: r, stats: &m.Stats, pending: map[ID]bool{}}
	before := map[string]*Node{}
	if prev != nil {
		for i := range prev.Nodes {
			before[prev.Nodes[i].Path] = &prev.Nodes[i]
		}
	}
	err = fs.WalkDir(rt.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil && p != "." && errors.Is(err, fs.ErrNotExist):
			return nil // removed since it was listed: not in this snapshot
		case err != nil:
			return err
		case p == ".":
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		n := Node{Path: p, Mode: info.Mode(), ModTime: info.ModTime().UTC()}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n.Inode = st.Ino
		}
		name := filepath.FromSlash(p)
		switch {
		case d.IsDir():
			n.Type = TypeDir
		case info.Mode()&fs.ModeSymlink != 0:
			n.Type = TypeSymlink
			if n.Target, err = rt.Readlink(name); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			n.Type, n.Size = TypeFile, info.Size()
			m.Stats.Files++
			if p := before[n.Path]; p != nil && p.Type == TypeFile && p.Size == n.Size && p.ModTime.Equal(n.ModTime) && p.Inode == n.Inode && r.holdsAll(p.Chunks) {
				n.Chunks = p.Chunks
				m.Stats.Unchanged++
				m.Stats.Chunks += len(p.Chunks)
				m.Stats.Bytes += n.Size
				w.advance(n.Size)
				break
			}
			ids, read, err := w.readFile(ctx, rt, name, info, n.Size)
			if errors.Is(err, fs.ErrNotExist) {
				m.Stats.Files--
				return nil
			}
			if err != nil {
				return fmt.Errorf("repo: reading %s: %w", n.Path, err)
			}
			// What was read is what the snapshot holds: a file that
			// shrank meanwhile is recorded as read, one that grew up to
			// its listed size; its new size and time make the next run
			// read it again.
			n.Chunks, n.Size = ids, read
			m.Stats.Bytes += read
			m.Stats.ReadBytes += read
		default:
			return nil // devices, sockets, pipes: not backed up
		}
		m.Nodes = append(m.Nodes, n)
		return nil
	})
	if err != nil {
		w.abort(ctx)
		return ID{}, nil, err
	}
	sort.Slice(m.Nodes, func(i, j int) bool { return m.Nodes[i].Path < m.Nodes[j].Path })
	if err := w.finish(ctx); err != nil {
		w.abort(ctx)
		return ID{}, nil, err
	}
	id, obj, err := r.writeSealed(ctx, "snapshots", m)
	m.Object = obj
	return id, m, err
}

// BackupStream stores what rd yields (a database dump) as a snapshot of
// one file named name.
func (r *Repo) BackupStream(ctx context.Context, name string, rd io.Reader) (ID, *Manifest, error) {
	m := &Manifest{Version: 2, Time: time.Now().UTC()}
	w := &writer{r: r, stats: &m.Stats, pending: map[ID]bool{}}
	ids, n, err := w.chunkStream(ctx, rd, -1)
	if err != nil {
		w.abort(ctx)
		return ID{}, nil, err
	}
	m.Stats.Files, m.Stats.Bytes, m.Stats.ReadBytes = 1, n, n
	m.Nodes = []Node{{Path: name, Type: TypeFile, Mode: 0o600, ModTime: m.Time, Size: n, Chunks: ids}}
	if err := w.finish(ctx); err != nil {
		w.abort(ctx)
		return ID{}, nil, err
	}
	id, obj, err := r.writeSealed(ctx, "snapshots", m)
	m.Object = obj
	return id, m, err
}

// holdsAll reports whether the repository holds every chunk of ids (a
// previous snapshot's chunks may have been pruned since).
func (r *Repo) holdsAll(ids []ID) bool {
	for _, id := range ids {
		if _, ok := r.has(id); !ok {
			return false
		}
	}
	return true
}
