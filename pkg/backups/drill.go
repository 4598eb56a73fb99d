package backups

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/archive"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
)

// JobRestoreDrill proves backups restore, as the scheduler's catalog
// names it.
const JobRestoreDrill = scheduler.JobBackupRestoreDrill

// DrillPackage is the Done-For-You package that entitles an account to
// restore drills, whatever its tier.
const DrillPackage = "dfy_recovery_drill"

// DrillIDPrefix starts every drill report's id.
const DrillIDPrefix = "drl_"

// DrillEveryDefault is LEVQOR_DRILL_EVERY: how often each entitled
// source is drilled.
const DrillEveryDefault = 30 * 24 * time.Hour

// DrillSummary counts what one backup.restore_drill tick did.
type DrillSummary struct {
	Passed, Failed, Skipped int
}

// RestoreDrills drills, for slot, every runnable source of the accounts
// entitled to drills (their tier's restore_drills, or the
// dfy_recovery_drill package) whose last drill is older than DrillEvery:
// it restores the source's newest good snapshot into a scratch target (a
// temporary directory, or a scratch database on LEVQOR_DRILL_POSTGRES_URL
// for a postgres source), which checks every file against the snapshot's
// manifest and the blob against its SHA-256, compares the counts, cleans
// up, and records the report. A failed drill raises backup.drill_failed
// (support opens a ticket; the customer and on-call are told). A source
// is drilled once per slot, so a redelivered tick drills nothing twice; a
// source that fails does not stop the others.
func (w *Worker) RestoreDrills(ctx context.Context, slot time.Time) (DrillSummary, error) {
	var sum DrillSummary
	if w.Blobs == nil {
		return sum, errors.New(ErrBlobsNotConfiguredMessage)
	}
	slot = slot.UTC().Truncate(time.Microsecond)
	sources, err := w.Store.RunnableSources(ctx, RunnableKinds...)
	if err != nil {
		return sum, err
	}
	entitled := map[string]bool{}
	var errs []error
	for i := range sources {
		src := &sources[i]
		ok, seen := entitled[src.AccountID]
		if !seen {
			if ok, err = w.drillsEntitled(ctx, src.AccountID); err != nil {
				errs = append(errs, err)
				continue
			}
			entitled[src.AccountID] = ok
		}
		if !ok {
			continue
		}
		d, err := w.drillSource(ctx, src, slot)
		if err != nil {
			errs = append(errs, fmt.Errorf("drilling %s: %w", src.ID, err))
			continue
		}
		if d == nil {
			continue
		}
		switch d.Result {
		case store.DrillPassed:
			sum.Passed++
		case store.DrillFailed:
			sum.Failed++
		default:
			sum.Skipped++
		}
	}
	return sum, errors.Join(errs...)
}

// drillsEntitled reports whether the account's tier includes drills, or
// it bought the drill package.
func (w *Worker) drillsEntitled(ctx context.Context, accountID string) (bool, error) {
	acc, err := w.Store.GetAccount(ctx, accountID)
	if err != nil {
		return false, err
	}
	ent, err := Entitlements(acc.Entitlements)
	if err != nil {
		return false, err
	}
	if ent.RestoreDrills {
		return true, nil
	}
	return w.Store.HasPackage(ctx, accountID, DrillPackage)
}

