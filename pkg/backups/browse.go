package backups

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/repo"
	"github.com/levqor/levqor/pkg/store"
)

// Browser reads snapshots of the backup repository for the API: one
// directory's entries, one file, or a subtree as a tar stream, streamed
// with memory flat (a pack at a time). It needs the blob store and the
// master keys; a snapshot found damaged is marked corrupt, with the
// operators' alert, as verification marks it.
type Browser struct {
	w *Worker
}

// NewBrowser returns a Browser over st and blobs, unwrapping data keys
// with sealer; topology names the subject of the corrupt event.
func NewBrowser(st *store.Store, blobs blob.Store, sealer *keys.Sealer, topology bus.Topology) *Browser {
	return &Browser{w: &Worker{Store: st, Blobs: blobs, Sealer: sealer, Topology: topology}}
}

// Entry is one entry of a snapshot's directory.
type Entry struct {
	Name string `json:"name"`
	// Path is relative to the snapshot's root.
	Path    string    `json:"path"`
	Type    string    `json:"type"` // file, dir or symlink
	Mode    string    `json:"mode"` // permissions, octal
	ModTime time.Time `json:"mtime"`
	Size    int64     `json:"size,omitempty"`
	Target  string    `json:"target,omitempty"`
}

// Listing is one directory of a snapshot.
type Listing struct {
	SnapshotID string  `json:"snapshot_id"`
	Path       string  `json:"path"`
	Entries    []Entry `json:"entries"`
}

// open checks that snap can be browsed and reads its manifest; a
// damaged one marks it corrupt. Errors are *command.Error for the client.
func (b *Browser) open(ctx context.Context, snap *store.Snapshot) (*repo.Repo, *repo.Manifest, error) {
	switch {
	case snap.State == store.SnapshotPurging || snap.State == store.SnapshotPurged:
		return nil, nil, conflict("snapshot_purged", "id", fmt.Sprintf("snapshot %s is %s: its data is deleted", snap.ID, snap.State))
	case !isV2(snap):
		why := "it was recorded by an agent: its blob is not a backup Levqor reads"
		if _, ok := SummaryOf(snap); ok {
			why = "it is an archive of format 1, restored whole; snapshots taken since the backup repository (format 2) are browsable"
		}
		return nil, nil, unprocessable("not_browsable", "id", fmt.Sprintf("snapshot %s cannot be browsed: %s", snap.ID, why))
	case b.w.Blobs == nil:
		return nil, nil, blobsMissing()
	}
	r, m, err := b.w.loadV2(ctx, snap)
	if err != nil {
		return nil, nil, b.damaged(ctx, snap, err)
	}
	return r, m, nil
}

// damaged turns an error reading snap into the client's: damage marks
// the snapshot corrupt and is a 422; anything else is returned as it is.
func (b *Browser) damaged(ctx context.Context, snap *store.Snapshot, err error) error {
	var reason string
	switch {
	case errors.Is(err, blob.ErrNotFound):
		reason = fmt.Sprintf("its manifest %s is missing from the blob store", snap.BlobKey)
	case errors.Is(err, repo.ErrIntegrity), errors.Is(err, errNoDataKey):
		reason = err.Error()
	default:
		return err
	}
	b.w.markCorrupt(ctx, bus.Logger(ctx), snap, reason, "browse")
	return unprocessable("snapshot_corrupt", "id", fmt.Sprintf("snapshot %s is corrupt: %s", snap.ID, reason))
}

// List is the directory dir ("" for the root) of snap.
func (b *Browser) List(ctx context.Context, snap *store.Snapshot, dir string) (Listing, error) {
	dir, err := CleanSnapshotPath("path", dir)
	if err != nil {
		return Listing{}, err
	}
	_, m, err := b.open(ctx, snap)
	if err != nil {
		return Listing{}, err
	}
	if n, ok := m.Find(dir); dir != "" && (!ok || n.Type != repo.TypeDir) {
		if ok {
			return Listing{}, unprocessable("not_a_directory", "path", fmt.Sprintf("%s is a %s of snapshot %s, not a directory: download it", dir, n.Type, snap.ID))
		}
		return Listing{}, notFound("path", fmt.Sprintf("snapshot %s holds no directory %s", snap.ID, dir))
	}
	nodes, err := m.List(dir)
	if err != nil {
		return Listing{}, notFound("path", fmt.Sprintf("snapshot %s holds no directory %s", snap.ID, dir))
	}
	out := Listing{SnapshotID: snap.ID, Path: dir, Entries: make([]Entry, 0, len(nodes))}
	for _, n := range nodes {
		out.Entries = append(out.Entries, entryOf(n))
	}
	return out, nil
}

