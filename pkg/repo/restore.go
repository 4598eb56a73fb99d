package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/levqor/levqor/pkg/blob"
)

// LoadManifest reads snapshot id's manifest.
func (r *Repo) LoadManifest(ctx context.Context, id ID) (*Manifest, error) {
	var m Manifest
	obj, err := r.readSealed(ctx, r.SnapshotKey(id), "snapshots", &m)
	if err != nil {
		return nil, fmt.Errorf("repo: reading snapshot %s: %w", id, err)
	}
	m.Object = obj
	return &m, nil
}

// List is the entries of directory dir of m ("" or "/" for the root),
// sorted by name; an unknown directory is an error wrapping
// os.ErrNotExist.
func (m *Manifest) List(dir string) ([]Node, error) {
	dir = strings.Trim(path.Clean("/"+dir), "/")
	found := dir == ""
	var out []Node
	for _, n := range m.Nodes {
		if n.Path == dir && n.Type == TypeDir {
			found = true
			continue
		}
		parent := path.Dir(n.Path)
		if parent == "." {
			parent = ""
		}
		if parent == dir {
			out = append(out, n)
		}
	}
	if !found {
		return nil, fmt.Errorf("repo: no directory %q in the snapshot: %w", dir, os.ErrNotExist)
	}
	return out, nil
}

// Find is the node of m at path p (slash-separated, relative to the
// root).
func (m *Manifest) Find(p string) (Node, bool) {
	i := sort.Search(len(m.Nodes), func(i int) bool { return m.Nodes[i].Path >= p })
	if i < len(m.Nodes) && m.Nodes[i].Path == p {
		return m.Nodes[i], true
	}
	return Node{}, false
}

// reader reads chunks, each with a ranged read of its pack: restoring or
// downloading one file reads that file's chunks, not the packs around
// them.
type reader struct {
	r *Repo
}

func (rd *reader) chunk(ctx context.Context, id ID) ([]byte, error) {
	loc, ok := rd.r.has(id)
	if !ok {
		return nil, fmt.Errorf("repo: chunk %s is in no index: %w", id, ErrIntegrity)
	}
	rc, err := rd.r.blobs.GetRange(ctx, rd.r.prefix+"packs/"+loc.Pack.String(), int64(loc.Offset), int64(loc.Length))
	if errors.Is(err, blob.ErrNotFound) {
		return nil, fmt.Errorf("repo: pack %s is missing: %w", loc.Pack, ErrIntegrity)
	}
	if err != nil {
		return nil, fmt.Errorf("repo: reading pack %s: %w", loc.Pack, err)
	}
	sealed := make([]byte, loc.Length)
	_, err = io.ReadFull(rc, sealed)
	rc.Close()
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("repo: chunk %s lies past the end of pack %s: %w", id, loc.Pack, ErrIntegrity)
	}
	if err != nil {
		return nil, fmt.Errorf("repo: reading pack %s: %w", loc.Pack, err)
	}
	data, err := rd.r.key.open(sealed, id[:])
	if err != nil {
		return nil, fmt.Errorf("repo: chunk %s in pack %s: %w", id, loc.Pack, err)
	}
	if rd.r.key.chunkID(data) != id {
		return nil, fmt.Errorf("repo: chunk %s does not hash to its id: %w", id, ErrIntegrity)
	}
	return data, nil
}

