package backups

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
)

// The backup jobs, as the scheduler's catalog names them.
const (
	JobDue     = scheduler.JobBackupDue
	JobVerify  = scheduler.JobBackupVerify
	JobOverdue = scheduler.JobBackupOverdue
	JobReap    = scheduler.JobBackupReapStaleRuns
)

// HandleBackupTick runs backup.due, backup.verify, backup.overdue or
// backup.sweep for the tick's slot. Each is idempotent without the inbox:
// a run command's id is derived from its source and slot, a snapshot is
// marked corrupt once, an overdue incident is raised once, and a sweep
// moves a snapshot only from the state it expects.
func (w *Worker) HandleBackupTick(ctx context.Context, m *bus.Message) error {
	return scheduler.Dispatch(ConsumerBackupTicks, scheduler.Jobs{
		JobSweep: w.sweepTick,
		JobReap: func(ctx context.Context, _ *bus.Message, t scheduler.Tick) error {
			n, err := w.ReapStaleRuns(ctx, t.Slot, "reap:"+scheduler.MsgID(t.Job, t.Slot))
			if n > 0 {
				bus.Logger(ctx).WithField("runs", n).Warn("abandoned backup runs failed")
			}
			return err
		},
		JobDue: func(ctx context.Context, _ *bus.Message, t scheduler.Tick) error {
			_, err := w.Due(ctx, t.Slot)
			return err
		},
		JobVerify: func(ctx context.Context, _ *bus.Message, t scheduler.Tick) error {
			_, err := w.VerifySample(ctx, t.Slot)
			return err
		},
		JobOverdue: func(ctx context.Context, _ *bus.Message, t scheduler.Tick) error {
			_, err := w.Overdue(ctx, t.Slot)
			return err
		},
		JobRestoreDrill: func(ctx context.Context, _ *bus.Message, t scheduler.Tick) error {
			s, err := w.RestoreDrills(ctx, t.Slot)
			bus.Logger(ctx).WithFields(logrus.Fields{"passed": s.Passed, "failed": s.Failed, "skipped": s.Skipped}).Info("restore drills done")
			return err
		},
	})(ctx, m)
}

// ScheduledCommandID is the id of the run command for source's schedule
// slot: the same from every tick and scheduler replica, so a slot runs
// once (JetStream drops the duplicate message, the commands table the
// duplicate command).
func ScheduledCommandID(sourceID string, slot time.Time) string {
	return derivedID(command.IDPrefix, "scheduled run", sourceID+"@"+slot.UTC().Format(time.RFC3339))
}

// Due publishes a run command for each unpaused runnable source whose
// latest schedule slot at or before now (within DueLookback, and after
// the source was created) has no run yet, and returns how many it
// published.
func (w *Worker) Due(ctx context.Context, now time.Time) (int, error) {
	if w.Publisher == nil {
		return 0, errors.New("the backups worker has no publisher for backup.due")
	}
	sources, err := w.Store.RunnableSources(ctx, RunnableKinds...)
	if err != nil {
		return 0, err
	}
	set := w.settings()
	var errs []error
	n := 0
	for i := range sources {
		src := &sources[i]
		if src.PausedAt != nil || len(src.Config) == 0 {
			continue
		}
		slot, ok := lastSlot(src, now, set.DueLookback)
		if !ok || slot.Before(src.CreatedAt) {
			continue
		}
		published, err := w.enqueueScheduled(ctx, src, slot)
		if err != nil {
			errs = append(errs, fmt.Errorf("source %s: %w", src.ID, err))
			continue
		}
		if published {
			n++
		}
	}
	if n > 0 {
		bus.Logger(ctx).WithFields(logrus.Fields{"slot": now.UTC().Format(time.RFC3339), "runs": n}).Info("scheduled backup runs published")
	}
	return n, errors.Join(errs...)
}

// lastSlot is the latest slot of src's schedule in (now-lookback, now].
func lastSlot(src *store.BackupSource, now time.Time, lookback time.Duration) (time.Time, bool) {
	s, err := (scheduler.Job{Name: "backup", Spec: src.Schedule, TimeZone: src.TimeZone}).Schedule()
	if err != nil {
		return time.Time{}, false
	}
	var last time.Time
	t := s.Next(now.Add(-lookback))
	for i := 0; i < 100000 && !t.IsZero() && !t.After(now); i++ {
		last = t
		t = s.Next(t)
	}
	return last, !last.IsZero()
}

