package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// LoadManifest reads snapshot id's manifest.
func (r *Repo) LoadManifest(ctx context.Context, id ID) (*Manifest, error) {
	var m Manifest
	if err := r.readSealed(ctx, r.prefix+"snapshots/"+id.String(), "snapshots", &m); err != nil {
		return nil, fmt.Errorf("repo: reading snapshot %s: %w", id, err)
	}
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

// reader reads chunks, keeping the last pack it fetched: a restore reads
// the chunks of a file, and the files of a backup, mostly in pack order.
type reader struct {
	r        *Repo
	packID   ID
	pack     []byte
	havePack bool
}

func (rd *reader) chunk(ctx context.Context, id ID) ([]byte, error) {
	loc, ok := rd.r.has(id)
	if !ok {
		return nil, fmt.Errorf("repo: chunk %s is in no index: %w", id, ErrIntegrity)
	}
	if !rd.havePack || rd.packID != loc.Pack {
		rc, err := rd.r.blobs.Get(ctx, rd.r.prefix+"packs/"+loc.Pack.String())
		if err != nil {
			return nil, fmt.Errorf("repo: reading pack %s: %w", loc.Pack, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("repo: reading pack %s: %w", loc.Pack, err)
		}
		rd.packID, rd.pack, rd.havePack = loc.Pack, b, true
	}
	end := uint64(loc.Offset) + uint64(loc.Length)
	if end > uint64(len(rd.pack)) {
		return nil, fmt.Errorf("repo: chunk %s lies past the end of pack %s: %w", id, loc.Pack, ErrIntegrity)
	}
	data, err := rd.r.key.open(rd.pack[loc.Offset:end], id[:])
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

// Restore writes the nodes of m that include accepts (nil: all) under
// target, which must exist: directories, files with their modes and
// modification times, symlinks (made last, so that nothing is written
// through one). A path that would leave target is refused.
func (r *Repo) Restore(ctx context.Context, m *Manifest, target string, include func(Node) bool) (files int, bytes int64, err error) {
	root, err := filepath.Abs(target)
	if err != nil {
		return 0, 0, err
	}
	var dirs, links []Node
	for _, n := range m.Nodes {
		if include != nil && !include(n) {
			continue
		}
		dst := filepath.Join(root, filepath.FromSlash(n.Path))
		if dst != root && !strings.HasPrefix(dst, root+string(filepath.Separator)) {
			return files, bytes, fmt.Errorf("repo: %q leaves the restore target", n.Path)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return files, bytes, err
		}
		switch n.Type {
		case TypeDir:
			if err := os.MkdirAll(dst, 0o700); err != nil {
				return files, bytes, err
			}
			dirs = append(dirs, n)
		case TypeSymlink:
			// Made after every file, so that nothing is written through
			// one.
			links = append(links, n)
		case TypeFile:
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return files, bytes, err
			}
			err = r.WriteFile(ctx, f, n)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return files, bytes, err
			}
			if err := os.Chmod(dst, n.Mode.Perm()); err != nil {
				return files, bytes, err
			}
			if err := os.Chtimes(dst, n.ModTime, n.ModTime); err != nil {
				return files, bytes, err
			}
			files++
			bytes += n.Size
		}
	}
	for _, n := range links {
		dst := filepath.Join(root, filepath.FromSlash(n.Path))
		if err := os.Symlink(n.Target, dst); err != nil && !errors.Is(err, os.ErrExist) {
			return files, bytes, err
		}
	}
	// Directories last, deepest first: writing into one changes its time.
	for i := len(dirs) - 1; i >= 0; i-- {
		dst := filepath.Join(root, filepath.FromSlash(dirs[i].Path))
		if err := os.Chmod(dst, dirs[i].Mode.Perm()); err != nil {
			return files, bytes, err
		}
		if err := os.Chtimes(dst, dirs[i].ModTime, dirs[i].ModTime); err != nil {
			return files, bytes, err
		}
	}
	return files, bytes, nil
}