func entryOf(n repo.Node) Entry {
	return Entry{Name: path.Base(n.Path), Path: n.Path, Type: n.Type, Mode: fmt.Sprintf("%04o", n.Mode.Perm()),
		ModTime: n.ModTime.UTC(), Size: n.Size, Target: n.Target}
}

// Download is what GET /v1/snapshots/{id}/download serves: one file's
// bytes, or a directory (or the whole snapshot) as a tar stream.
type Download struct {
	// Name is the file name a client saves it under; ContentType and
	// Size (-1 when not known ahead, as for a tar stream) its headers.
	Name        string
	ContentType string
	Size        int64
	// Write streams it. An error after the first byte can no longer
	// change the answer's status: the caller aborts the answer.
	Write func(ctx context.Context, w io.Writer) error
}

// Download prepares the download of path p ("" for the whole snapshot).
func (b *Browser) Download(ctx context.Context, snap *store.Snapshot, p string) (*Download, error) {
	p, err := CleanSnapshotPath("path", p)
	if err != nil {
		return nil, err
	}
	r, m, err := b.open(ctx, snap)
	if err != nil {
		return nil, err
	}
	n, ok := m.Find(p)
	switch {
	case p == "":
		n = repo.Node{Type: repo.TypeDir}
	case !ok:
		return nil, notFound("path", fmt.Sprintf("snapshot %s holds no %s", snap.ID, p))
	case n.Type == repo.TypeSymlink:
		return nil, unprocessable("not_a_file", "path", fmt.Sprintf("%s is a symlink to %s; download what it points to", p, n.Target))
	}
	d := &Download{Name: path.Base(p), ContentType: "application/octet-stream", Size: n.Size}
	write := func(ctx context.Context, w io.Writer) error { return r.WriteFile(ctx, w, n) }
	if n.Type != repo.TypeFile {
		d.Name, d.ContentType, d.Size = path.Base(p)+".tar", "application/x-tar", -1
		if p == "" {
			d.Name = snap.ID + ".tar"
		}
		write = func(ctx context.Context, w io.Writer) error { return writeTar(ctx, r, m, p, w) }
	}
	// Bounded as a restore is: a prune deletes the packs it found unused
	// only after LEVQOR_BACKUP_TIMEOUT, so a download never outlives them.
	d.Write = func(ctx context.Context, w io.Writer) error {
		ctx, cancel := context.WithTimeout(ctx, b.w.settings().RunTimeout)
		defer cancel()
		return b.streamed(ctx, snap, write(ctx, w))
	}
	return d, nil
}

// streamed marks snap corrupt when err, from streaming it, is damage.
func (b *Browser) streamed(ctx context.Context, snap *store.Snapshot, err error) error {
	if errors.Is(err, repo.ErrIntegrity) {
		return b.damaged(ctx, snap, err)
	}
	return err
}

// writeTar writes the subtree at dir ("" for all) of m as a tar stream,
// paths relative to dir's parent (so that it unpacks into one directory
// named as dir), or to the root for the whole snapshot.
func writeTar(ctx context.Context, r *repo.Repo, m *repo.Manifest, dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	base := path.Dir(dir)
	for _, n := range m.Nodes {
		if dir != "" && n.Path != dir && !hasDirPrefix(n.Path, dir) {
			continue
		}
		name := n.Path
		if dir != "" && base != "." {
			name = n.Path[len(base)+1:]
		}
		h := &tar.Header{Name: name, Mode: int64(n.Mode.Perm()), ModTime: n.ModTime, Format: tar.FormatPAX}
		switch n.Type {
		case repo.TypeDir:
			h.Typeflag, h.Name = tar.TypeDir, name+"/"
		case repo.TypeSymlink:
			h.Typeflag, h.Linkname = tar.TypeSymlink, n.Target
		case repo.TypeFile:
			h.Typeflag, h.Size = tar.TypeReg, n.Size
		default:
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if n.Type == repo.TypeFile {
			if err := r.WriteFile(ctx, tw, n); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

func hasDirPrefix(p, dir string) bool {
	return len(p) > len(dir) && p[len(dir)] == '/' && p[:len(dir)] == dir
}
