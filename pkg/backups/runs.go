package backups

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/store"
)

// Audit actions of runs and restores.
const (
	AuditRunFailed    = "run.failed"
	AuditDataRestored = "data.restored"
	AuditCorrupt      = "snapshot.corrupt"
	AuditPaused       = "source.paused"
	AuditResumed      = "source.resumed"
	AuditConfigSet    = "source.config_set"
)

// GB is the unit of the storage quota (entitlements' storage_gb): 10^9
// bytes, as storage is sold.
const GB = 1_000_000_000

// RunStaleAfter is how old a running run's heartbeat may be before it no
// longer counts against its account's concurrent runs: its worker died.
// Runs beat every ProgressEvery, far more often.
const RunStaleAfter = 2 * time.Minute

// errQuota is why a stream stopped: it would exceed the storage quota.
var errQuota = errors.New("the backup would exceed the account's storage quota")

// runFailure is a run's failure as the run row and the client see it.
type runFailure struct {
	reason string
	// event, when set, is raised with the failure.
	event events.Event
}

// runBackup carries out backup.run (a command.Func): it marks the run
// running in a short transaction, streams the source through a pipe into
// the blob store with no transaction open, and returns the Effect that
// records the snapshot, the run's success and the command's outcome in one
// transaction. On failure it deletes the partial blob, marks the run
// failed with the reason, and returns the error to the router: transient
// errors are retried with backoff, then dead-lettered; bad configuration
// is permanent.
func (w *Worker) runBackup(ctx context.Context, e *command.Envelope, p RunParams) (command.Effect, error) {
	src, err := w.Store.GetSource(ctx, p.SourceID)
	if src, err = ownSource(src, err, e, p.SourceID); err != nil {
		return nil, err
	}
	if !Runs(src) {
		return nil, unprocessable("not_runnable", "source_id", fmt.Sprintf("source %s is a record-only %s source: an external agent records its snapshots (POST /v1/sources/%s/snapshots)", src.ID, src.Kind, src.ID))
	}
	if w.Blobs == nil {
		return nil, blobsMissing()
	}
	set := w.settings()
	log := bus.Logger(ctx).WithFields(logrus.Fields{"source_id": src.ID, "account_id": src.AccountID, "run_id": RunID(e.ID)})
	run := store.BackupRun{ID: RunID(e.ID), AccountID: src.AccountID, SourceID: src.ID, CommandID: e.ID, Trigger: p.Trigger, Slot: p.Slot}

	// Over a run limit, the run waits here rather than spend one of the
	// message's deliveries: the router keeps the message ours meanwhile.
	wait := w.busyWait(log, set)
	var (
		release func()
		started time.Time
		current *store.BackupRun
		// fence is the repository's prune generation the run starts
		// under: a prune in between may delete a chunk it relies on.
		fence int64
	)
	for {
		rel, err := wait.slot(ctx, "runs")
		if err != nil {
			return nil, err
		}
		started = time.Now()
		var busy error
		limit := "LEVQOR_BACKUP_MAX_RUNS_PER_ACCOUNT"
		err = w.Store.InTx(ctx, func(tx *store.Tx) error {
			if err := tx.LockAccountForSources(ctx, src.AccountID); err != nil {
				return err
			}
			n, err := tx.CountRunningRuns(ctx, src.AccountID, run.ID, started.Add(-RunStaleAfter))
			if err != nil {
				return err
			}
			if n >= set.MaxRunsPerAccount {
				busy = fmt.Errorf("account %s already has %d backups running (LEVQOR_BACKUP_MAX_RUNS_PER_ACCOUNT=%d)", src.AccountID, n, set.MaxRunsPerAccount)
				return nil
			}
			f, err := tx.RepoFence(ctx, src.AccountID)
			if err != nil {
				return err
			}
			if f.PruningSince != nil && f.PruningSince.After(started.Add(-PruneLease)) {
				busy, limit = fmt.Errorf("the repository of account %s is being pruned (since %s)", src.AccountID, f.PruningSince.UTC().Format(time.RFC3339)), "the prune"
				return nil
			}
			fence = f.Generation
			current, err = tx.StartRun(ctx, run, started)
			return err
		})
		if err != nil {
			rel()
			return nil, err
		}
		if busy == nil {
			release = rel
			break
		}
		// The worker's slot is not held while the account's runs finish:
		// other accounts' runs may use it.
		rel()
		if err := wait.pause(ctx, limit, busy); err != nil {
			return nil, err
		}
	}
	defer release()
	if current.State == store.RunSucceeded {
		// Its outcome was committed with the inbox claim, so the runtime
		// never gets here for the same message; a replay forced by an
		// operator answers what the run did, and runs nothing again.
		return w.runOutcome(current.ID), nil
	}

	cfg, err := SourceConfigOf(src)
	if err == nil && src.Kind == KindDirectory {
		_, err = CheckPath("config.path", cfg.Path, set.AllowedPaths, set.ProtectedPaths...)
	}
	if err == nil && cfg.DSN != "" {
		// Opened here, for this run only: the row keeps it sealed. Checked
		// again as it is used, whatever a row stored before the checks
		// holds.
		if cfg.DSN, err = w.Sealer.Open(cfg.DSN); err == nil {
			err = ValidateDSN("config.dsn", cfg.DSN)
		}
	}
	if err != nil {
		reason := "the source's config is not usable: " + errorText(err)
		w.failRun(ctx, log, run, runFailure{reason: reason})
		return nil, bus.Permanent(errors.New(reason))
	}

	acc, err := w.Store.GetAccount(ctx, src.AccountID)
	if err != nil {
		return nil, err
	}
	if acc.Suspension != nil {
		// Queued before the suspension, or asked by an operator: no
		// backup runs until an operator reinstates the account.
		reason := "the account is suspended by Levqor (" + acc.Suspension.Reason + "): no backup runs until it is reinstated"
		w.failRun(ctx, log, run, runFailure{reason: reason})
		return nil, command.Fail(http.StatusConflict, "account_suspended", "", reason)
	}
	ent, err := Entitlements(acc.Entitlements)
	if err != nil {
		return nil, bus.Permanent(err)
	}
	quota := int64(ent.StorageGB) * GB
	used, err := w.Store.AccountStoredBytes(ctx, src.AccountID)
	if err != nil {
		return nil, err
	}
	quotaFailure := func(stored int64) error {
		reason := fmt.Sprintf("storage quota exceeded: the account stores %s of its %s (%s tier)", humanBytes(used), humanBytes(quota), tierOr(ent.Tier))
		if stored > 0 {
			reason = fmt.Sprintf("storage quota exceeded: the account stores %s of its %s (%s tier) and this backup passed %s before it was stopped; nothing was recorded",
				humanBytes(used), humanBytes(quota), tierOr(ent.Tier), humanBytes(stored))
		}
		w.failRun(ctx, log, run, runFailure{reason: reason, event: events.BackupQuotaExceeded{
			AccountID: src.AccountID, SourceID: src.ID, RunID: run.ID, Incident: "quota:" + run.ID,
			Reason: reason, QuotaBytes: quota, UsedBytes: used, Tier: ent.Tier, At: time.Now().UTC(),
		}})
		return unprocessable("quota_exceeded", "", reason)
	}
	if used >= quota {
		return nil, quotaFailure(0)
	}

	loc := time.UTC
	if l, err := time.LoadLocation(src.TimeZone); err == nil {
		loc = l
	}
	takenAt := started.In(loc).Truncate(time.Second)
	res, err := w.backupToRepo(ctx, log, src, cfg, run.ID, quota-used)
	if err != nil {
		switch {
		case errors.Is(err, errQuota):
			return nil, quotaFailure(res.stored)
		case ctx.Err() != nil:
			w.failRun(ctx, log, run, runFailure{reason: "interrupted: " + scrub(ctx.Err().Error(), cfg.DSN) + "; the run is retried"})
			return nil, ctx.Err()
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission):
			reason := "the source cannot be read: " + scrub(err.Error(), cfg.DSN)
			w.failRun(ctx, log, run, runFailure{reason: reason})
			return nil, bus.Permanent(errors.New(reason))
		}
		reason := scrub(err.Error(), cfg.DSN)
		w.failRun(ctx, log, run, runFailure{reason: reason})
		return nil, errors.New(reason)
	}
	log.WithFields(logrus.Fields{"stored_bytes": res.size, "source_bytes": res.summary.SourceBytes, "read_bytes": res.summary.ReadBytes,
		"unchanged_files": res.summary.Unchanged, "blob_key": res.key}).Info("backup stored")

	summary, err := json.Marshal(res.summary)
	if err != nil {
		return nil, err
	}
	recordedBy := e.KeyID
	if recordedBy == "" {
		recordedBy = "scheduler"
	}
	snap := store.Snapshot{
		ID: derivedID(SnapshotIDPrefix, "snapshot", e.ID), AccountID: src.AccountID, SourceID: src.ID,
		TakenAt: takenAt, SizeBytes: res.size, SHA256: res.sum, BlobKey: res.key, Tags: []string{}, RecordedBy: recordedBy,
		RecordedAt: time.Now(), Manifest: summary,
	}
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		if _, err := tx.LockSource(ctx, src.ID); err != nil {
			return command.Outcome{}, err
		}
		if err := refuseIfErasing(ctx, tx, src.AccountID); err != nil {
			return command.Outcome{}, err
		}
		// The account's lock orders this against a prune beginning: either
		// the prune sees this snapshot, or this sees the prune's
		// generation.
		if err := tx.LockAccountForSources(ctx, src.AccountID); err != nil {
			return command.Outcome{}, err
		}
		if f, err := tx.RepoFence(ctx, src.AccountID); err != nil {
			return command.Outcome{}, err
		} else if f.Generation != fence {
			// This run looked dead (no heartbeat) and the repository was
			// pruned meanwhile: a chunk it took as stored may be gone.
			// Run again, under the new generation.
			return command.Outcome{}, errPrunedMeanwhile
		}
		inserted, err := tx.InsertSnapshot(ctx, snap)
		if err != nil {
			return command.Outcome{}, err
		}
		if !inserted {
			return command.Outcome{}, recordConflict(ctx, tx, snap)
		}
		if err := tx.FinishRun(ctx, store.FinishRunParams{ID: run.ID, SnapshotID: snap.ID, SourceBytes: res.summary.SourceBytes,
			StoredBytes: res.size, SHA256: res.sum}); err != nil {
			return command.Outcome{}, err
		}
		if err := tx.AddRepoBytes(ctx, src.AccountID, res.size); err != nil {
			return command.Outcome{}, err
		}
		if err := w.warnQuota(ctx, tx, run, quota, snap.SizeBytes, ent.Tier); err != nil {
			return command.Outcome{}, err
		}
		if err := audit(ctx, tx, e, src.ID, snap.ID, AuditSnapshotRecorded, nil, []string{"a " + p.Trigger + " run backed the source up"}, map[string]any{
			"run_id": run.ID, "taken_at": snap.TakenAt, "size_bytes": snap.SizeBytes, "sha256": snap.SHA256, "blob_key": snap.BlobKey,
			"source_bytes": res.summary.SourceBytes, "format": RepoFormat,
		}); err != nil {
			return command.Outcome{}, err
		}
		view, err := runView(ctx, tx, run.ID)
		if err != nil {
			return command.Outcome{}, err
		}
		return command.Outcome{Status: http.StatusCreated, Result: view}, nil
	}, nil
}

