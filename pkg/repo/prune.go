package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/levqor/levqor/pkg/blob"
)

// RepackShare is the share of a pack's bytes that must be unused before
// a prune rewrites it: below it, the pack is kept whole (rewriting it
// would cost more than the space it frees).
const RepackShare = 0.5

// PruneReport is what a prune did.
type PruneReport struct {
	// Snapshots are the manifests kept, and Chunks the chunks they use.
	Snapshots int `json:"snapshots"`
	Chunks    int `json:"chunks"`
	// PacksUnused held no chunk a kept manifest uses; PacksRepacked had
	// their used chunks copied into PacksWritten new packs. Both are
	// marked obsolete in the new index and deleted by a later prune, once
	// PruneOptions.ReadGrace has passed; PacksDeleted are those deleted
	// now.
	PacksUnused   int `json:"packs_unused"`
	PacksRepacked int `json:"packs_repacked"`
	PacksWritten  int `json:"packs_written"`
	PacksDeleted  int `json:"packs_deleted"`
	// Unindexed are packs no index names (left by runs that stopped
	// before their index), deleted once older than PruneOptions.MinAge.
	Unindexed int `json:"unindexed_packs_deleted"`
	// Manifests are manifests of no kept snapshot, deleted once older
	// than PruneOptions.MinAge.
	Manifests int `json:"manifests_deleted"`
	// IndexesReplaced were replaced by one index of what stays.
	IndexesReplaced int `json:"indexes_replaced"`
	// LocksExtended counts the packs and manifests locked for another
	// LockWindow.
	LocksExtended int `json:"locks_extended"`
	// BytesFreed is what the deleted objects held, BytesWritten what the
	// new packs and index hold.
	BytesFreed   int64 `json:"bytes_freed"`
	BytesWritten int64 `json:"bytes_written"`
}

// PruneOptions say what a prune keeps.
type PruneOptions struct {
	// Keep are the manifests of the snapshots that stay.
	Keep []ID
	// MinAge: an object no index or kept snapshot names is deleted only
	// once older than this, so that a run still writing is never robbed.
	MinAge time.Duration
	// ReadGrace: a pack found unused is deleted only this long after, so
	// that a restore or a check that opened the repository before still
	// reads it.
	ReadGrace time.Duration
	Now       time.Time
}

// ErrPruneRefused means the prune found something it cannot be sure
// about (a damaged index, a manifest that does not open) and deleted
// nothing.
var ErrPruneRefused = errors.New("repo: prune refused")

