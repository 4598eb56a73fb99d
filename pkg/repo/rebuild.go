package repo

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// RebuildReport is what RebuildIndex did.
type RebuildReport struct {
	// Packs were read and indexed; Unreadable had no chunk that could be
	// placed (damaged, or sealed under another key).
	Packs      int      `json:"packs_indexed"`
	Chunks     int      `json:"chunks_indexed"`
	Unreadable []string `json:"unreadable_packs"`
	// BadChunks failed their check and were left out.
	BadChunks int `json:"bad_chunks"`
	// Replaced are the damaged index objects the new one replaces.
	Replaced []string `json:"indexes_replaced"`
}

// RebuildIndex writes one index of every pack in the repository, read
// from the packs' own sealed headers (or, for a pack whose header does
// not open, from the readable indexes), each chunk checked to open and
// hash to its id, and then deletes the indexes that do not open: what a
// damaged index named is readable again, and the prune, which refuses
// to run past a damaged index, can. Readable indexes stay (the new one
// repeats them; Open counts each chunk once). A chunk that fails its
// check is left out and counted; a pack none of whose chunks can be
// placed is reported. The caller must make sure no backup or prune of
// this repository runs meanwhile (the prune's lease).
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
		r.mu.Lock()
		known := slices.Clone(r.packs[id])
		r.mu.Unlock()
		chunks, bad, why, err := r.packChunks(ctx, id, known)
		if err != nil {
			return rep, err
		}
		rep.BadChunks += bad
		if len(chunks) == 0 {
			rep.Unreadable = append(rep.Unreadable, fmt.Sprintf("%s: %s", id, why))
			continue
		}
		ix.Packs = append(ix.Packs, indexPack{ID: id, Chunks: chunks, LockedUntil: r.locked[id]})
		rep.Packs++
		rep.Chunks += len(chunks)
	}
	if _, _, err := r.writeSealed(ctx, "index", ix); err != nil {
		return rep, err
	}
	for _, key := range r.Damaged {
		if err := r.blobs.Delete(ctx, key); err != nil {
			return rep, err
		}
		rep.Replaced = append(rep.Replaced, key)
	}
	// The repository now reads as the indexes say.
	r.mu.Lock()
	for _, p := range ix.Packs {
		for _, c := range p.Chunks {
			if !slices.ContainsFunc(r.packs[p.ID], func(e indexChunk) bool { return e.ID == c.ID }) {
				r.packs[p.ID] = append(r.packs[p.ID], c)
			}
			if _, ok := r.index[c.ID]; !ok {
				r.index[c.ID] = location{Pack: p.ID, Offset: c.Offset, Length: c.Length, Raw: c.Raw}
			}
		}
	}
	r.Damaged = nil
	r.mu.Unlock()
	return rep, nil
}

// packChunks reads pack id and returns the chunks it holds that open
// under the account's key and hash to their ids: those its sealed
// header lists or, when the header does not open, those known lists
// (from readable indexes). bad counts the chunks that fail; why says why
// none could be placed.
func (r *Repo) packChunks(ctx context.Context, id ID, known []indexChunk) (chunks []indexChunk, bad int, why string, err error) {
	b, err := r.readPack(ctx, id)
	if err != nil {
		return nil, 0, "", err
	}
	listed, why := r.header(b)
	if listed == nil {
		listed = known
	}
	for _, c := range listed {
		end := uint64(c.Offset) + uint64(c.Length)
		if end > uint64(len(b)) {
			bad++
			continue
		}
		data, err := r.key.open(b[c.Offset:end], c.ID[:])
		if err != nil || r.key.chunkID(data) != c.ID {
			bad++
			continue
		}
		chunks = append(chunks, c)
	}
	if len(chunks) == 0 && why == "" {
		why = "none of its chunks opens"
	}
	return chunks, bad, why, nil
}

// header reads the sealed list of chunks at the end of pack b, or says
// why it cannot.
func (r *Repo) header(b []byte) ([]indexChunk, string) {
	if len(b) < 4 {
		return nil, "it is too short to hold a header"
	}
	n := int(binary.LittleEndian.Uint32(b[len(b)-4:]))
	if n > len(b)-4 {
		return nil, "its header length passes its start"
	}
	plain, err := r.key.open(b[len(b)-4-n:len(b)-4], []byte("pack header"))
	if err != nil {
		return nil, "its header does not open under the account's key"
	}
	var chunks []indexChunk
	if err := json.Unmarshal(plain, &chunks); err != nil {
		return nil, "its header is not a list of chunks"
	}
	return chunks, ""
}