// warnQuota raises backup.quota_warn, within the tx that records run's
// snapshot of added bytes, when the snapshot takes the account's stored
// bytes past one of events.QuotaWarnLevels of quota: the highest one
// crossed, once per crossing.
func (w *Worker) warnQuota(ctx context.Context, tx *store.Tx, run store.BackupRun, quota, added int64, tier string) error {
	if quota <= 0 {
		return nil
	}
	// Two runs of the account committing at once would each sum without
	// the other's snapshot and both miss the crossing: they take turns.
	// (Locks go source, then account; nothing locks them the other way.)
	if err := tx.LockAccountForSources(ctx, run.AccountID); err != nil {
		return err
	}
	after, err := tx.AccountStoredBytes(ctx, run.AccountID)
	if err != nil {
		return err
	}
	before := after - added
	for _, level := range events.QuotaWarnLevels {
		mark := quota * int64(level) / 100
		if before >= mark || after < mark {
			continue
		}
		reason := fmt.Sprintf("the account stores %s of its %s (%s tier): more than %d%% of its storage quota", humanBytes(after), humanBytes(quota), tierOr(tier), level)
		return w.raise(ctx, tx, events.BackupQuotaWarn{
			AccountID: run.AccountID, SourceID: run.SourceID, RunID: run.ID, Level: level,
			Incident: fmt.Sprintf("quota_warn:%d:%s", level, run.ID), QuotaBytes: quota, UsedBytes: after, Tier: tier,
			Reason: reason, At: time.Now().UTC(),
		}, "run-"+run.ID)
	}
	return nil
}

