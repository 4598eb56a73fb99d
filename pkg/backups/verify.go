package backups

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/archive"
	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/store"
)

// VerifyResult is what a verification pass found.
type VerifyResult struct {
	// Checked counts the snapshots read; Corrupt those found corrupt.
	Checked int `json:"checked"`
	Corrupt int `json:"corrupt"`
	// Snapshots are the snapshots checked, with what was found.
	Snapshots []store.Snapshot `json:"snapshots"`
}

// VerifySample re-reads VerifySample active snapshots, least recently
// verified first, and records what it finds: verified, or corrupt with
// levqor.event.backup.corrupt (once per snapshot). A blob store that
// cannot be read is an error for the tick to retry, not corruption.
func (w *Worker) VerifySample(ctx context.Context, now time.Time) (VerifyResult, error) {
	res := VerifyResult{Snapshots: []store.Snapshot{}}
	if w.Blobs == nil {
		return res, errors.New(ErrBlobsNotConfiguredMessage)
	}
	snaps, err := w.Store.SnapshotsToVerify(ctx, w.settings().VerifySample)
	if err != nil {
		return res, err
	}
	var errs []error
	for i := range snaps {
		s, err := w.verifyOne(ctx, &snaps[i], "verify:"+now.UTC().Format(time.RFC3339))
		if err != nil {
			errs = append(errs, fmt.Errorf("snapshot %s: %w", snaps[i].ID, err))
			continue
		}
		res.Checked++
		if s.Integrity == store.SnapshotCorrupt {
			res.Corrupt++
		}
		res.Snapshots = append(res.Snapshots, *s)
	}
	bus.Logger(ctx).WithFields(logrus.Fields{"checked": res.Checked, "corrupt": res.Corrupt, "failed": len(errs)}).Info("backup verification done")
	return res, errors.Join(errs...)
}

// verifyOne checks one snapshot and records the finding.
func (w *Worker) verifyOne(ctx context.Context, s *store.Snapshot, actor string) (*store.Snapshot, error) {
	release, err := w.streamSlot(ctx, bus.Logger(ctx).WithField("snapshot_id", s.ID), w.settings(), s.AccountID)
	if err != nil {
		return nil, err
	}
	reason, err := w.check(ctx, s)
	release()
	if err != nil {
		return nil, err
	}
	integrity := store.SnapshotVerified
	if reason != "" {
		integrity = store.SnapshotCorrupt
	}
	if err := w.Store.InTx(ctx, func(tx *store.Tx) error {
		return w.recordIntegrity(ctx, tx, s, integrity, reason, actor)
	}); err != nil {
		return nil, err
	}
	return w.Store.GetSnapshot(ctx, s.ID)
}

// recordIntegrity records a finding within tx; a snapshot newly found
// corrupt gets an audit entry and raises levqor.event.backup.corrupt.
func (w *Worker) recordIntegrity(ctx context.Context, tx *store.Tx, s *store.Snapshot, integrity, reason, actor string) error {
	changed, err := tx.SetSnapshotIntegrity(ctx, s.ID, integrity, reason, time.Now())
	if err != nil || !changed || integrity != store.SnapshotCorrupt {
		return err
	}
	incident := "corrupt:" + s.ID
	bus.Logger(ctx).WithFields(logrus.Fields{"snapshot_id": s.ID, "source_id": s.SourceID, "account_id": s.AccountID, "reason": reason}).Error("snapshot is corrupt")
	d := fmt.Sprintf(`{"blob_key":%q,"sha256":%q}`, s.BlobKey, s.SHA256)
	if _, err := tx.AppendRetentionAudit(ctx, store.RetentionAudit{
		AccountID: s.AccountID, SourceID: s.SourceID, SnapshotID: s.ID, Action: AuditCorrupt, Actor: actor,
		Reasons: []string{reason}, Detail: []byte(d),
	}); err != nil {
		return err
	}
	return w.raise(ctx, tx, events.BackupCorrupt{
		AccountID: s.AccountID, SourceID: s.SourceID, SnapshotID: s.ID, Incident: incident,
		Reason: reason, TakenAt: s.TakenAt, BlobKey: s.BlobKey, SHA256: s.SHA256, SizeBytes: s.SizeBytes, At: time.Now().UTC(),
	}, incident)
}

