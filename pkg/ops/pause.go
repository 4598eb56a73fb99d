package ops

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/control"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
)

// Operator actions on pauses, as the audit trail names them.
const (
	ActionSchedulePause  = "schedule.pause"
	ActionScheduleResume = "schedule.resume"
	ActionConsumerPause  = "consumer.pause"
	ActionConsumerResume = "consumer.resume"
)

// PauseReasonMax bounds a pause's reason.
const PauseReasonMax = 500

// SetJobPaused pauses (or resumes) job of jobs: while paused, the
// scheduler publishes none of its slots. It reports whether anything
// changed (pausing a paused job changes nothing) and records the action
// in the audit trail as actor's. An unknown job is an *InvalidError
// naming the jobs.
func (o *Ops) SetJobPaused(ctx context.Context, jobs []scheduler.Job, job string, pause bool, actor, reason string) (bool, error) {
	if err := knownJob(jobs, job); err != nil {
		return false, err
	}
	action := ActionScheduleResume
	if pause {
		action = ActionSchedulePause
	}
	return o.setPaused(ctx, control.JobKey(job), pause, actor, reason, action, map[string]any{"job": job, "reason": reason})
}

// SetConsumerPaused pauses (or resumes) the consumer name: while paused,
// every worker's route of it fetches nothing; messages wait in the
// stream. It reports whether anything changed and records the action in
// the audit trail. A consumer JetStream does not have is an
// *InvalidError.
func (o *Ops) SetConsumerPaused(ctx context.Context, name string, pause bool, actor, reason string) (bool, error) {
	exists, err := o.consumerExists(ctx, name)
	if err != nil {
		return false, err
	}
	if !exists {
		return false, invalid("consumer", "no consumer named %q (see levqor status)", name)
	}
	action := ActionConsumerResume
	if pause {
		action = ActionConsumerPause
	}
	return o.setPaused(ctx, control.ConsumerKey(name), pause, actor, reason, action, map[string]any{"consumer": name, "reason": reason})
}

func (o *Ops) setPaused(ctx context.Context, key string, pause bool, actor, reason, action string, params map[string]any) (bool, error) {
	if len(reason) > PauseReasonMax {
		return false, invalid("reason", "longer than %d bytes", PauseReasonMax)
	}
	ctl, err := control.Open(ctx, o.js, o.topo, o.log)
	if err != nil {
		return false, err
	}
	var changed bool
	if pause {
		changed, err = ctl.Set(ctx, key, control.Pause{By: actor, Reason: reason, At: o.now().UTC()})
	} else {
		changed, err = ctl.Clear(ctx, key)
	}
	outcome := store.AuditOutcomeOK
	if err != nil {
		outcome = store.AuditOutcomeFailed
	}
	if aerr := o.audit(ctx, actor, action, params, map[string]any{"changed": changed}, outcome); err == nil {
		err = aerr
	}
	return changed, err
}

// Pauses lists every pause: keys control.JobKey and control.ConsumerKey.
func (o *Ops) Pauses(ctx context.Context) (map[string]control.Pause, error) {
	ctl, err := control.Open(ctx, o.js, o.topo, o.log)
	if err != nil {
		return nil, err
	}
	return ctl.List(ctx)
}

// consumerExists looks for the durable consumer name on every stream.
func (o *Ops) consumerExists(ctx context.Context, name string) (bool, error) {
	if name == "" || strings.ContainsAny(name, ".*> ") {
		return false, nil
	}
	for _, k := range slices.Clone(bus.Kinds) {
		_, err := o.js.Consumer(ctx, o.topo.StreamName(k), name)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
		default:
			return false, err
		}
	}
	return false, nil
}

func (o *Ops) jobs() []scheduler.Job {
	if o.set.Jobs != nil {
		return o.set.Jobs
	}
	return scheduler.Catalog()
}

// BackfillSchedule publishes the past slots of job between since and
// until that the TICKS stream lacks (scheduler.Backfill) and records it
// in the audit trail as actor's. Bad input is an *InvalidError naming the
// field: an unknown job, a backwards or future range, one older than the
// stream keeps.
func (o *Ops) BackfillSchedule(ctx context.Context, job string, since, until time.Time, actor string) (scheduler.BackfillResult, error) {
	jobs := o.jobs()
	if err := knownJob(jobs, job); err != nil {
		return scheduler.BackfillResult{}, err
	}
	s, err := scheduler.New(o.js, scheduler.Config{Topology: o.topo, Jobs: jobs, Logger: o.log, Now: o.now, BusKey: o.set.BusKey})
	if err != nil {
		return scheduler.BackfillResult{}, err
	}
	params := map[string]any{"job": job, "since": since.UTC(), "until": until.UTC()}
	res, err := s.Backfill(ctx, job, since, until)
	var be *scheduler.BackfillError
	if errors.As(err, &be) {
		return res, invalid(be.Field, "%s", be.Message) // refused: nothing happened
	}
	outcome := store.AuditOutcomeOK
	if err != nil {
		outcome = store.AuditOutcomeFailed
	}
	if aerr := o.audit(ctx, actor, ActionScheduleBackfill, params, map[string]any{"published": len(res.Published), "present": len(res.Present)}, outcome); err == nil {
		err = aerr
	}
	return res, err
}

// knownJob refuses a job jobs does not hold, naming those it does.
func knownJob(jobs []scheduler.Job, job string) error {
	if _, ok := scheduler.Lookup(jobs, job); ok {
		return nil
	}
	names := make([]string, len(jobs))
	for i, j := range jobs {
		names[i] = j.Name
	}
	return invalid("job", "no job named %q (jobs: %s)", job, strings.Join(names, ", "))
}
