package backups

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/inbox"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
)

// WorkerName is the worker's name in LEVQOR_WORKERS. It was "retention",
// which LEVQOR_WORKERS accepts, with a warning, until the next release.
const WorkerName = "backups"

// Domain is the command domain the worker handles:
// levqor.cmd.retention.<action>.
const Domain = "retention"

// The worker's durable consumers. Their names predate the domain's name
// and stay: a consumer's name is its position in its stream and its key in
// the inbox, so a renamed consumer would receive its stream's whole
// history again.
const (
	ConsumerCommands = "retention-cmd"
	ConsumerTicks    = "retention-tick"
	ConsumerEvents   = "retention-event"
	// ConsumerRuns carries the backup.* commands that stream data (runs,
	// restores, verifications) and ConsumerBackupTicks the backup.* jobs,
	// apart from the quick retention ones.
	ConsumerRuns        = "backup-cmd"
	ConsumerBackupTicks = "backup-tick"
	// ConsumerCommandsDLQ and ConsumerRunsDLQ mark the dead letters of
	// retention-cmd and backup-cmd failed.
	ConsumerCommandsDLQ = "retention-dlq"
	ConsumerRunsDLQ     = "backup-dlq"
)

// Actions of the retention domain.
const (
	ActionCreateSource   = "create_source"
	ActionRecordSnapshot = "record_snapshot"
	ActionSetPolicy      = "set_policy"
	ActionPlaceHold      = "place_hold"
	ActionReleaseHold    = "release_hold"
	ActionSweep          = "sweep"
	ActionRestore        = "restore_snapshot"
)

// Id prefixes of the domain's resources.
const (
	SourceIDPrefix   = "src_"
	SnapshotIDPrefix = "snap_"
	HoldIDPrefix     = "hold_"
)

// JobSweep is the periodic sweep, as the scheduler's catalog names it.
const JobSweep = scheduler.JobBackupSweep

// JobSweepFormerName is what JobSweep was called. The retention-tick
// consumer runs ticks published under that name by a scheduler of the
// previous release, until the next one.
const JobSweepFormerName = "retention.sweep"

// Defaults of Settings.
const (
	// MaxShareDefault is LEVQOR_SWEEP_MAX_SHARE: the largest share of a
	// source's snapshots one sweep may delete before it stops and alerts.
	MaxShareDefault = 0.5
	// TrashGraceDefault is LEVQOR_TRASH_GRACE: how long a deleted
	// snapshot stays restorable in the trash before its blob is purged.
	TrashGraceDefault = 7 * 24 * time.Hour
	// MaxRunsDefault is LEVQOR_BACKUP_MAX_RUNS: runs at once per worker
	// process.
	MaxRunsDefault = 2
	// MaxRunsPerAccountDefault is LEVQOR_BACKUP_MAX_RUNS_PER_ACCOUNT.
	MaxRunsPerAccountDefault = 1
	// VerifySampleDefault is LEVQOR_VERIFY_SAMPLE: snapshots re-read per
	// backup.verify tick.
	VerifySampleDefault = 5
	// OverdueGraceDefault is LEVQOR_OVERDUE_GRACE.
	OverdueGraceDefault = time.Hour
	// RunReapAfterDefault is LEVQOR_RUN_REAP_AFTER: how long a run may show
	// no sign of life before backup.reap_stale_runs fails it. Runs beat
	// every ProgressEvery, a dead worker's run is redelivered after the ack
	// wait, and a redelivered run waits up to BusyWaitDefault for a slot
	// before it beats again: half an hour of silence means nobody is on it.
	RunReapAfterDefault = 30 * time.Minute
	// RunTimeoutDefault is LEVQOR_BACKUP_TIMEOUT: the longest one run,
	// restore or verification may take.
	RunTimeoutDefault = 12 * time.Hour
	// BusyRetryDefault is how long a run over a concurrency limit waits
	// before it is delivered again.
	BusyRetryDefault = 30 * time.Second
	// BusyWaitDefault is LEVQOR_BACKUP_BUSY_WAIT: how long one delivery
	// of a run or restore waits in process for a free slot before it is
	// sent back to wait BusyRetry.
	BusyWaitDefault = 15 * time.Minute
	// BusyPollDefault is how often a run waiting for its account's other
	// runs counts them again.
	BusyPollDefault = 5 * time.Second
	// ProgressEveryDefault is how often a running run records its
	// progress.
	ProgressEveryDefault = time.Second
	// DueLookbackDefault is how far back backup.due looks for a schedule
	// slot that has no run yet.
	DueLookbackDefault = time.Hour
)