// check reads the snapshot's blob once: its size and SHA-256 against the
// recorded ones and, for a snapshot a run made, every checksum inside the
// archive. It returns why the snapshot is corrupt, "" when it is intact,
// or an error when the blob could not be read (which proves nothing).
func (w *Worker) check(ctx context.Context, s *store.Snapshot) (string, error) {
	if isV2(s) {
		return w.checkV2(ctx, s)
	}
	rc, err := w.Blobs.Get(ctx, s.BlobKey)
	if errors.Is(err, blob.ErrNotFound) {
		return fmt.Sprintf("its blob %s is missing from the blob store", s.BlobKey), nil
	}
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := sha256.New()
	cr := &countReader{r: io.TeeReader(rc, h)}
	var archiveErr error
	if _, ok := SummaryOf(s); ok {
		_, _, archiveErr = archive.Verify(ctx, cr)
		if archiveErr != nil && !errors.Is(archiveErr, archive.ErrCorrupt) {
			return "", archiveErr
		}
	}
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return "", fmt.Errorf("reading blob %s: %w", s.BlobKey, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	switch {
	case cr.n != s.SizeBytes:
		return fmt.Sprintf("its blob has %d bytes, %d were recorded", cr.n, s.SizeBytes), nil
	case sum != s.SHA256:
		return fmt.Sprintf("its blob's SHA-256 is %s, %s was recorded", sum, s.SHA256), nil
	case archiveErr != nil:
		return "the archive fails its own checks: " + archiveErr.Error(), nil
	}
	return "", nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// verifyCommand carries out backup.verify_snapshot: one snapshot, now.
func (w *Worker) verifyCommand(ctx context.Context, e *command.Envelope, p SnapshotParams) (command.Effect, error) {
	if w.Blobs == nil {
		return nil, blobsMissing()
	}
	snap, err := w.Store.GetSnapshot(ctx, p.SnapshotID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && snap.AccountID != e.AccountID) {
		return nil, notFound("id", "no snapshot "+p.SnapshotID)
	}
	if err != nil {
		return nil, err
	}
	if snap.State == store.SnapshotPurging || snap.State == store.SnapshotPurged {
		return nil, conflict("snapshot_purged", "id", fmt.Sprintf("snapshot %s is %s: its blob is deleted", snap.ID, snap.State))
	}
	log := bus.Logger(ctx).WithFields(logrus.Fields{"snapshot_id": snap.ID, "account_id": snap.AccountID})
	release, err := w.streamSlot(ctx, log, w.settings(), snap.AccountID)
	if err != nil {
		return nil, err
	}
	defer release()
	reason, err := w.check(ctx, snap)
	if err != nil {
		return nil, err
	}
	integrity := store.SnapshotVerified
	if reason != "" {
		integrity = store.SnapshotCorrupt
	}
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		if err := w.recordIntegrity(ctx, tx, snap, integrity, reason, actorOf(e)); err != nil {
			return command.Outcome{}, err
		}
		stored, err := tx.GetSnapshot(ctx, snap.ID)
		if err != nil {
			return command.Outcome{}, err
		}
		return command.Outcome{Status: http.StatusOK, Result: stored}, nil
	}, nil
}

// restoreData carries out backup.restore_data: it streams the snapshot's
// blob into archive.RestoreDirectory or RestorePostgres, which check every
// checksum on the way, and checks the blob's own SHA-256 at the end.
func (w *Worker) restoreData(ctx context.Context, e *command.Envelope, p RestoreDataParams) (command.Effect, error) {
	if w.Blobs == nil {
		return nil, blobsMissing()
	}
	set := w.settings()
	snap, err := w.Store.GetSnapshot(ctx, p.SnapshotID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && snap.AccountID != e.AccountID) {
		return nil, notFound("id", "no snapshot "+p.SnapshotID)
	}
	if err != nil {
		return nil, err
	}
	switch {
	case snap.State == store.SnapshotPurging || snap.State == store.SnapshotPurged:
		return nil, conflict("snapshot_purged", "id", fmt.Sprintf("snapshot %s is %s: its blob is deleted, there is nothing to restore", snap.ID, snap.State))
	case snap.Integrity == store.SnapshotCorrupt:
		return nil, conflict("snapshot_corrupt", "id", fmt.Sprintf("snapshot %s is corrupt (%s); restore another one", snap.ID, snap.VerifyError))
	}
	sum, ok := SummaryOf(snap)
	if !ok {
		return nil, unprocessable("not_restorable", "id", fmt.Sprintf("snapshot %s was recorded by an agent: its blob is not an archive Levqor restores; download it from the blob store", snap.ID))
	}
	field := "target_path"
	if p.TargetDSN != "" {
		field = "target_dsn"
	}
	switch {
	case sum.Kind == KindDirectory && p.TargetPath == "":
		return nil, invalid("target_path", "a directory snapshot is restored to target_path")
	case sum.Kind == KindPostgres && p.TargetDSN == "":
		return nil, invalid("target_dsn", "a postgres snapshot is restored into target_dsn")
	}
	target := p.TargetPath
	if target != "" {
		if target, err = CheckPath("target_path", target, set.AllowedPaths, set.ProtectedPaths...); err != nil {
			return nil, err
		}
	}
	log := bus.Logger(ctx).WithFields(logrus.Fields{"snapshot_id": snap.ID, "account_id": snap.AccountID, "source_id": snap.SourceID})
	release, err := w.streamSlot(ctx, log, set, snap.AccountID)
	if err != nil {
		return nil, err
	}
	defer release()

	targetDSN, err := w.Sealer.Open(p.TargetDSN)
	if err != nil {
		return nil, unprocessable("sealed", "target_dsn", err.Error())
	}
	if targetDSN != "" {
		if err := ValidateDSN("target_dsn", targetDSN); err != nil {
			return nil, err
		}
	}
	if len(p.Include) > 0 && !isV2(snap) {
		return nil, unprocessable("not_browsable", "include", fmt.Sprintf("snapshot %s is an archive of format 1, restored whole; snapshots taken since the backup repository (format 2) restore single paths", snap.ID))
	}
	stats, blobBytes, err := w.restoreBlob(ctx, snap, sum.Kind, target, targetDSN, p.Include, archive.RestoreOptions{Overwrite: p.Overwrite, TempDir: os.TempDir()})
	if errors.Is(err, blob.ErrNotFound) {
		reason := fmt.Sprintf("its blob %s is missing from the blob store", snap.BlobKey)
		w.markCorrupt(ctx, log, snap, reason, actorOf(e))
		return nil, unprocessable("snapshot_corrupt", "id", fmt.Sprintf("snapshot %s is corrupt: %s", snap.ID, reason))
	}
	if err != nil {
		msg := scrub(err.Error(), targetDSN)
		switch {
		case errors.Is(err, errPathNotInSnapshot):
			return nil, unprocessable("path_not_found", "include", msg)
		case errors.Is(err, archive.ErrTargetNotEmpty):
			return nil, conflict("target_not_empty", field, fmt.Sprintf("the target is not empty; set overwrite to replace what is there (%s)", msg))
		case errors.Is(err, archive.ErrCorrupt):
			w.markCorrupt(ctx, log, snap, msg, actorOf(e))
			return nil, unprocessable("snapshot_corrupt", "id", fmt.Sprintf("snapshot %s is corrupt, the restore stopped: %s", snap.ID, msg))
		case errors.Is(err, archive.ErrKindMismatch) || errors.Is(err, archive.ErrUnsupportedFormat):
			return nil, unprocessable("not_restorable", "id", msg)
		}
		return nil, errors.New(msg)
	}
	res := RestoreDataResult{SnapshotID: snap.ID, Kind: sum.Kind, TargetPath: target, Overwrite: p.Overwrite, Include: p.Include,
		Files: stats.Files, Bytes: stats.Bytes, SHA256: snap.SHA256}
	if p.TargetDSN != "" {
		res.TargetDSN = RedactDSN(p.TargetDSN)
	}
	log.WithFields(logrus.Fields{"files": stats.Files, "bytes": stats.Bytes, "blob_bytes": blobBytes}).Info("snapshot restored")
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		if err := audit(ctx, tx, e, snap.SourceID, snap.ID, AuditDataRestored, nil, []string{"restored by an operator"}, map[string]any{
			"kind": res.Kind, "target_path": res.TargetPath, "target_dsn": res.TargetDSN, "overwrite": res.Overwrite, "include": res.Include,
			"files": res.Files, "bytes": res.Bytes,
		}); err != nil {
			return command.Outcome{}, err
		}
		return command.Outcome{Status: http.StatusOK, Result: res}, nil
	}, nil
}