// enqueueScheduled records and publishes the run command of src's slot
// unless it exists already (and was published).
func (w *Worker) enqueueScheduled(ctx context.Context, src *store.BackupSource, slot time.Time) (bool, error) {
	slot = slot.UTC()
	id := ScheduledCommandID(src.ID, slot)
	params, err := json.Marshal(RunParams{SourceID: src.ID, Trigger: store.RunScheduled, Slot: &slot})
	if err != nil {
		return false, err
	}
	env := command.Envelope{ID: id, Domain: RunDomain, Action: ActionRun, AccountID: src.AccountID, KeyID: "scheduler",
		Params: params, CreatedAt: time.Now().UTC()}
	payload, err := json.Marshal(env)
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256(params)
	cmd, created, err := w.Store.CreateCommand(ctx, store.Command{
		ID: id, Scope: "schedule", AccountID: src.AccountID, Domain: RunDomain, Action: ActionRun,
		IdempotencyKey: src.ID + "@" + slot.Format(time.RFC3339), RequestHash: fmt.Sprintf("%x", sum), Payload: payload,
	})
	if err != nil {
		return false, err
	}
	if !created && cmd.Status != store.CommandQueued {
		return false, nil // carried out, or being carried out
	}
	h := nats.Header{}
	h.Set(bus.HeaderAccount, src.AccountID)
	h.Set(bus.HeaderCorrelationID, id)
	subject := w.topology().Subject(bus.Commands, RunDomain+"."+ActionRun)
	if _, err := w.Publisher.Publish(ctx, subject, cmd.ID, h, cmd.Payload); err != nil {
		return false, fmt.Errorf("publishing the run of %s@%s: %w", src.ID, slot.Format(time.RFC3339), err)
	}
	return created, nil
}

// OverdueResult is what one backup.overdue pass found.
type OverdueResult struct {
	// Overdue counts the overdue sources; Raised the new incidents among
	// them.
	Overdue int `json:"overdue"`
	Raised  int `json:"raised"`
}

// Overdue raises levqor.event.backup.overdue, once per incident, for each
// unpaused runnable source whose last good snapshot (active, not corrupt)
// is older at now than its schedule's interval plus OverdueGrace; a source
// with none counts from its creation. The incident is
// "overdue:<source>:<last good snapshot id or never>", so a new good
// snapshot ends it and a later lapse is a new one.
func (w *Worker) Overdue(ctx context.Context, now time.Time) (OverdueResult, error) {
	var res OverdueResult
	sources, err := w.Store.RunnableSources(ctx, RunnableKinds...)
	if err != nil {
		return res, err
	}
	grace := w.settings().OverdueGrace
	var errs []error
	for i := range sources {
		src := &sources[i]
		if src.PausedAt != nil || len(src.Config) == 0 {
			continue
		}
		interval, ok := scheduleInterval(src, now)
		if !ok {
			continue
		}
		since, lastID := src.CreatedAt, "never"
		var lastAt *time.Time
		good, err := w.Store.LastGoodSnapshot(ctx, src.ID)
		switch {
		case err == nil:
			since, lastID = good.TakenAt, good.ID
			lastAt = &since
		case !errors.Is(err, store.ErrNotFound):
			errs = append(errs, err)
			continue
		}
		if now.Sub(since) <= interval+grace {
			continue
		}
		res.Overdue++
		incident := "overdue:" + src.ID + ":" + lastID
		raised := false
		err = w.Store.InTx(ctx, func(tx *store.Tx) error {
			fresh, err := tx.SetOverdueIncident(ctx, src.ID, incident)
			if err != nil || !fresh {
				return err
			}
			raised = true
			reason := fmt.Sprintf("no good snapshot since %s: the schedule %q runs about every %s, plus %s of grace",
				since.UTC().Format(time.RFC3339), src.Schedule, interval, grace)
			if lastAt == nil {
				reason = fmt.Sprintf("no good snapshot since the source was created at %s: the schedule %q runs about every %s, plus %s of grace",
					since.UTC().Format(time.RFC3339), src.Schedule, interval, grace)
			}
			return w.raise(ctx, tx, events.BackupOverdue{
				AccountID: src.AccountID, SourceID: src.ID, SourceName: src.Name, Incident: incident,
				LastGoodAt: lastAt, LastGoodSnapshotID: nilIfNever(lastID), Schedule: src.Schedule,
				TimeZone: src.TimeZone, ExpectedEverySeconds: int64(interval.Seconds()), GraceSeconds: int64(grace.Seconds()),
				Reason: reason, At: now.UTC(),
			}, incident)
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("source %s: %w", src.ID, err))
			continue
		}
		if raised {
			res.Raised++
			bus.Logger(ctx).WithFields(logrus.Fields{"source_id": src.ID, "account_id": src.AccountID, "incident": incident}).Warn("backup overdue")
		}
	}
	return res, errors.Join(errs...)
}

func nilIfNever(id string) *string {
	if id == "never" {
		return nil
	}
	return &id
}

// scheduleInterval is the longest gap between src's next few schedule
// slots after now: what "on time" allows, also for schedules that skip
// weekends.
func scheduleInterval(src *store.BackupSource, now time.Time) (time.Duration, bool) {
	s, err := (scheduler.Job{Name: "backup", Spec: src.Schedule, TimeZone: src.TimeZone}).Schedule()
	if err != nil {
		return 0, false
	}
	var longest time.Duration
	t := s.Next(now)
	for i := 0; i < 8 && !t.IsZero(); i++ {
		n := s.Next(t)
		if n.IsZero() {
			break
		}
		if d := n.Sub(t); d > longest {
			longest = d
		}
		t = n
	}
	return longest, longest > 0
}