// Settings are the deployment's retention knobs.
type Settings struct {
	// MaxShare is the largest share of a source's active snapshots one
	// sweep may send to the trash (LEVQOR_SWEEP_MAX_SHARE).
	MaxShare float64
	// TrashGrace is how long a trashed snapshot keeps its blob before a
	// sweep purges it (LEVQOR_TRASH_GRACE).
	TrashGrace time.Duration
	// AllowedPaths are the directories directory sources and restores may
	// use (LEVQOR_BACKUP_PATHS); empty refuses them.
	AllowedPaths []string
	// LockWindow locks the repositories' packs in the blob store
	// (LEVQOR_BLOB_LOCK_DAYS; repo.Repo.LockWindow); 0 locks nothing.
	LockWindow time.Duration
	// ProtectedPaths are Levqor's own directories (its data and blob
	// directories): no source or restore target may lie in or hold one.
	ProtectedPaths []string
	// MaxRuns bounds the runs, restores and verifications one worker
	// process streams at once (LEVQOR_BACKUP_MAX_RUNS); MaxRunsPerAccount
	// the runs of one account across all workers
	// (LEVQOR_BACKUP_MAX_RUNS_PER_ACCOUNT). Over either, the command
	// waits in process for up to BusyWait (LEVQOR_BACKUP_BUSY_WAIT),
	// counting the account's runs again every BusyPoll, and is then
	// delivered again after BusyRetry.
	MaxRuns           int
	MaxRunsPerAccount int
	BusyRetry         time.Duration
	BusyWait          time.Duration
	BusyPoll          time.Duration
	// VerifySample is how many snapshots a backup.verify tick re-reads
	// (LEVQOR_VERIFY_SAMPLE).
	VerifySample int
	// OverdueGrace is how late past its schedule a source's last good
	// snapshot may be before backup.overdue alerts (LEVQOR_OVERDUE_GRACE).
	OverdueGrace time.Duration
	// RunReapAfter is how long a running run may show no sign of life
	// before it is failed as abandoned.
	RunReapAfter time.Duration
	// RunTimeout bounds one run, restore or verification
	// (LEVQOR_BACKUP_TIMEOUT).
	RunTimeout time.Duration
	// ProgressEvery is how often a run records its progress.
	ProgressEvery time.Duration
	// DueLookback is how far back backup.due looks for unrun slots.
	DueLookback time.Duration
	// DrillEvery is how often backup.restore_drill drills each entitled
	// source (LEVQOR_DRILL_EVERY); DrillDSN is the PostgreSQL server its
	// scratch databases are made on (LEVQOR_DRILL_POSTGRES_URL; "" skips
	// postgres sources' drills, saying so).
	DrillEvery time.Duration
	DrillDSN   string
	// GCAge is how old an unreferenced blob, or an abandoned upload, must
	// be before blob.gc removes it (LEVQOR_BLOB_GC_AGE).
	GCAge time.Duration
	// DatabaseURL is Levqor's own database, which levqor.selfbackup backs
	// up (LEVQOR_DATABASE_URL); SelfBackupKeep how many of its
	// self-backups are kept (LEVQOR_SELFBACKUP_KEEP).
	DatabaseURL    string
	SelfBackupKeep int
}

