package backups

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/repo"
	"github.com/levqor/levqor/pkg/store"
)

// Subset says which packs a check reads, as restic's --read-data-subset
// does: all of them, a random share, or the n-th of m groups (by the
// first byte of the pack's id), so that m checks, one per group, read
// the whole repository.
type Subset struct {
	Percent float64 // 0 < Percent <= 100, when set
	N, M    int     // 1 <= N <= M <= 256, when set
}

// ParseSubset reads "" or "all", "P%" or "n/m".
func ParseSubset(s string) (Subset, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "" || s == "all":
		return Subset{Percent: 100}, nil
	case strings.HasSuffix(s, "%"):
		p, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil || !(p > 0 && p <= 100) {
			return Subset{}, fmt.Errorf("%q: a share is a percentage above 0 and at most 100, e.g. 10%%", s)
		}
		return Subset{Percent: p}, nil
	}
	a, b, ok := strings.Cut(s, "/")
	n, errN := strconv.Atoi(a)
	m, errM := strconv.Atoi(b)
	if !ok || errN != nil || errM != nil || m < 1 || m > 256 || n < 1 || n > m {
		return Subset{}, fmt.Errorf("%q: give all, a percentage (10%%) or a group n/m with 1 <= n <= m <= 256 (1/7 … 7/7 over a week)", s)
	}
	return Subset{N: n, M: m}, nil
}

// All reports whether the subset reads every pack.
func (s Subset) All() bool { return s.M == 0 && s.Percent >= 100 || s.M == 1 }

// String is the subset as ParseSubset reads it.
func (s Subset) String() string {
	switch {
	case s.All():
		return "all"
	case s.M > 0:
		return fmt.Sprintf("%d/%d", s.N, s.M)
	}
	return strconv.FormatFloat(s.Percent, 'f', -1, 64) + "%"
}

// accepts is the pack filter of the subset.
func (s Subset) accepts() func(repo.ID) bool {
	switch {
	case s.All():
		return nil
	case s.M > 0:
		return func(id repo.ID) bool { return int(id[0])%s.M == s.N-1 }
	}
	return func(repo.ID) bool {
		var b [8]byte
		_, _ = rand.Read(b[:])
		u := uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 | uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
		return float64(u>>11)/float64(1<<53)*100 < s.Percent
	}
}

// CheckReport is what a check of accounts' repositories found.
type CheckReport struct {
	Subset   string `json:"subset"`
	Accounts int    `json:"accounts"`
	// Snapshots counts the snapshots of the repositories looked at;
	// Verified those whose every chunk was read and found sound, Corrupt
	// those found damaged now or before.
	Snapshots int `json:"snapshots"`
	Verified  int `json:"verified"`
	Corrupt   int `json:"corrupt"`
	// Packs, PacksRead, BytesRead, Chunks, MissingPacks, CorruptPacks,
	// UnindexedPacks and DamagedIndexes add up the repositories'.
	Packs          int   `json:"packs"`
	PacksRead      int   `json:"packs_read"`
	BytesRead      int64 `json:"bytes_read"`
	Chunks         int   `json:"chunks_checked"`
	MissingPacks   int   `json:"missing_packs"`
	CorruptPacks   int   `json:"corrupt_packs"`
	UnindexedPacks int   `json:"unindexed_packs"`
	DamagedIndexes int   `json:"damaged_indexes"`
	// Findings are the damaged snapshots, each with why.
	Findings []CheckFinding `json:"findings"`
}

// CheckFinding is one snapshot found damaged.
type CheckFinding struct {
	AccountID  string `json:"account_id"`
	SourceID   string `json:"source_id"`
	SnapshotID string `json:"snapshot_id"`
	Reason     string `json:"reason"`
}

// CheckRepositories checks the repository of accountID, or of every
// account with a data key when it is "": it reads the packs subset
// selects (checking each pack's hash and every chunk's MAC and id),
// looks for every pack the indexes name, and reads every snapshot's
// manifest. A snapshot that needs a missing or corrupt pack, or whose
// manifest is missing or does not open, is marked corrupt (audit entry
// by actor, levqor.event.backup.corrupt); one whose every pack was read
// and found sound is marked verified. Nothing is deleted or repaired.
// An error means a repository or the database could not be read, which
// proves nothing: the check stops there, and what it found so far is
// recorded and returned.
func (w *Worker) CheckRepositories(ctx context.Context, accountID string, subset Subset, actor string) (CheckReport, error) {
	rep := CheckReport{Subset: subset.String(), Findings: []CheckFinding{}}
	if w.Blobs == nil {
		return rep, errors.New(ErrBlobsNotConfiguredMessage)
	}
	if accountID != "" {
		return rep, w.checkAccount(ctx, accountID, subset, actor, &rep)
	}
	after := ""
	for {
		ks, err := w.Store.AccountDataKeys(ctx, after, 100)
		if err != nil {
			return rep, err
		}
		for _, k := range ks {
			if err := w.checkAccount(ctx, k.AccountID, subset, actor, &rep); err != nil {
				return rep, err
			}
		}
		if len(ks) < 100 {
			return rep, nil
		}
		after = ks[len(ks)-1].AccountID
	}
}