// runOutcome answers with the run as it is.
func (w *Worker) runOutcome(id string) command.Effect {
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		view, err := runView(ctx, tx, id)
		if err != nil {
			return command.Outcome{}, err
		}
		return command.Outcome{Status: http.StatusOK, Result: view}, nil
	}
}

func runView(ctx context.Context, tx *store.Tx, id string) (RunView, error) {
	r, err := tx.GetRun(ctx, id)
	if err != nil {
		return RunView{}, err
	}
	v := RunView{BackupRun: *r}
	if r.SnapshotID != "" {
		if v.Snapshot, err = tx.GetSnapshot(ctx, r.SnapshotID); err != nil {
			return RunView{}, err
		}
	}
	return v, nil
}

// failRun records the failure in a short transaction of its own, with its
// event, even when ctx has ended (a shutdown): the run must not stay
// "running".
func (w *Worker) failRun(ctx context.Context, log logrus.FieldLogger, run store.BackupRun, f runFailure) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := w.Store.InTx(ctx, func(tx *store.Tx) error {
		now := time.Now().UTC()
		failed, err := tx.FailRun(ctx, run.ID, f.reason, now)
		if err != nil {
			return err
		}
		return w.recordRunFailure(ctx, tx, run, f, failed, "run:"+run.ID, now)
	})
	entry := log.WithField("reason", f.reason)
	if err != nil {
		entry.WithField("error", err.Error()).Error("backup run failed and the failure could not be recorded")
		return
	}
	entry.Warn("backup run failed")
}