// WithDefaults fills unset fields.
func (s Settings) WithDefaults() Settings {
	if s.MaxShare <= 0 {
		s.MaxShare = MaxShareDefault
	}
	if s.TrashGrace <= 0 {
		s.TrashGrace = TrashGraceDefault
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if s.MaxRuns <= 0 {
		s.MaxRuns = MaxRunsDefault
	}
	if s.MaxRunsPerAccount <= 0 {
		s.MaxRunsPerAccount = MaxRunsPerAccountDefault
	}
	if s.VerifySample <= 0 {
		s.VerifySample = VerifySampleDefault
	}
	def(&s.BusyRetry, BusyRetryDefault)
	def(&s.BusyWait, BusyWaitDefault)
	def(&s.BusyPoll, BusyPollDefault)
	def(&s.OverdueGrace, OverdueGraceDefault)
	def(&s.RunReapAfter, RunReapAfterDefault)
	def(&s.RunTimeout, RunTimeoutDefault)
	def(&s.ProgressEvery, ProgressEveryDefault)
	def(&s.DueLookback, DueLookbackDefault)
	def(&s.GCAge, GCAgeDefault)
	def(&s.DrillEvery, DrillEveryDefault)
	if s.SelfBackupKeep <= 0 {
		s.SelfBackupKeep = SelfBackupKeepDefault
	}
	return s
}

// CommandConsumer declares retention-cmd: every retention command.
func CommandConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerCommands, Kind: bus.Commands, Filter: Domain + ".>"}
}

// TickConsumer declares retention-tick: the sweep's ticks under its former
// name (JobSweepFormerName), which a scheduler of the previous release
// still publishes during an upgrade.
func TickConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerTicks, Kind: bus.Ticks, Filter: "retention.>"}
}

// RunConsumer declares backup-cmd: the backup.* commands, which stream
// data and may run for hours.
func RunConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerRuns, Kind: bus.Commands, Filter: RunDomain + ".>"}
}

// BackupTickConsumer declares backup-tick: the backup.* jobs' ticks
// (backup.due, backup.verify, backup.overdue and backup.sweep).
func BackupTickConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerBackupTicks, Kind: bus.Ticks, Filter: "backup.>"}
}

// EventConsumer declares retention-event: billing's events, whose
// entitlement and status changes change what retention may delete.
func EventConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerEvents, Kind: bus.Events, Filter: "billing.>"}
}

// ErrBlobsNotConfiguredMessage is what a command or sweep that needs the
// blob store answers when the worker has none.
const ErrBlobsNotConfiguredMessage = "the backups worker has no blob store: set LEVQOR_BLOB_DIR (dev mode uses LEVQOR_DATA_DIR/blobs)"

// The worker's handlers have the shapes their runtimes expect.
var (
	_ command.Func    = (*Worker)(nil).Handle
	_ command.Func    = (*Worker)(nil).HandleBackup
	_ bus.Handler     = (*Worker)(nil).HandleTick
	_ bus.Handler     = (*Worker)(nil).HandleBackupTick
	_ inbox.TxHandler = (*Worker)(nil).HandleEvent
)

// Worker is the backups worker: it keeps the catalog of backup
// sources and snapshots, carries out the retention commands, applies
// retention policies on the backup.sweep tick, and follows billing's
// entitlement and status changes.
type Worker struct {
	// Store holds the catalog; required.
	Store *store.Store
	// Sealer opens the DSNs the API sealed (LEVQOR_MASTER_KEYS); nil
	// fails a sealed one, saying so.
	Sealer *keys.Sealer
	// Blobs holds the snapshots' bytes; nil fails what needs them, with
	// ErrBlobsNotConfiguredMessage.
	Blobs blob.Store
	// Runtime does the command bookkeeping; required.
	Runtime *command.Runtime
	// Topology names the subjects of the events the worker emits.
	Topology bus.Topology
	// Settings are the sweep's limits; zero fields take the defaults.
	Settings Settings
	// Metrics counts what sweeps do; nil counts nothing.
	Metrics *Metrics
	// Publisher publishes the run commands of backup.due; nil fails that
	// job.
	Publisher *bus.Publisher

	slotsOnce sync.Once
	slots     chan struct{}
	// streaming counts, per account, the verifications, restores and
	// drills this worker streams (see streamSlot).
	streamMu  sync.Mutex
	streaming map[string]int
}