// drillSource runs and records one source's drill, or returns nil when
// none is due (drilled recently, or this slot already) or there is no
// snapshot to drill yet.
func (w *Worker) drillSource(ctx context.Context, src *store.BackupSource, slot time.Time) (*store.Drill, error) {
	if done, err := w.Store.DrillOfSlot(ctx, src.ID, slot); err != nil || done {
		return nil, err
	}
	last, err := w.Store.LastDrill(ctx, src.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, err
	case slot.Sub(last.FinishedAt) < w.settings().DrillEvery:
		return nil, nil
	}
	snap, err := w.drillSnapshot(ctx, src.ID)
	if err != nil || snap == nil {
		return nil, err
	}
	log := bus.Logger(ctx).WithFields(logrus.Fields{"account_id": src.AccountID, "source_id": src.ID, "snapshot_id": snap.ID})
	seed := sha256.Sum256([]byte("levqor drill of " + src.ID + " at " + slot.Format(time.RFC3339Nano)))
	d := store.Drill{ID: command.DerivedID(DrillIDPrefix, seed[:]), AccountID: src.AccountID, SourceID: src.ID, SnapshotID: snap.ID,
		Slot: slot, Kind: src.Kind, StartedAt: time.Now().UTC()}
	release, err := w.streamSlot(ctx, log, w.settings(), src.AccountID)
	if err != nil {
		return nil, err
	}
	d.Result, d.Reason, d.Files, d.Bytes = w.runDrill(ctx, src, snap, d.ID)
	release()
	d.FinishedAt = time.Now().UTC()
	d.DurationMS = d.FinishedAt.Sub(d.StartedAt).Milliseconds()
	err = w.Store.InTx(ctx, func(tx *store.Tx) error {
		inserted, err := tx.InsertDrill(ctx, d)
		if err != nil || !inserted || d.Result != store.DrillFailed {
			return err
		}
		_, err = events.Emit(ctx, tx, w.Topology, events.DrillFailed{AccountID: d.AccountID, SourceID: d.SourceID, SnapshotID: d.SnapshotID,
			DrillID: d.ID, Incident: "drill_failed:" + d.ID, Reason: d.Reason, At: d.FinishedAt}, "drill-"+d.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	fields := logrus.Fields{"drill_id": d.ID, "result": d.Result, "files": d.Files, "bytes": d.Bytes, "duration_ms": d.DurationMS}
	if d.Result == store.DrillFailed {
		log.WithFields(fields).WithField("reason", d.Reason).Error("restore drill failed")
	} else {
		log.WithFields(fields).WithField("reason", d.Reason).Info("restore drill done")
	}
	return &d, nil
}

// drillSnapshot is the source's newest snapshot a drill can restore:
// active, not known corrupt, and made by Levqor (an agent's blob is not
// an archive); nil when there is none.
func (w *Worker) drillSnapshot(ctx context.Context, sourceID string) (*store.Snapshot, error) {
	page, err := w.Store.ListSnapshots(ctx, store.ListSnapshotsParams{SourceID: sourceID, States: []string{store.SnapshotActive}, Limit: 50})
	if err != nil {
		return nil, err
	}
	for i := range page {
		if _, ok := SummaryOf(&page[i]); ok && page[i].Integrity != store.SnapshotCorrupt {
			return &page[i], nil
		}
	}
	return nil, nil
}

// runDrill restores snap into a scratch target and checks it; it returns
// the result, why it failed or was skipped, and what was restored.
func (w *Worker) runDrill(ctx context.Context, src *store.BackupSource, snap *store.Snapshot, drillID string) (result, reason string, files, bytes int64) {
	manifest, _ := SummaryOf(snap)
	opts := archive.RestoreOptions{TempDir: os.TempDir()}
	var stats archive.Stats
	var err error
	switch manifest.Kind {
	case KindDirectory:
		dir, derr := os.MkdirTemp("", "levqor-drill-*")
		if derr != nil {
			return store.DrillFailed, "creating the scratch directory: " + derr.Error(), 0, 0
		}
		defer os.RemoveAll(dir)
		stats, _, err = w.restoreBlob(ctx, snap, KindDirectory, dir, "", nil, opts)
	case KindPostgres:
		admin := w.settings().DrillDSN
		if admin == "" {
			return store.DrillSkipped, "no scratch database: set LEVQOR_DRILL_POSTGRES_URL to a server where Levqor may create and drop databases", 0, 0
		}
		dsn, drop, serr := scratchDatabase(ctx, admin, "levqor_drill_"+drillID[len(DrillIDPrefix):])
		if serr != nil {
			return store.DrillFailed, "creating the scratch database: " + scrub(serr.Error(), admin), 0, 0
		}
		defer drop()
		stats, _, err = w.restoreBlob(ctx, snap, KindPostgres, "", dsn, nil, opts)
		if err != nil {
			err = errors.New(scrub(scrub(err.Error(), dsn), admin))
		}
	default:
		return store.DrillSkipped, "a " + manifest.Kind + " snapshot is not drilled", 0, 0
	}
	if err != nil {
		return store.DrillFailed, "the restore failed: " + err.Error(), int64(stats.Files), stats.Bytes
	}
	if manifest.Kind == KindDirectory && (stats.Files != manifest.Files || stats.Bytes != manifest.SourceBytes) {
		return store.DrillFailed, fmt.Sprintf("restored %d files and %d bytes, the manifest lists %d files and %d bytes",
			stats.Files, stats.Bytes, manifest.Files, manifest.SourceBytes), int64(stats.Files), stats.Bytes
	}
	return store.DrillPassed, "", int64(stats.Files), stats.Bytes
}

// scratchDatabase creates the database name on the server of admin (a
// PostgreSQL URL) and returns its URL and the function that drops it.
func scratchDatabase(ctx context.Context, admin, name string) (string, func(), error) {
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", nil, errors.New("LEVQOR_DRILL_POSTGRES_URL is not a postgres:// URL")
	}
	db, err := sql.Open("postgres", admin)
	if err != nil {
		return "", nil, err
	}
	if _, err := db.ExecContext(ctx, `CREATE DATABASE "`+name+`"`); err != nil {
		_ = db.Close()
		return "", nil, err
	}
	u.Path = "/" + name
	drop := func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(dctx, `DROP DATABASE IF EXISTS "`+name+`" WITH (FORCE)`); err != nil {
			_, _ = db.ExecContext(dctx, `DROP DATABASE IF EXISTS "`+name+`"`) // before PostgreSQL 13
		}
		_ = db.Close()
	}
	return u.String(), drop, nil
}