// WriteFile writes the content of file node n to w.
func (r *Repo) WriteFile(ctx context.Context, w io.Writer, n Node) error {
	if n.Type != TypeFile {
		return fmt.Errorf("repo: %s is a %s, not a file", n.Path, n.Type)
	}
	rd := &reader{r: r}
	var written int64
	for _, id := range n.Chunks {
		data, err := rd.chunk(ctx, id)
		if err != nil {
			return err
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
		written += int64(len(data))
	}
	if written != n.Size {
		return fmt.Errorf("repo: %s restored %d bytes of %d: %w", n.Path, written, n.Size, ErrIntegrity)
	}
	return nil
}

// Check reads every chunk of every file of m, checking each one's MAC
// and id, and the files' sizes: what a restore would read, written
// nowhere. It returns the files and bytes checked; an error wrapping
// ErrIntegrity names what is damaged or missing.
func (r *Repo) Check(ctx context.Context, m *Manifest) (files int, bytes int64, err error) {
	for _, n := range m.Nodes {
		if n.Type != TypeFile {
			continue
		}
		cw := &countWriter{}
		if err := r.WriteFile(ctx, cw, n); err != nil {
			return files, bytes, err
		}
		files++
		bytes += cw.n
	}
	return files, bytes, nil
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// Restore is RestoreTo into the existing directory target.
func (r *Repo) Restore(ctx context.Context, m *Manifest, target string, include func(Node) bool) (files int, bytes int64, err error) {
	root, err := os.OpenRoot(target)
	if err != nil {
		return 0, 0, err
	}
	defer root.Close()
	return r.RestoreTo(ctx, m, root, include)
}

// RestoreTo writes the nodes of m that include accepts (nil: all) into
// root: directories, files with their permissions
// (never setuid, setgid or sticky bits) and modification times, symlinks
// (made last, so that nothing is written through one). Everything is
// written through root: no path, and no symlink already there, leads
// outside it. The root directory's own mode is left as it is.
func (r *Repo) RestoreTo(ctx context.Context, m *Manifest, root *os.Root, include func(Node) bool) (files int, bytes int64, err error) {
	var dirs, links []Node
	for _, n := range m.Nodes {
		if include != nil && !include(n) {
			continue
		}
		name, err := nodeName(n)
		if err != nil {
			return files, bytes, err
		}
		if dir := filepath.Dir(name); dir != "." {
			if err := root.MkdirAll(dir, 0o700); err != nil {
				return files, bytes, err
			}
		}
		switch n.Type {
		case TypeDir:
			if err := root.MkdirAll(name, 0o700); err != nil {
				return files, bytes, err
			}
			dirs = append(dirs, n)
		case TypeSymlink:
			links = append(links, n)
		case TypeFile:
			if err := r.restoreFile(ctx, root, name, n); err != nil {
				return files, bytes, err
			}
			files++
			bytes += n.Size
		}
	}
	for _, n := range links {
		name, _ := nodeName(n)
		if err := root.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			return files, bytes, err
		}
		if err := root.Symlink(n.Target, name); err != nil {
			return files, bytes, err
		}
	}
	// Directories last, deepest first: writing into one changes its time.
	for i := len(dirs) - 1; i >= 0; i-- {
		name, _ := nodeName(dirs[i])
		if err := root.Chmod(name, dirs[i].Mode.Perm()); err != nil {
			return files, bytes, err
		}
		if err := root.Chtimes(name, dirs[i].ModTime, dirs[i].ModTime); err != nil {
			return files, bytes, err
		}
	}
	return files, bytes, nil
}

// nodeName is n's path as a name within the restore target; a path that
// would leave it is refused.
func nodeName(n Node) (string, error) {
	name := filepath.FromSlash(n.Path)
	if n.Path == "" || !filepath.IsLocal(name) {
		return "", fmt.Errorf("repo: %q leaves the restore target: %w", n.Path, ErrIntegrity)
	}
	return name, nil
}

// restoreFile writes file node n to name within root, replacing what is
// there (a symlink is replaced, never followed).
func (r *Repo) restoreFile(ctx context.Context, root *os.Root, name string, n Node) error {
	if fi, err := root.Lstat(name); err == nil && !fi.Mode().IsRegular() {
		if err := root.RemoveAll(name); err != nil {
			return err
		}
	}
	f, err := root.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = r.WriteFile(ctx, f, n)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := root.Chmod(name, n.Mode.Perm()); err != nil {
		return err
	}
	return root.Chtimes(name, n.ModTime, n.ModTime)
}