func (w *Worker) settings() Settings { return w.Settings.WithDefaults() }

func (w *Worker) topology() bus.Topology {
	if w.Topology.Streams == nil {
		return w.Topology.WithDefaults()
	}
	return w.Topology
}

// Register adds the worker's consumers to r: retention-cmd and
// retention-dlq for the catalog's commands, backup-cmd and backup-dlq for
// runs, restores and verifications, backup-tick for the jobs (and
// retention-tick for the sweep's former name), and retention-event for
// billing's events.
func (w *Worker) Register(r *bus.Router) {
	r.Handle(CommandConsumer(), w.Runtime.Handler(w.Handle))
	r.Handle(w.Runtime.DeadLetters(ConsumerCommandsDLQ, ConsumerCommands))
	r.Handle(TickConsumer(), w.HandleTick)
	r.Handle(EventConsumer(), inbox.Handler(w.Store, w.HandleEvent))
	r.Handle(RunConsumer(), w.longRunning(w.Runtime.Handler(w.HandleBackup)))
	r.Handle(w.Runtime.DeadLetters(ConsumerRunsDLQ, ConsumerRuns))
	r.Handle(BackupTickConsumer(), w.longRunning(w.HandleBackupTick))
	r.Handle(BlobTickConsumer(), w.longRunning(w.HandleBlobTick))
	r.Handle(SelfTickConsumer(), w.longRunning(w.HandleSelfTick))
}

// longRunning lets h run up to LEVQOR_BACKUP_TIMEOUT (bus.LongRunning).
func (w *Worker) longRunning(h bus.Handler) bus.Handler {
	return bus.LongRunning(h, w.settings().RunTimeout)
}

// HandleBackup carries out one backup.* command (a command.Func).
func (w *Worker) HandleBackup(ctx context.Context, e *command.Envelope) (command.Effect, error) {
	return command.Route(ctx, e, "backup", RunDomain, command.Actions{
		ActionRun:            command.Typed(w.runBackup),
		ActionRestoreData:    command.Typed(w.restoreData),
		ActionVerifySnapshot: command.Typed(w.verifyCommand),
		ActionPause:          command.Typed(w.pauseSource),
		ActionResume:         command.Typed(w.pauseSource),
		ActionSetConfig:      command.Typed(w.setConfig),
	})
}

// Handle carries out one retention command (a command.Func).
func (w *Worker) Handle(ctx context.Context, e *command.Envelope) (command.Effect, error) {
	return command.Route(ctx, e, "retention", Domain, command.Actions{
		ActionCreateSource:   command.Typed(w.createSource),
		ActionRecordSnapshot: command.Typed(w.recordSnapshot),
		ActionSetPolicy:      command.Typed(w.setPolicy),
		ActionPlaceHold:      command.Typed(w.placeHold),
		ActionReleaseHold:    command.Typed(w.releaseHold),
		ActionSweep:          command.Typed(w.sweepCommand),
		ActionRestore:        command.Typed(w.restore),
	})
}

// HandleTick runs a sweep tick published under the job's former name
// (retention-tick); see sweepTick.
func (w *Worker) HandleTick(ctx context.Context, m *bus.Message) error {
	return scheduler.Dispatch(ConsumerTicks, scheduler.Jobs{JobSweepFormerName: w.sweepTick})(ctx, m)
}

// sweepTick runs the backup.sweep job for the tick's slot. It does not go
// through the inbox: every step of a sweep is idempotent (a snapshot is
// moved only from the state the step expects, and deleting a deleted blob
// succeeds), so a redelivered tick finds nothing left to do, or finishes
// what a crash interrupted.
func (w *Worker) sweepTick(ctx context.Context, _ *bus.Message, t scheduler.Tick) error {
	return w.SweepAll(ctx, t.Slot, "sweep:"+scheduler.MsgID(t.Job, t.Slot))
}