// recordRunFailure writes, within the tx that failed run, what its failure
// tells others: backup.run_failed when changed (the run was not failed
// already), f's own event, and the audit entry, as actor.
func (w *Worker) recordRunFailure(ctx context.Context, tx *store.Tx, run store.BackupRun, f runFailure, changed bool, actor string, now time.Time) error {
	if changed {
		if err := w.raise(ctx, tx, events.BackupRunFailed{
			AccountID: run.AccountID, SourceID: run.SourceID, RunID: run.ID, CommandID: run.CommandID,
			Trigger: run.Trigger, Attempts: run.Attempts, Incident: "run_failed:" + run.ID, Reason: f.reason, At: now,
		}, "run-"+run.ID); err != nil {
			return err
		}
	}
	if f.event != nil {
		if err := w.raise(ctx, tx, f.event, "run-"+run.ID); err != nil {
			return err
		}
	}
	d, err := json.Marshal(map[string]any{"run_id": run.ID, "command_id": run.CommandID, "trigger": run.Trigger})
	if err != nil {
		return err
	}
	_, err = tx.AppendRetentionAudit(ctx, store.RetentionAudit{
		AccountID: run.AccountID, SourceID: run.SourceID, Action: AuditRunFailed, Actor: actor,
		Reasons: []string{f.reason}, Detail: d,
	})
	return err
}

// staleBatch is how many abandoned runs one reaping reads at a time.
const staleBatch = 100

// ReapStaleRuns fails the runs whose worker stopped: still marked running
// and showing no sign of life (heartbeat, start) for RunReapAfter before
// now. Each raises backup.run_failed, so the customer is told, and an
// audit entry; should the run's command be delivered again later, the
// run runs again under the same id. It returns how many runs it failed.
func (w *Worker) ReapStaleRuns(ctx context.Context, now time.Time, actor string) (int, error) {
	before := now.Add(-w.settings().RunReapAfter)
	reaped := 0
	for {
		runs, err := w.Store.StaleRuns(ctx, before, staleBatch)
		if err != nil {
			return reaped, err
		}
		batch := 0
		for _, run := range runs {
			last := run.CreatedAt
			for _, t := range []*time.Time{run.StartedAt, run.HeartbeatAt} {
				if t != nil && t.After(last) {
					last = *t
				}
			}
			reason := "the worker running it stopped: no sign of life since " + last.UTC().Format(time.RFC3339)
			err := w.Store.InTx(ctx, func(tx *store.Tx) error {
				changed, err := tx.ReapRun(ctx, run.ID, reason, before, now)
				if err != nil || !changed {
					return err // taken up again since, or failed already
				}
				batch++
				return w.recordRunFailure(ctx, tx, run, runFailure{reason: reason}, true, actor, now)
			})
			if err != nil {
				return reaped, fmt.Errorf("reaping run %s: %w", run.ID, err)
			}
		}
		reaped += batch
		if len(runs) < staleBatch || batch == 0 {
			return reaped, nil
		}
	}
}