// Prune removes what none of the kept manifests uses: packs none of
// whose chunks is used are marked obsolete; packs mostly unused
// (RepackShare) have their used chunks copied into new packs and are
// marked obsolete too; packs obsolete for longer than the read grace
// are deleted, as are objects no index or kept snapshot names (packs and
// manifests of runs that stopped halfway) older than the minimum age.
// The caller must make sure no backup of this repository runs
// meanwhile, or that one that does is not recorded (it may rely on a
// chunk the prune deletes).
//
// The steps are ordered so that a crash, or a failed call to the blob
// store, at any point leaves every chunk a kept manifest uses readable:
//
//  1. read every kept manifest (one that does not open refuses the
//     prune: what it uses is unknown), and every index (a damaged one
//     refuses it too);
//  2. write the new packs of the repacked chunks, then one new index of
//     every chunk that stays, where it stays, and of the obsolete packs;
//  3. delete the indexes read in step 1: from here on only the new index
//     names packs, and none of those about to be deleted;
//  4. delete the packs obsolete for longer than the read grace, then the
//     old unindexed packs and manifests.
//
// A prune interrupted before step 3 leaves new packs and perhaps a new
// index that duplicate what the old ones say (readers prefer a pack that
// is not obsolete); one interrupted after it leaves packs no index names.
// The next prune removes both.
func (r *Repo) Prune(ctx context.Context, o PruneOptions) (PruneReport, error) {
	var rep PruneReport
	if len(r.Damaged) > 0 {
		return rep, fmt.Errorf("%w: indexes %s do not open: what their packs hold is unknown", ErrPruneRefused, strings.Join(r.Damaged, ", "))
	}
	// 1. What the kept manifests use.
	used := map[ID]bool{}
	for _, id := range o.Keep {
		m, err := r.LoadManifest(ctx, id)
		if err != nil {
			return rep, fmt.Errorf("%w: manifest %s: %v", ErrPruneRefused, id, err)
		}
		for _, n := range m.Nodes {
			for _, c := range n.Chunks {
				if _, ok := r.has(c); !ok {
					return rep, fmt.Errorf("%w: manifest %s uses chunk %s, which no index names", ErrPruneRefused, id, c)
				}
				used[c] = true
			}
		}
	}
	rep.Snapshots, rep.Chunks = len(o.Keep), len(used)
	infos, err := r.blobs.List(ctx, r.prefix)
	if err != nil {
		return rep, err
	}
	stored := map[string]blob.Info{}
	for _, in := range infos {
		stored[in.Key] = in
	}

	// Which packs stay, which are rewritten, which become obsolete. Each
	// used chunk stays in one pack, one not obsolete if it can.
	r.mu.Lock()
	ids := make([]ID, 0, len(r.packs))
	for p := range r.packs {
		ids = append(ids, p)
	}
	slices.SortFunc(ids, func(a, b ID) int { return strings.Compare(a.String(), b.String()) })
	home := map[ID]ID{}
	for _, p := range ids {
		_, old := r.obsolete[p]
		for _, c := range r.packs[p] {
			if !used[c.ID] {
				continue
			}
			if cur, ok := home[c.ID]; !ok {
				home[c.ID] = p
			} else if _, curOld := r.obsolete[cur]; curOld && !old {
				home[c.ID] = p
			}
		}
	}
	obsolete := map[ID]time.Time{}
	var repack, deletable []ID
	stays := map[ID][]indexChunk{}
	for _, p := range ids {
		var live []indexChunk
		var liveBytes, allBytes int64
		for _, c := range r.packs[p] {
			allBytes += int64(c.Length)
			if home[c.ID] == p && !slices.ContainsFunc(live, func(l indexChunk) bool { return l.ID == c.ID }) {
				live = append(live, c)
				liveBytes += int64(c.Length)
			}
		}
		since, old := r.obsolete[p]
		switch {
		case len(live) == 0 && old:
			obsolete[p] = since
			if o.Now.Sub(since) >= o.ReadGrace && !r.locked[p].After(o.Now) {
				deletable = append(deletable, p)
			}
		case len(live) == 0:
			obsolete[p] = o.Now
			rep.PacksUnused++
		case float64(allBytes-liveBytes) >= RepackShare*float64(allBytes):
			repack = append(repack, p)
			stays[p] = live
		default:
			stays[p] = live // a pack still used is no longer obsolete
		}
	}
	for p, since := range r.obsolete {
		if _, listed := r.packs[p]; !listed {
			obsolete[p] = since // listed by an index only as obsolete
			if o.Now.Sub(since) >= o.ReadGrace && !r.locked[p].After(o.Now) {
				deletable = append(deletable, p)
			}
		}
	}
	r.mu.Unlock()
	slices.SortFunc(deletable, func(a, b ID) int { return strings.Compare(a.String(), b.String()) })
	// The store has the last word on locks (a lock the index does not
	// know of, a clock that differs): a pack it still holds locked stays
	// obsolete, with the lock it has, for a later prune.
	storeLocks := map[ID]time.Time{}
	if r.LockWindow > 0 {
		deletable = slices.DeleteFunc(deletable, func(p ID) bool {
			until, err := r.blobs.LockedUntil(ctx, r.prefix+"packs/"+p.String())
			if err == nil && !until.IsZero() {
				storeLocks[p] = until
				return true
			}
			return false
		})
	}
	var strayPacks, strayManifests []string
	keepSet := map[string]bool{}
	for _, id := range o.Keep {
		keepSet[r.SnapshotKey(id)] = true
	}
	for key, in := range stored {
		if o.Now.Sub(in.ModTime) < o.MinAge {
			continue
		}
		switch rest := strings.TrimPrefix(key, r.prefix); {
		case strings.HasPrefix(rest, "packs/"):
			if id, err := ParseID(strings.TrimPrefix(rest, "packs/")); err == nil {
				_, indexed := r.packs[id]
				_, old := obsolete[id]
				if !indexed && !old {
					strayPacks = append(strayPacks, key)
				}
			}
		case strings.HasPrefix(rest, "snapshots/") && !keepSet[key]:
			strayManifests = append(strayManifests, key)
		}
	}
	slices.Sort(strayPacks)
	slices.Sort(strayManifests)
	// The packs that stay and whose lock has less than half its window
	// left are locked again, for a whole window from now.
	var extend []ID
	if r.LockWindow > 0 {
		for p := range stays {
			if !slices.Contains(repack, p) && r.locked[p].Before(o.Now.Add(r.LockWindow/2)) {
				extend = append(extend, p)
			}
		}
		slices.SortFunc(extend, func(a, b ID) int { return strings.Compare(a.String(), b.String()) })
	}
	n, err := r.extendManifestLocks(ctx, o.Keep, o.Now)
	rep.LocksExtended += n
	if err != nil {
		return rep, err
	}
	if rep.PacksUnused == 0 && len(repack) == 0 && len(deletable) == 0 && len(strayPacks) == 0 && len(strayManifests) == 0 &&
		len(r.indexKeys) <= 1 && len(extend) == 0 {
		return rep, nil
	}
	locks := maps.Clone(r.locked)
	if locks == nil {
		locks = map[ID]time.Time{}
	}
	maps.Copy(locks, storeLocks)
	for _, p := range extend {
		until := o.Now.Add(r.LockWindow).UTC().Truncate(time.Second)
		if err := r.blobs.Lock(ctx, r.prefix+"packs/"+p.String(), until); err != nil {
			return rep, fmt.Errorf("repo: extending the lock of pack %s: %w", p, err)
		}
		locks[p] = until
		rep.LocksExtended++
	}

	// 2. The new packs, then the index of everything that stays.
	w := &writer{r: r, stats: &Stats{}, pending: map[ID]bool{}}
	for _, p := range repack {
		b, err := r.readPack(ctx, p)
		if err != nil {
			return rep, err
		}
		for _, c := range stays[p] {
			end := uint64(c.Offset) + uint64(c.Length)
			if end > uint64(len(b)) {
				return rep, fmt.Errorf("%w: pack %s ends before its chunk %s", ErrIntegrity, p, c.ID)
			}
			if err := w.addSealed(ctx, c, b[c.Offset:end]); err != nil {
				return rep, err
			}
		}
		delete(stays, p)
		obsolete[p] = o.Now
	}
	if err := w.flush(ctx); err != nil {
		return rep, err
	}
	ix := indexFile{}
	for p, live := range stays {
		ix.Packs = append(ix.Packs, indexPack{ID: p, Chunks: live, LockedUntil: locks[p]})
	}
	ix.Packs = append(ix.Packs, w.done...)
	slices.SortFunc(ix.Packs, func(a, b indexPack) int { return strings.Compare(a.ID.String(), b.ID.String()) })
	for p, since := range obsolete {
		if !slices.Contains(deletable, p) {
			ix.Obsolete = append(ix.Obsolete, obsoletePack{ID: p, Since: since, LockedUntil: locks[p]})
		}
	}
	slices.SortFunc(ix.Obsolete, func(a, b obsoletePack) int { return strings.Compare(a.ID.String(), b.ID.String()) })
	_, obj, err := r.writeSealed(ctx, "index", ix)
	if err != nil {
		return rep, err
	}
	rep.PacksRepacked, rep.PacksWritten, rep.BytesWritten = len(repack), len(w.done), w.stats.StoredBytes+obj.Size

	// 3. The old indexes.
	for _, key := range r.indexKeys {
		if err := r.blobs.Delete(ctx, key); err != nil {
			return rep, err
		}
		rep.IndexesReplaced++
		rep.BytesFreed += stored[key].Size
	}

	// 4. What no index names any more, or only as obsolete for long.
	del := func(key string, n *int) error {
		if err := r.blobs.Delete(ctx, key); errors.Is(err, blob.ErrLocked) {
			return nil // still locked: a later prune deletes it
		} else if err != nil {
			return err
		}
		*n++
		rep.BytesFreed += stored[key].Size
		return nil
	}
	for _, p := range deletable {
		if err := del(r.prefix+"packs/"+p.String(), &rep.PacksDeleted); err != nil {
			return rep, err
		}
	}
	for _, key := range strayPacks {
		if err := del(key, &rep.Unindexed); err != nil {
			return rep, err
		}
	}
	for _, key := range strayManifests {
		if err := del(key, &rep.Manifests); err != nil {
			return rep, err
		}
	}

	// The repository now reads as the new index says.
	r.mu.Lock()
	r.packs, r.index, r.obsolete = map[ID][]indexChunk{}, map[ID]location{}, map[ID]time.Time{}
	for _, p := range ix.Packs {
		r.packs[p.ID] = p.Chunks
		for _, c := range p.Chunks {
			r.index[c.ID] = location{Pack: p.ID, Offset: c.Offset, Length: c.Length, Raw: c.Raw}
		}
	}
	for _, op := range ix.Obsolete {
		r.obsolete[op.ID] = op.Since
	}
	r.locked = locks
	r.indexKeys = []string{obj.Key}
	r.mu.Unlock()
	return rep, nil
}

