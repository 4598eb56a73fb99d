package backups

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/repo"
	"github.com/levqor/levqor/pkg/store"
)

// PruneLease is how long a prune may hold an account's repository:
// runs of the account wait meanwhile, and a lease older than this (its
// prune died) is taken over. A prune stops itself well before.
const PruneLease = time.Hour

// PruneResult is what pruning one account's repository did.
type PruneResult struct {
	AccountID string `json:"account_id"`
	// Skipped says why nothing was done: runs in progress, another
	// prune holding the repository.
	Skipped string `json:"skipped,omitempty"`
	// StoredBytes is what the repository holds after the prune, but for
	// its obsolete packs: what the account's quota counts.
	StoredBytes int64 `json:"stored_bytes"`
	repo.PruneReport
}

// PruneAccount removes from the account's repository what none of its
// snapshots still needs (active, trashed or held: everything not purged
// or being purged), after taking the account's prune lease so that no
// run starts meanwhile; a run already going on makes it skip, and one
// whose worker seemed dead but was not is refused its snapshot. Packs it
// finds unused are deleted by a later prune, after LEVQOR_BACKUP_TIMEOUT,
// so that restores and checks under way still read them; stray objects
// of runs that stopped halfway, after LEVQOR_BLOB_GC_AGE.
func (w *Worker) PruneAccount(ctx context.Context, accountID string, now time.Time) (PruneResult, error) {
	res := PruneResult{AccountID: accountID}
	set := w.settings()
	gen, skipped, err := w.takeRepo(ctx, accountID)
	if err != nil || skipped != "" {
		res.Skipped = skipped
		return res, err
	}
	stored := int64(-1)
	defer func() { w.releaseRepo(ctx, accountID, gen, stored) }()
	ctx, cancel := context.WithTimeout(ctx, PruneLease*3/4)
	defer cancel()

	snaps, err := w.Store.BlobsOfAccount(ctx, accountID)
	if err != nil {
		return res, err
	}
	var keep []repo.ID
	for i := range snaps {
		s := &snaps[i]
		if !isV2(s) || s.State == store.SnapshotPurging {
			continue
		}
		id, err := manifestID(s)
		if err != nil {
			return res, fmt.Errorf("%w: snapshot %s: %v", repo.ErrPruneRefused, s.ID, err)
		}
		keep = append(keep, id)
	}
	r, err := w.openRepo(ctx, w.Blobs, accountID, false)
	if err != nil {
		return res, err
	}
	res.PruneReport, err = r.Prune(ctx, repo.PruneOptions{Keep: keep, MinAge: set.GCAge, ReadGrace: set.RunTimeout, Now: now})
	if errors.Is(err, repo.ErrPruneRefused) {
		// Nothing is deleted, but every pack stays locked while the
		// damage waits for an operator.
		n, lerr := r.ExtendLocks(ctx, time.Now(), keep)
		res.LocksExtended = n
		return res, errors.Join(err, lerr)
	}
	if err != nil {
		return res, err
	}
	// What the account stores from now on (its quota counts it): the
	// repository as it is, but for the packs about to be deleted.
	if stored, err = r.StoredBytes(ctx); err != nil {
		stored = -1
		return res, err
	}
	res.StoredBytes = stored
	return res, nil
}

// takeRepo takes the account's repository lease (the prune's), unless a
// backup of the account is running or another holder has it (skipped
// says which), and returns its generation.
func (w *Worker) takeRepo(ctx context.Context, accountID string) (gen int64, skipped string, err error) {
	err = w.Store.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.LockAccountForSources(ctx, accountID); err != nil {
			return err
		}
		t := time.Now()
		n, err := tx.CountRunningRuns(ctx, accountID, "", t.Add(-RunStaleAfter))
		if err != nil {
			return err
		}
		if n > 0 {
			skipped = fmt.Sprintf("%d backups of the account are running", n)
			return nil
		}
		g, ok, err := tx.BeginPrune(ctx, accountID, t, t.Add(-PruneLease))
		if err != nil {
			return err
		}
		if !ok {
			skipped = "another prune holds the repository"
		}
		gen = g
		return nil
	})
	return gen, skipped, err
}