// raise writes ev to the outbox within tx, correlated with the incident
// or run it reports.
func (w *Worker) raise(ctx context.Context, tx *store.Tx, ev events.Event, correlation string) error {
	_, err := events.Emit(ctx, tx, w.topology(), ev, correlation)
	return err
}

// streamed is what a run stored: size bytes, the SHA-256 of the
// snapshot's blob (its manifest, for the repository) under key.
type streamed struct {
	size    int64
	sum     string
	key     string
	summary ManifestSummary
	// stored is how far a run stopped for the quota got.
	stored int64
}

// reportProgress writes the run's progress (and heartbeat) about every
// ProgressEvery until the returned stop is called, each write one short
// statement of its own.
func (w *Worker) reportProgress(ctx context.Context, log logrus.FieldLogger, runID string, done *atomic.Int64) (stop func()) {
	every := w.settings().ProgressEvery
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if err := w.Store.RunProgress(ctx, runID, done.Load(), time.Now()); err != nil && ctx.Err() == nil {
					log.WithField("error", err.Error()).Warn("could not record the run's progress")
				}
			}
		}
	}()
	return func() { close(quit); <-finished }
}

// runSlots is the worker's semaphore of LEVQOR_BACKUP_MAX_RUNS slots.
func (w *Worker) runSlots() chan struct{} {
	w.slotsOnce.Do(func() { w.slots = make(chan struct{}, w.settings().MaxRuns) })
	return w.slots
}

// busyWaiter waits, for up to LEVQOR_BACKUP_BUSY_WAIT in all, for the
// capacity one delivery of a run or restore needs, and past that bound
// answers bus.RetryAfter(BusyRetry): only then does waiting spend one of
// the message's deliveries. A waiting handler holds one of the backup-cmd
// consumer's handler slots.
type busyWaiter struct {
	w       *Worker
	log     logrus.FieldLogger
	set     Settings
	until   time.Time
	waiting bool
}

// busyWait starts the bound of one delivery's wait.
func (w *Worker) busyWait(log logrus.FieldLogger, set Settings) *busyWaiter {
	return &busyWaiter{w: w, log: log, set: set, until: time.Now().Add(set.BusyWait)}
}

// started logs, once per delivery, that the work waits and for which
// limit.
func (b *busyWaiter) started(limit string) {
	if b.waiting {
		return
	}
	b.waiting = true
	b.log.WithFields(logrus.Fields{"limit": limit, "busy_wait": b.set.BusyWait.String()}).Info("waiting for a free backup slot")
}

