package repo

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// RebuildReport is what RebuildIndex did.
type RebuildReport struct {
	// Packs were read and indexed from their own headers; Unreadable
	// could not be (damaged, or sealed under another key), and are left
	// where they are.
	Packs      int      `json:"packs_indexed"`
	Chunks     int      `json:"chunks_indexed"`
	Unreadable []string `json:"unreadable_packs"`
	// Replaced are the index objects the new one replaces.
	Replaced []string `json:"indexes_replaced"`
}

// RebuildIndex writes one index of every pack in the repository, read
// from the packs' own sealed headers, and then deletes the indexes it
// replaces, damaged ones included: what a damaged index named is
// readable again, and the prune, which refuses to run past a damaged
// index, can. Packs a prune had marked obsolete are indexed as any
// other; the next prune marks them again. A pack whose hash is not its
// name, or whose header does not open, is reported and left alone. The
// caller must make sure no backup or prune of this repository runs
// meanwhile (the prune's lease).
func (r *Repo) RebuildIndex(ctx context.Context) (RebuildReport, error) {
	rep := RebuildReport{Unreadable: []string{}, Replaced: []string{}}
	infos, err := r.blobs.List(ctx, r.prefix+"packs/")
	if err != nil {
		return rep, err
	}
	var ix indexFile
	for _, in := range infos {
		id, err := ParseID(strings.TrimPrefix(in.Key, r.prefix+"packs/"))
		if err != nil {
			continue
		}
		chunks, why, err := r.packHeader(ctx, id)
		if err != nil {
			return rep, err
		}
		if why != "" {
			rep.Unreadable = append(rep.Unreadable, fmt.Sprintf("%s: %s", id, why))
			continue
		}
		ix.Packs = append(ix.Packs, indexPack{ID: id, Chunks: chunks})
		rep.Packs++
		rep.Chunks += len(chunks)
	}
	old, err := r.blobs.List(ctx, r.prefix+"index/")
	if err != nil {
		return rep, err
	}
	if _, _, err := r.writeSealed(ctx, "index", ix); err != nil {
		return rep, err
	}
	for _, in := range old {
		if err := r.blobs.Delete(ctx, in.Key); err != nil {
			return rep, err
		}
		rep.Replaced = append(rep.Replaced, in.Key)
	}
	// The repository now reads as the new index says.
	r.mu.Lock()
	r.index, r.packs, r.obsolete = map[ID]location{}, map[ID][]indexChunk{}, map[ID]time.Time{}
	for _, p := range ix.Packs {
		r.packs[p.ID] = p.Chunks
		for _, c := range p.Chunks {
			r.index[c.ID] = location{Pack: p.ID, Offset: c.Offset, Length: c.Length, Raw: c.Raw}
		}
	}
	r.Damaged = nil
	r.mu.Unlock()
	return rep, nil
}

// packHeader reads pack id and returns the chunks its sealed header
// lists, each checked to open and hash to its id; why says why the pack
// cannot be indexed ("" when it can).
func (r *Repo) packHeader(ctx context.Context, id ID) ([]indexChunk, string, error) {
	b, err := r.readPack(ctx, id)
	if err != nil {
		return nil, "", err
	}
	if sha256.Sum256(b) != id {
		return nil, "it does not hash to its name", nil
	}
	if len(b) < 4 {
		return nil, "it is too short to hold a header", nil
	}
	n := int(binary.LittleEndian.Uint32(b[len(b)-4:]))
	if n > len(b)-4 {
		return nil, "its header length passes its start", nil
	}
	plain, err := r.key.open(b[len(b)-4-n:len(b)-4], []byte("pack header"))
	if err != nil {
		return nil, "its header does not open under the account's key", nil
	}
	var chunks []indexChunk
	if err := json.Unmarshal(plain, &chunks); err != nil {
		return nil, "its header is not a list of chunks", nil
	}
	for _, c := range chunks {
		end := uint64(c.Offset) + uint64(c.Length)
		if end > uint64(len(b)-4-n) {
			return nil, fmt.Sprintf("its chunk %s lies past its chunks", c.ID), nil
		}
		data, err := r.key.open(b[c.Offset:end], c.ID[:])
		if err != nil || r.key.chunkID(data) != c.ID {
			return nil, fmt.Sprintf("its chunk %s does not open or hash to its id", c.ID), nil
		}
	}
	return slices.Clip(chunks), "", nil
}