// releaseRepo releases the lease of generation gen, recording what the
// repository stores (-1: unknown, left as it was).
func (w *Worker) releaseRepo(ctx context.Context, accountID string, gen, stored int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := w.Store.EndPrune(ctx, accountID, gen, stored, time.Now()); err != nil {
		bus.Logger(ctx).WithFields(logrus.Fields{"account_id": accountID, "error": err.Error()}).Error("could not release the repository's lease; it lapses after an hour")
	}
}

// RebuildIndex rebuilds the account's repository index from its packs'
// own headers (repo.Repo.RebuildIndex), holding the repository's lease:
// the repair for an index that does not open, which otherwise stops the
// account's prunes. An operator runs it (levqor check --rebuild-index).
func (w *Worker) RebuildIndex(ctx context.Context, accountID string) (repo.RebuildReport, error) {
	if w.Blobs == nil {
		return repo.RebuildReport{}, errors.New(ErrBlobsNotConfiguredMessage)
	}
	gen, skipped, err := w.takeRepo(ctx, accountID)
	if err != nil {
		return repo.RebuildReport{}, err
	}
	if skipped != "" {
		return repo.RebuildReport{}, fmt.Errorf("the repository of %s cannot be rebuilt now: %s; try again", accountID, skipped)
	}
	stored := int64(-1)
	defer func() { w.releaseRepo(ctx, accountID, gen, stored) }()
	r, err := w.openRepo(ctx, w.Blobs, accountID, false)
	if err != nil {
		return repo.RebuildReport{}, err
	}
	rep, err := r.RebuildIndex(ctx)
	if err == nil {
		stored, err = r.StoredBytes(ctx)
		if err != nil {
			stored = -1
		}
	}
	return rep, err
}

// PruneAll prunes every account's repository at now (see PruneAccount).
// An account that fails does not stop the others; the errors are
// returned together, but for refused prunes (a damaged index or
// manifest), which only an operator can resolve: those are logged.
func (w *Worker) PruneAll(ctx context.Context, now time.Time) error {
	log := bus.Logger(ctx)
	var errs []error
	var pruned, skipped, refused int
	var freed int64
	after := ""
	for {
		ks, err := w.Store.AccountDataKeys(ctx, after, 100)
		if err != nil {
			return err
		}
		for _, k := range ks {
			res, err := w.PruneAccount(ctx, k.AccountID, now)
			l := log.WithField("account_id", k.AccountID)
			switch {
			case errors.Is(err, repo.ErrPruneRefused) || errors.Is(err, repo.ErrIntegrity):
				// Retrying changes nothing until an operator looks: the
				// tick is not failed for it, the log says it every time.
				refused++
				l.WithError(err).Error("prune refused: the repository holds something it cannot read; nothing was deleted (run levqor check)")
			case err != nil:
				errs = append(errs, fmt.Errorf("pruning %s: %w", k.AccountID, err))
				l.WithError(err).Error("prune failed; the next sweep finishes it")
			case res.Skipped != "":
				skipped++
				l.WithField("reason", res.Skipped).Info("prune skipped")
			default:
				pruned++
				freed += res.BytesFreed
				if res.BytesFreed > 0 || res.PacksUnused > 0 || res.PacksRepacked > 0 {
					l.WithFields(logrus.Fields{"packs_unused": res.PacksUnused, "packs_repacked": res.PacksRepacked, "packs_deleted": res.PacksDeleted,
						"unindexed_deleted": res.Unindexed, "manifests_deleted": res.Manifests, "bytes_freed": res.BytesFreed}).Info("repository pruned")
				}
			}
		}
		if len(ks) < 100 {
			break
		}
		after = ks[len(ks)-1].AccountID
	}
	log.WithFields(logrus.Fields{"pruned": pruned, "skipped": skipped, "refused": refused, "failed": len(errs), "bytes_freed": freed}).Info("repositories pruned")
	return errors.Join(errs...)
}
