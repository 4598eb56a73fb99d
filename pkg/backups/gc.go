package backups

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/repo"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
)

// JobBlobGC collects unreferenced blobs, as the scheduler's catalog names
// it.
const JobBlobGC = scheduler.JobBlobGC

// ConsumerBlobTicks reads the blob.* jobs' ticks.
const ConsumerBlobTicks = "blob-tick"

// GCAgeDefault is LEVQOR_BLOB_GC_AGE: how old a blob no snapshot holds
// must be before blob.gc deletes it, and an abandoned upload before it is
// removed. It must exceed LEVQOR_BACKUP_TIMEOUT, so that no upload still
// running is taken for abandoned.
const GCAgeDefault = 72 * time.Hour

// BlobTickConsumer declares blob-tick: the ticks of the blob.* jobs.
func BlobTickConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerBlobTicks, Kind: bus.Ticks, Filter: "blob.>"}
}

// HandleBlobTick runs the blob.* jobs.
func (w *Worker) HandleBlobTick(ctx context.Context, m *bus.Message) error {
	return scheduler.Dispatch(ConsumerBlobTicks, scheduler.Jobs{
		JobBlobGC: func(ctx context.Context, _ *bus.Message, t scheduler.Tick) error {
			_, err := w.CollectGarbage(ctx, t.Slot)
			if errors.Is(err, ErrCatalogRestored) {
				// Not retried: nothing changes until an operator reconciles.
				bus.Logger(ctx).WithError(err).Error("blob.gc skipped")
				return nil
			}
			return err
		},
	})(ctx, m)
}

// GCResult says what a garbage collection did.
type GCResult struct {
	// Scanned blobs; Deleted of them (Freed bytes), held by a snapshot
	// (Kept), or too young to judge (Young).
	Scanned, Deleted, Kept, Young int
	Freed                         int64
	// Abandoned writes removed: temporary files of dead Puts, or
	// multipart uploads never completed.
	Abandoned int
	// Foreign blobs left alone: their key is not under an account of this
	// database (another deployment sharing the store, or another tool).
	Foreign int
	// Repository objects left alone: packs, indexes and manifests of an
	// account's backup repository, which snapshots share; the prune
	// judges them, never blob.gc.
	Repository int
	// Locked blobs were due but are locked until a later date.
	Locked int
}

// repoErased reports whether account acc's repository is an erased
// account's (its data key destroyed), caching the answer in seen.
func (w *Worker) repoErased(ctx context.Context, seen map[string]bool, acc string) (bool, error) {
	if v, ok := seen[acc]; ok {
		return v, nil
	}
	_, err := w.Store.AccountDataKey(ctx, acc)
	gone := false
	switch {
	case errors.Is(err, store.ErrNotFound):
		if gone, err = w.Store.AccountErasing(ctx, acc); err != nil {
			return false, err
		}
	case err != nil:
		return false, err
	}
	seen[acc] = gone
	return gone, nil
}

// CollectGarbage deletes, at now, every blob older than GCAge that no
// snapshot holds (not purged: active, in the trash, or being purged):
// what a run left when it died between its upload and its snapshot, a
// purge interrupted before it recorded the purge. A younger blob may be
// a run's, just stored, or one uploaded for POST /v1/sources/{id}/snapshots,
// which accepts only blobs younger than half GCAge, so that no blob is
// recorded while a collection deletes it. It then removes the store's
// abandoned writes (blob.Janitor) begun before the same cutoff. Deleting
// is idempotent: a collection interrupted is finished by the next.
func (w *Worker) CollectGarbage(ctx context.Context, now time.Time) (GCResult, error) {
	var res GCResult
	if w.Blobs == nil {
		return res, errors.New(ErrBlobsNotConfiguredMessage)
	}
	if err := w.restoreGate(ctx); err != nil {
		return res, err
	}
	cutoff := now.Add(-w.settings().GCAge)
	log := bus.Logger(ctx).WithField("cutoff", cutoff.UTC().Format(time.RFC3339))
	infos, err := w.Blobs.List(ctx, "")
	if err != nil {
		return res, err
	}
	res.Scanned = len(infos)
	var old []blob.Info
	sources := map[string]bool{}
	erased := map[string]bool{}
	for _, in := range infos {
		if !in.ModTime.Before(cutoff) {
			res.Young++
			continue
		}
		if repo.IsRepoKey(in.Key) {
			acc, _, _ := strings.Cut(in.Key, "/")
			gone, err := w.repoErased(ctx, erased, acc)
			if err != nil {
				return res, err
			}
			if !gone {
				res.Repository++
				continue
			}
			// What an erasure could not delete (locked until a later
			// date; its key is destroyed, so nobody reads it) goes now.
			old = append(old, in)
			continue
		}
		// Levqor's keys start with the account's id and the source's: a
		// key that does not, or names an account or a source of it this
		// database does not have, is not ours to judge (another
		// deployment's, or, after a restore from a self-backup, a source
		// created since, whose blobs are its only copy).
		acc, rest, _ := strings.Cut(in.Key, "/")
		src, _, _ := strings.Cut(rest, "/")
		known, seen := sources[acc+"/"+src]
		if !seen {
			if command.ValidID(acc, store.AccountIDPrefix) {
				s, err := w.Store.GetSource(ctx, src)
				switch {
				case err == nil:
					known = s.AccountID == acc
				case !errors.Is(err, store.ErrNotFound):
					return res, err
				}
			}
			sources[acc+"/"+src] = known
		}
		if !known {
			res.Foreign++
			continue
		}
		old = append(old, in)
	}
	keys := make([]string, len(old))
	for i, in := range old {
		keys[i] = in.Key
	}
	inUse, err := w.Store.BlobKeysInUse(ctx, keys)
	if err != nil {
		return res, err
	}
	var errs []error
	for _, in := range old {
		if inUse[in.Key] {
			res.Kept++
			continue
		}
		if err := w.Blobs.Delete(ctx, in.Key); errors.Is(err, blob.ErrLocked) {
			res.Locked++ // a later collection deletes it
			continue
		} else if err != nil {
			errs = append(errs, fmt.Errorf("deleting blob %s: %w", in.Key, err))
			continue
		}
		res.Deleted++
		res.Freed += in.Size
		log.WithFields(logrus.Fields{"blob_key": in.Key, "size_bytes": in.Size, "mod_time": in.ModTime.UTC().Format(time.RFC3339)}).
			Info("blob no snapshot holds deleted")
	}
	if j, ok := w.Blobs.(blob.Janitor); ok {
		n, err := j.RemoveAbandoned(ctx, cutoff)
		res.Abandoned = n
		if err != nil {
			errs = append(errs, err)
		}
	}
	log.WithFields(logrus.Fields{"scanned": res.Scanned, "deleted": res.Deleted, "freed_bytes": res.Freed, "kept": res.Kept,
		"young": res.Young, "abandoned": res.Abandoned, "foreign": res.Foreign, "repository": res.Repository}).Info("blob garbage collected")
	return res, errors.Join(errs...)
}