// readPack reads pack id whole.
func (r *Repo) readPack(ctx context.Context, id ID) ([]byte, error) {
	rc, err := r.blobs.Get(ctx, r.prefix+"packs/"+id.String())
	if errors.Is(err, blob.ErrNotFound) {
		return nil, fmt.Errorf("repo: pack %s is missing: %w", id, ErrIntegrity)
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("repo: reading pack %s: %w", id, err)
	}
	return b, nil
}

// addSealed copies a sealed chunk, as it lies in another pack, into the
// open pack: it is bound to its id, not to its pack, so it moves as is.
// It is opened first, so that a damaged chunk is never copied as sound.
func (w *writer) addSealed(ctx context.Context, c indexChunk, sealed []byte) error {
	data, err := w.r.key.open(sealed, c.ID[:])
	if err != nil {
		return fmt.Errorf("repo: chunk %s: %w", c.ID, err)
	}
	if w.r.key.chunkID(data) != c.ID {
		return fmt.Errorf("repo: chunk %s does not hash to its id: %w", c.ID, ErrIntegrity)
	}
	w.entries = append(w.entries, indexChunk{ID: c.ID, Offset: uint32(w.pack.Len()), Length: c.Length, Raw: c.Raw})
	w.pack.Write(sealed)
	w.stats.StoredBytes += int64(len(sealed))
	if w.pack.Len() >= PackTarget {
		return w.flush(ctx)
	}
	return nil
}