// SweepAll sweeps every source at now, as actor. A source that fails does
// not stop the others; the errors are returned together, so the tick is
// retried and the retry finishes what is left.
func (w *Worker) SweepAll(ctx context.Context, now time.Time, actor string) error {
	if w.Blobs == nil {
		return errors.New(ErrBlobsNotConfiguredMessage)
	}
	log := bus.Logger(ctx).WithField("slot", now.UTC().Format(time.RFC3339))
	if err := w.restoreGate(ctx); err != nil {
		// Not retried: nothing changes until an operator reconciles.
		log.WithError(err).Error("backup.sweep skipped")
		return nil
	}
	start := time.Now()
	var errs []error
	var sources, trashed, purged, blocked int
	var after *store.SourceCursor
	for {
		page, err := w.Store.ListSources(ctx, store.ListSourcesParams{Limit: 200, After: after})
		if err != nil {
			return err
		}
		for _, src := range page {
			res, err := w.SweepSource(ctx, src.ID, SweepOptions{Now: now, Actor: actor})
			if err != nil {
				errs = append(errs, fmt.Errorf("source %s: %w", src.ID, err))
				log.WithFields(logrus.Fields{"source_id": src.ID, "account_id": src.AccountID, "error": err.Error()}).Error("sweep of a source failed; the tick will be retried")
				continue
			}
			sources++
			trashed += len(res.Trashed)
			purged += len(res.Purged)
			if res.Outcome == OutcomeBlocked {
				blocked++
			}
		}
		if len(page) < 200 {
			break
		}
		last := page[len(page)-1]
		after = &store.SourceCursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	w.Metrics.sweep(time.Since(start), len(errs) > 0)
	log.WithFields(logrus.Fields{"sources": sources, "trashed": trashed, "purged": purged, "blocked": blocked, "failed": len(errs)}).Info("retention sweep done")
	// What the purges above left unused in the repositories goes now.
	// The clock, not the tick's slot: a late or retried tick must not
	// date packs obsolete earlier than they became so.
	if err := w.PruneAll(ctx, time.Now()); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// derivedID is the id of the resource command cmdID creates: the same on
// every retry of the command.
func derivedID(prefix, what, cmdID string) string {
	return command.IDFor(prefix, what, cmdID)
}

// Metrics count what sweeps do.
type Metrics struct {
	trashed  prometheus.Counter
	purged   prometheus.Counter
	blocked  prometheus.Counter
	duration *prometheus.HistogramVec
}

// NewMetrics creates the worker's metrics on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		trashed: prometheus.NewCounter(prometheus.CounterOpts{Name: "levqor_retention_snapshots_trashed_total", Help: "Snapshots sweeps sent to the trash."}),
		purged:  prometheus.NewCounter(prometheus.CounterOpts{Name: "levqor_retention_snapshots_purged_total", Help: "Snapshots whose blobs sweeps deleted after the trash grace period."}),
		blocked: prometheus.NewCounter(prometheus.CounterOpts{Name: "levqor_retention_sweeps_blocked_total", Help: "Sources whose sweep was blocked because it would delete too large a share at once (alert raised)."}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "levqor_retention_sweep_duration_seconds", Help: "Duration of a sweep of every source, by result.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.trashed, m.purged, m.blocked, m.duration)
	}
	return m
}

func (m *Metrics) add(trashed, purged int, blocked bool) {
	if m == nil {
		return
	}
	m.trashed.Add(float64(trashed))
	m.purged.Add(float64(purged))
	if blocked {
		m.blocked.Inc()
	}
}

func (m *Metrics) sweep(d time.Duration, failed bool) {
	if m == nil {
		return
	}
	result := "ok"
	if failed {
		result = "failed"
	}
	m.duration.WithLabelValues(result).Observe(d.Seconds())
}