// slot takes one of the worker's LEVQOR_BACKUP_MAX_RUNS slots, waiting
// for one to be released until the bound; what says what the slots do
// ("runs", "streams") in the error.
func (b *busyWaiter) slot(ctx context.Context, what string) (release func(), err error) {
	slots := b.w.runSlots()
	release = func() { <-slots }
	select {
	case slots <- struct{}{}:
		return release, nil
	default:
	}
	busy := fmt.Errorf("this worker already %s %d backups (LEVQOR_BACKUP_MAX_RUNS)", what, b.set.MaxRuns)
	left := time.Until(b.until)
	if left <= 0 {
		return nil, b.giveUp(busy)
	}
	b.started("LEVQOR_BACKUP_MAX_RUNS")
	t := time.NewTimer(left)
	defer t.Stop()
	select {
	case slots <- struct{}{}:
		return release, nil
	case <-t.C:
		return nil, b.giveUp(busy)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pause waits one BusyPoll, or what is left of the bound, before the
// caller checks limit again; past the bound it answers busy to be
// retried later.
func (b *busyWaiter) pause(ctx context.Context, limit string, busy error) error {
	left := time.Until(b.until)
	if left <= 0 {
		return b.giveUp(busy)
	}
	b.started(limit)
	t := time.NewTimer(min(left, b.set.BusyPoll))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *busyWaiter) giveUp(busy error) error {
	return bus.RetryAfter(fmt.Errorf("%w, still after waiting LEVQOR_BACKUP_BUSY_WAIT=%s", busy, b.set.BusyWait), b.set.BusyRetry)
}

// errPrunedMeanwhile refuses the snapshot of a run during which the
// account's repository was pruned; the run is retried.
var errPrunedMeanwhile = errors.New("the account's backup repository was pruned while this run ran (its worker had stopped sending heartbeats): a chunk it relies on may be gone, so it runs again")

// ManifestSummary is what a snapshot records of its archive's manifest:
// enough to say what it holds without reading the blob.
type ManifestSummary struct {
	Kind string `json:"kind"`
	// Format is RepoFormat for a snapshot of the backup repository; 0
	// (absent) for an archive of format 1.
	Format      int       `json:"format,omitempty"`
	Files       int       `json:"files"`
	Dirs        int       `json:"dirs,omitempty"`
	Symlinks    int       `json:"symlinks,omitempty"`
	Skipped     int       `json:"skipped,omitempty"`
	SourceBytes int64     `json:"source_bytes"`
	DumpSHA256  string    `json:"dump_sha256,omitempty"`
	DumpSize    int64     `json:"dump_size,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	// Of a snapshot of the repository: the files taken unchanged from the
	// previous snapshot, the bytes read, the snapshot's chunks and those
	// it stored new, and the size of its (sealed) manifest.
	Unchanged     int   `json:"unchanged,omitempty"`
	ReadBytes     int64 `json:"read_bytes,omitempty"`
	Chunks        int   `json:"chunks,omitempty"`
	NewChunks     int   `json:"new_chunks,omitempty"`
	ManifestBytes int64 `json:"manifest_bytes,omitempty"`
}

// SummaryOf decodes a snapshot's manifest summary; ok is false for a
// snapshot an agent recorded, whose blob is not an archive.
func SummaryOf(s *store.Snapshot) (ManifestSummary, bool) {
	var m ManifestSummary
	if len(s.Manifest) == 0 || json.Unmarshal(s.Manifest, &m) != nil || m.Kind == "" {
		return m, false
	}
	return m, true
}

func errorText(err error) string {
	var ce *command.Error
	if errors.As(err, &ce) {
		return ce.Message
	}
	return err.Error()
}

func tierOr(t string) string {
	if t == "" {
		return "no"
	}
	return t
}

// humanBytes formats n in decimal units, as quotas are sold.
func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// streamSlot takes the capacity a verification, restore or drill of
// account's data needs: one of the account's LEVQOR_BACKUP_MAX_RUNS_PER_ACCOUNT
// streams on this worker, then one of the worker's LEVQOR_BACKUP_MAX_RUNS
// slots, as a run takes. One account asking for verifications on end
// holds at most its share of the slots, and another account's backup
// finds one free. Over its share, the message is handed back at once,
// to come again after BusyRetry (30 s): waiting in process would
// hold one of the consumer's handlers, which the other accounts' runs
// need too. The worker slot is waited for as a run waits (busyWaiter).
func (w *Worker) streamSlot(ctx context.Context, log logrus.FieldLogger, set Settings, accountID string) (release func(), err error) {
	if !w.takeStream(accountID, set.MaxRunsPerAccount) {
		return nil, bus.Defer(fmt.Sprintf("account %s already has %d verifications or restores streaming on this worker (LEVQOR_BACKUP_MAX_RUNS_PER_ACCOUNT)",
			accountID, set.MaxRunsPerAccount), set.BusyRetry)
	}
	wait := w.busyWait(log, set)
	rel, err := wait.slot(ctx, "streams")
	if err != nil {
		w.dropStream(accountID)
		return nil, err
	}
	return func() { rel(); w.dropStream(accountID) }, nil
}

// takeStream counts one more stream of account, unless it has max.
func (w *Worker) takeStream(account string, max int) bool {
	w.streamMu.Lock()
	defer w.streamMu.Unlock()
	if w.streaming == nil {
		w.streaming = map[string]int{}
	}
	if w.streaming[account] >= max {
		return false
	}
	w.streaming[account]++
	return true
}

func (w *Worker) dropStream(account string) {
	w.streamMu.Lock()
	defer w.streamMu.Unlock()
	if w.streaming[account]--; w.streaming[account] <= 0 {
		delete(w.streaming, account)
	}
}
