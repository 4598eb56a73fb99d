package repo

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/levqor/levqor/pkg/blob"
)

// PackReport is what CheckPacks found.
type PackReport struct {
	// Packs are the packs the index names; Read of them were read,
	// Bytes in all, and Chunks chunks opened.
	Packs  int   `json:"packs"`
	Read   int   `json:"packs_read"`
	Bytes  int64 `json:"bytes_read"`
	Chunks int   `json:"chunks_checked"`
	// Missing are packs the index names that the blob store lacks;
	// Corrupt, packs read that failed, with why.
	Missing []ID          `json:"missing_packs"`
	Corrupt map[ID]string `json:"corrupt_packs"`
	// Unindexed counts pack objects no index names: left by a run that
	// stopped after uploading them (a prune removes them). Packs a prune
	// found unused and will delete are not counted.
	Unindexed int `json:"unindexed_packs"`
	// DamagedIndexes are the index objects that did not open.
	DamagedIndexes []string `json:"damaged_indexes"`
}

// Bad reports whether pack id was found missing or corrupt, and why.
func (p *PackReport) Bad(id ID) (string, bool) {
	if why, ok := p.Corrupt[id]; ok {
		return why, true
	}
	if slices.Contains(p.Missing, id) {
		return fmt.Sprintf("pack %s is missing", id), true
	}
	return "", false
}

// CheckPacks looks for every pack the index names in the blob store,
// and reads those selected accepts (nil: all): each pack's SHA-256 must be
// its name, and each chunk the index places in it must open under the
// account's key (its MAC) and hash to its id. A pack that fails is
// reported, not returned as an error; an error means the blob store
// could not be read, which proves nothing.
func (r *Repo) CheckPacks(ctx context.Context, selected func(ID) bool) (PackReport, error) {
	rep := PackReport{Missing: []ID{}, Corrupt: map[ID]string{}, DamagedIndexes: slices.Clone(r.Damaged)}
	if rep.DamagedIndexes == nil {
		rep.DamagedIndexes = []string{}
	}
	r.mu.Lock()
	byPack := map[ID][]indexChunk{}
	for id, l := range r.index {
		byPack[l.Pack] = append(byPack[l.Pack], indexChunk{ID: id, Offset: l.Offset, Length: l.Length, Raw: l.Raw})
	}
	r.mu.Unlock()
	rep.Packs = len(byPack)

	infos, err := r.blobs.List(ctx, r.prefix+"packs/")
	if err != nil {
		return rep, err
	}
	stored := make(map[ID]bool, len(infos))
	for _, in := range infos {
		id, err := ParseID(strings.TrimPrefix(in.Key, r.prefix+"packs/"))
		if err != nil {
			continue // not a pack of this format: nothing the index can name
		}
		stored[id] = true
		if _, ok := byPack[id]; !ok && !r.isObsolete(id) {
			rep.Unindexed++
		}
	}
	ids := make([]ID, 0, len(byPack))
	for id := range byPack {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b ID) int { return strings.Compare(a.String(), b.String()) })
	for _, id := range ids {
		if !stored[id] {
			rep.Missing = append(rep.Missing, id)
			continue
		}
		if selected != nil && !selected(id) {
			continue
		}
		why, n, err := r.checkPack(ctx, id, byPack[id])
		switch {
		case errors.Is(err, blob.ErrNotFound):
			rep.Missing = append(rep.Missing, id)
			continue
		case err != nil:
			return rep, err
		}
		rep.Read++
		rep.Bytes += n
		rep.Chunks += len(byPack[id])
		if why != "" {
			rep.Corrupt[id] = why
		}
	}
	return rep, nil
}

// checkPack reads pack id and checks it and its chunks; it returns why
// it is corrupt ("" when intact) and its size.
func (r *Repo) checkPack(ctx context.Context, id ID, chunks []indexChunk) (string, int64, error) {
	rc, err := r.blobs.Get(ctx, r.prefix+"packs/"+id.String())
	if err != nil {
		return "", 0, err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return "", 0, fmt.Errorf("repo: reading pack %s: %w", id, err)
	}
	if sha256.Sum256(b) != id {
		return fmt.Sprintf("pack %s does not hash to its name: damaged or altered", id), int64(len(b)), nil
	}
	for _, c := range chunks {
		end := uint64(c.Offset) + uint64(c.Length)
		if end > uint64(len(b)) {
			return fmt.Sprintf("pack %s ends before its chunk %s", id, c.ID), int64(len(b)), nil
		}
		data, err := r.key.open(b[c.Offset:end], c.ID[:])
		if err != nil {
			return fmt.Sprintf("pack %s: chunk %s does not open: %v", id, c.ID, err), int64(len(b)), nil
		}
		if r.key.chunkID(data) != c.ID {
			return fmt.Sprintf("pack %s: chunk %s does not hash to its id", id, c.ID), int64(len(b)), nil
		}
	}
	return "", int64(len(b)), nil
}

// Damage says why the snapshot of m cannot be restored, given what
// CheckPacks found: a chunk in no index, or in a pack found missing or
// corrupt; "" when every chunk it needs lies in a pack found sound (or
// not read). Only the index is consulted: nothing is read.
func (r *Repo) Damage(m *Manifest, packs *PackReport) string {
	for _, n := range m.Nodes {
		var size int64
		for _, c := range n.Chunks {
			l, ok := r.has(c)
			if !ok {
				return fmt.Sprintf("%s: chunk %s is in no index", n.Path, c)
			}
			if why, bad := packs.Bad(l.Pack); bad {
				return fmt.Sprintf("%s: %s", n.Path, why)
			}
			size += int64(l.Raw)
		}
		if n.Type == TypeFile && size != n.Size {
			return fmt.Sprintf("%s: its chunks hold %d bytes, the manifest says %d", n.Path, size, n.Size)
		}
	}
	return ""
}

// isObsolete reports whether a prune found pack id unused.
func (r *Repo) isObsolete(id ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.obsolete[id]
	return ok
}