// restoreBlob streams snap's blob into a directory (kind directory) or a
// database (postgres), through archive.RestoreDirectory or
// RestorePostgres, which check every checksum of the manifest on the
// way, and checks the blob's own SHA-256 at the end. It returns what was
// restored and the blob's size; a missing blob wraps blob.ErrNotFound.
func (w *Worker) restoreBlob(ctx context.Context, snap *store.Snapshot, kind, dir, dsn string, include []string, opts archive.RestoreOptions) (archive.Stats, int64, error) {
	if isV2(snap) {
		stats, err := w.restoreV2(ctx, snap, kind, dir, dsn, include, opts)
		return stats, 0, err
	}
	rc, err := w.Blobs.Get(ctx, snap.BlobKey)
	if err != nil {
		return archive.Stats{}, 0, err
	}
	defer rc.Close()
	h := sha256.New()
	cr := &countReader{r: io.TeeReader(rc, h)}
	var stats archive.Stats
	if kind == KindDirectory {
		stats, err = archive.RestoreDirectory(ctx, cr, dir, opts)
	} else {
		stats, err = archive.RestorePostgres(ctx, cr, dsn, opts)
	}
	if err == nil {
		if _, err = io.Copy(io.Discard, cr); err == nil {
			if got := hex.EncodeToString(h.Sum(nil)); got != snap.SHA256 {
				err = fmt.Errorf("%w: the blob's SHA-256 is %s, %s was recorded", archive.ErrCorrupt, got, snap.SHA256)
			}
		}
	}
	return stats, cr.n, err
}

// markCorrupt records, in a transaction of its own, that a restore found
// the snapshot corrupt.
func (w *Worker) markCorrupt(ctx context.Context, log logrus.FieldLogger, s *store.Snapshot, reason, actor string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := w.Store.InTx(ctx, func(tx *store.Tx) error {
		return w.recordIntegrity(ctx, tx, s, store.SnapshotCorrupt, reason, actor)
	}); err != nil {
		log.WithField("error", err.Error()).Error("could not mark the snapshot corrupt")
	}
}