// StoredBytes is what the repository holds in the blob store, but for
// the packs a prune found unused (deleted later).
func (r *Repo) StoredBytes(ctx context.Context) (int64, error) {
	infos, err := r.blobs.List(ctx, r.prefix)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, in := range infos {
		if id, err := ParseID(strings.TrimPrefix(in.Key, r.prefix+"packs/")); err == nil && r.isObsolete(id) {
			continue
		}
		n += in.Size
	}
	return n, nil
}

// extendManifestLocks locks again, for a whole LockWindow from now, the
// manifests of keep whose lock (as the store says: the index does not
// list manifests) has less than half of it left, and returns how many.
func (r *Repo) extendManifestLocks(ctx context.Context, keep []ID, now time.Time) (int, error) {
	if r.LockWindow <= 0 {
		return 0, nil
	}
	n := 0
	for _, id := range keep {
		key := r.SnapshotKey(id)
		until, err := r.blobs.LockedUntil(ctx, key)
		if errors.Is(err, blob.ErrNotFound) {
			continue // missing: check reports it
		} else if err != nil {
			return n, fmt.Errorf("repo: reading the lock of manifest %s: %w", id, err)
		}
		if !until.Before(now.Add(r.LockWindow / 2)) {
			continue
		}
		if err := r.blobs.Lock(ctx, key, now.Add(r.LockWindow).UTC().Truncate(time.Second)); err != nil {
			return n, fmt.Errorf("repo: extending the lock of manifest %s: %w", id, err)
		}
		n++
	}
	return n, nil
}

// ExtendLocks locks again, for a whole LockWindow from now, every pack an
// index lists as holding chunks, and the manifest of every snapshot of
// keep, whose lock has less than half of it left: what a prune does
// besides, for when the prune itself cannot run (a damaged index or
// manifest refuses it), so that nothing a kept snapshot may need comes
// unlocked meanwhile. The index is not rewritten: each call asks again.
// It returns how many objects it locked.
func (r *Repo) ExtendLocks(ctx context.Context, now time.Time, keep []ID) (int, error) {
	if r.LockWindow <= 0 {
		return 0, nil
	}
	n, err := r.extendManifestLocks(ctx, keep, now)
	if err != nil {
		return n, err
	}
	r.mu.Lock()
	var due []ID
	for p := range r.packs {
		if _, old := r.obsolete[p]; !old && r.locked[p].Before(now.Add(r.LockWindow/2)) {
			due = append(due, p)
		}
	}
	r.mu.Unlock()
	for _, p := range due {
		until := now.Add(r.LockWindow).UTC().Truncate(time.Second)
		if err := r.blobs.Lock(ctx, r.prefix+"packs/"+p.String(), until); errors.Is(err, blob.ErrNotFound) {
			continue // missing: check reports it
		} else if err != nil {
			return n, fmt.Errorf("repo: extending the lock of pack %s: %w", p, err)
		}
		n++
	}
	return n, nil
}