// checkAccount checks one account's repository into rep.
func (w *Worker) checkAccount(ctx context.Context, accountID string, subset Subset, actor string, rep *CheckReport) error {
	log := bus.Logger(ctx).WithField("account_id", accountID)
	// Bounded as a restore is: a prune deletes the packs it found unused
	// only after LEVQOR_BACKUP_TIMEOUT, so a check never outlives them.
	ctx, cancel := context.WithTimeout(ctx, w.settings().RunTimeout)
	defer cancel()
	snaps, err := w.Store.BlobsOfAccount(ctx, accountID)
	if err != nil {
		return err
	}
	var v2 []store.Snapshot
	for _, s := range snaps {
		if isV2(&s) && s.State != store.SnapshotPurging {
			v2 = append(v2, s)
		}
	}
	r, err := w.openRepo(ctx, w.Blobs, accountID, false)
	switch {
	case errors.Is(err, errNoDataKey):
		for i := range v2 {
			w.checked(ctx, log, &v2[i], err.Error(), false, actor, rep)
		}
		rep.Accounts++
		return nil
	case err != nil:
		return fmt.Errorf("account %s: %w", accountID, err)
	}
	packs, err := r.CheckPacks(ctx, subset.accepts())
	if err != nil {
		return fmt.Errorf("account %s: %w", accountID, err)
	}
	rep.Accounts++
	rep.Packs += packs.Packs
	rep.PacksRead += packs.Read
	rep.BytesRead += packs.Bytes
	rep.Chunks += packs.Chunks
	rep.MissingPacks += len(packs.Missing)
	rep.CorruptPacks += len(packs.Corrupt)
	rep.UnindexedPacks += packs.Unindexed
	rep.DamagedIndexes += len(packs.DamagedIndexes)
	for id, why := range packs.Corrupt {
		log.WithFields(logrus.Fields{"pack": id.String(), "reason": why}).Error("a pack of the backup repository is corrupt")
	}
	for _, id := range packs.Missing {
		log.WithField("pack", id.String()).Error("a pack of the backup repository is missing")
	}
	for i := range v2 {
		s := &v2[i]
		m, err := loadManifest(ctx, r, s)
		var why string
		switch {
		case errors.Is(err, blob.ErrNotFound):
			why = fmt.Sprintf("its manifest %s is missing from the blob store", s.BlobKey)
		case errors.Is(err, repo.ErrIntegrity):
			why = err.Error()
		case err != nil:
			return fmt.Errorf("snapshot %s: %w", s.ID, err)
		default:
			why = r.Damage(m, &packs)
		}
		w.checked(ctx, log, s, why, subset.All(), actor, rep)
	}
	return nil
}

// checked records what the check found of s: damage (why) marks it
// corrupt; none marks it verified when every pack was read (whole).
func (w *Worker) checked(ctx context.Context, log logrus.FieldLogger, s *store.Snapshot, why string, whole bool, actor string, rep *CheckReport) {
	rep.Snapshots++
	switch {
	case why != "":
		why = "check: " + why
		rep.Corrupt++
		rep.Findings = append(rep.Findings, CheckFinding{AccountID: s.AccountID, SourceID: s.SourceID, SnapshotID: s.ID, Reason: why})
		w.markCorrupt(ctx, log.WithField("snapshot_id", s.ID), s, why, actor)
	case s.Integrity == store.SnapshotCorrupt:
		// Found damaged before (by a restore, say): a check that read
		// a subset, or whose damage was repaired by hand, does not clear it.
		rep.Corrupt++
		rep.Findings = append(rep.Findings, CheckFinding{AccountID: s.AccountID, SourceID: s.SourceID, SnapshotID: s.ID, Reason: s.VerifyError})
	case whole:
		rep.Verified++
		if err := w.Store.InTx(ctx, func(tx *store.Tx) error {
			return w.recordIntegrity(ctx, tx, s, store.SnapshotVerified, "", actor)
		}); err != nil {
			log.WithFields(logrus.Fields{"snapshot_id": s.ID, "error": err.Error()}).Error("could not mark the snapshot verified")
		}
	}
}
