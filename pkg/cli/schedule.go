package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/telemetry"
)

func init() {
	registerGroup("schedule", "list | trigger <job> | backfill <job>: periodic jobs, next fire times, last slots", scheduleUsage,
		map[string]commandFunc{"list": scheduleCommand("list"), "trigger": scheduleCommand("trigger"), "backfill": scheduleCommand("backfill"),
			"pause": pauseCommand("schedule", true), "resume": pauseCommand("schedule", false)})
}

// scheduleSynopsis is each schedule subcommand's usage line.
var scheduleSynopsis = map[string]string{
	"list":     "schedule list [--json]",
	"trigger":  "schedule trigger <job> [--wait [--timeout d]] [--json] [--actor name]",
	"backfill": "schedule backfill <job> --since t --until t [--json] [--actor name]",
}

const scheduleUsage = "schedule list [--json]\nschedule trigger <job> [--json]\nschedule backfill <job> --since t --until t [--json]\nschedule pause|resume <job>"

// scheduleCommand is `levqor schedule <sub>`.
func scheduleCommand(sub string) commandFunc {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
		return runSchedule(ctx, sub, args, stdout, stderr, opts)
	}
}

// scheduleNATSTimeout bounds connecting to NATS and each read or publish.
const scheduleNATSTimeout = 5 * time.Second

// scheduleNextCount is how many fire times `schedule list` shows per job.
const scheduleNextCount = 3

// ScheduleEntry is one job in `levqor schedule list --json`.
type ScheduleEntry struct {
	scheduler.Job
	// Next are the next fire times in the job's time zone; empty for a
	// disabled job.
	Next []time.Time `json:"next"`
	// LastSlot is the newest scheduled slot in the TICKS stream.
	LastSlot *time.Time `json:"last_slot"`
	// LastManual is the newest tick when an operator triggered it after
	// the last scheduled one.
	LastManual *scheduler.Tick `json:"last_manual,omitempty"`
	// LastStored is when JetStream stored the newest tick.
	LastStored *time.Time `json:"last_stored,omitempty"`
	// Error says why the last tick could not be read.
	Error string `json:"error,omitempty"`
}

func runSchedule(ctx context.Context, sub string, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("schedule "+sub, scheduleSynopsis[sub], stdout,
		envOf(envBus, []string{"LEVQOR_SCHEDULE", "LEVQOR_CATCHUP_WINDOW"})...)
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	var to triggerOptions
	var actor, since, until *string
	if sub == "backfill" {
		actor = addActorFlag(fs, opts)
		since = fs.String("since", "", "first slot to consider (RFC 3339, a date, or a duration ago: 6h); within what the TICKS stream keeps")
		until = fs.String("until", "", "last slot to consider (RFC 3339, a date, or a duration ago); in the past")
		fs.env = envOf(fs.env, envStore, []string{"USER"})
		fs.describe("Publishes a tick for every slot of the job between --since and --until that the TICKS stream does not hold " +
			"(missed while the scheduler was down past its catch-up window, or the job was off), each with the slot's own id, " +
			"so no slot runs twice; records it in the audit trail (levqor audit).")
	}
	if sub == "trigger" {
		actor = addActorFlag(fs, opts)
		fs.BoolVar(&to.wait, "wait", false, "wait until every worker consuming the tick has handled it, and say how each did")
		fs.DurationVar(&to.timeout, "timeout", 5*time.Minute, "with --wait: how long to wait")
		fs.env = envOf(fs.env, envStore, []string{"USER"})
		fs.describe("Publishes a manual tick of the job now, outside its schedule, and records it in the audit trail (levqor audit).")
	}
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	switch {
	case sub == "list" && len(pos) > 0:
		return usageError("schedule list takes no arguments, got %q", pos)
	case sub == "trigger" && len(pos) != 1:
		return usageError("schedule trigger <job>: name one job (see `levqor schedule list`)")
	case sub == "backfill" && len(pos) != 1:
		return usageError("schedule backfill <job>: name one job (see `levqor schedule list`)")
	case sub == "backfill" && (*since == "" || *until == ""):
		return usageError("schedule backfill: --since and --until are required")
	}
	var bf backfillRange
	if sub == "backfill" {
		if bf.since, err = timeFlag("since", *since); err != nil {
			return err
		}
		if bf.until, err = timeFlag("until", *until); err != nil {
			return err
		}
	}

	cfg, err := config.FromEnv(opts.Getenv)
	if err != nil {
		return err
	}
	if err := cfg.Topology.Validate(); err != nil {
		return fmt.Errorf("LEVQOR_SUBJECT_PREFIX/LEVQOR_STREAM_REPLICAS: %w", err)
	}
	jobs, warnings, err := scheduler.Override(scheduler.Catalog(), cfg.Schedule)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintln(stderr, "levqor: warning:", w)
	}
	if sub == "trigger" || sub == "backfill" {
		if now, ok := scheduler.RenamedJobs[pos[0]]; ok {
			return usageError("job %q is now called %q", pos[0], now)
		}
		if _, ok := scheduler.Lookup(jobs, pos[0]); !ok {
			names := make([]string, len(jobs))
			for i, j := range jobs {
				names[i] = j.Name
			}
			return usageError("no job named %q (jobs: %s)", pos[0], strings.Join(names, ", "))
		}
	}
	log, err := telemetry.NewLogger(stderr, cfg.LogFormat, "warn")
	if err != nil {
		return err
	}
	natsURL, natsOpts := cliNATS(cfg, opts)
	var js jetstream.JetStream
	nc, connErr := nats.Connect(natsURL, append([]nats.Option{nats.Name("levqor-schedule"), nats.Timeout(scheduleNATSTimeout)}, natsOpts...)...)
	if connErr == nil {
		defer nc.Close()
		if js, connErr = jetstream.New(nc); connErr != nil {
			js = nil
		}
	}
	if connErr != nil {
		connErr = fmt.Errorf("connecting to NATS at %s (LEVQOR_NATS_URL, or dev mode's LEVQOR_DEV_NATS_ADDR): %w", redactNATSURL(natsURL), connErr)
	}
	bk, err := cliBusKey(cfg, opts)
	if err != nil {
		return err
	}
	sched, err := scheduler.New(js, scheduler.Config{
		BusKey:        bk,
		Topology:      cfg.Topology,
		Jobs:          jobs,
		CatchUpWindow: cfg.CatchUpWindow,
		Timeout:       scheduleNATSTimeout,
		Logger:        log,
	})
	if err != nil {
		return err
	}

	if sub == "backfill" {
		if connErr != nil {
			return connErr
		}
		st, err := openKeyStore(ctx, stderr, opts)
		if err != nil {
			return fmt.Errorf("a backfill is recorded in the audit trail: %w", err)
		}
		defer st.Close()
		return scheduleBackfill(ctx, sched, st, pos[0], bf, *actor, *asJSON, stdout, stderr)
	}
	if sub == "trigger" {
		if connErr != nil {
			return connErr
		}
		st, err := openKeyStore(ctx, stderr, opts)
		if err != nil {
			return fmt.Errorf("a trigger is recorded in the audit trail: %w", err)
		}
		defer st.Close()
		to.actor, to.asJSON = *actor, *asJSON
		return scheduleTrigger(ctx, sched, js, cfg.Topology, st, pos[0], to, stdout, stderr)
	}
	entries := scheduleList(ctx, sched, js != nil, time.Now())
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(entries); err != nil {
			return err
		}
	} else {
		printSchedule(stdout, entries, sched.CatchUpWindow())
	}
	if connErr != nil {
		return fmt.Errorf("last slots unknown: %w", connErr)
	}
	for _, e := range entries {
		if e.Error != "" {
			return fmt.Errorf("reading the last tick of %s: %s", e.Name, e.Error)
		}
	}
	return nil
}

func scheduleList(ctx context.Context, s *scheduler.Scheduler, withNATS bool, now time.Time) []ScheduleEntry {
	var out []ScheduleEntry
	for _, j := range s.Jobs() {
		e := ScheduleEntry{Job: j, Next: []time.Time{}}
		sc, err := j.Schedule()
		if err != nil { // New validated every job; kept for safety
			e.Error = err.Error()
			out = append(out, e)
			continue
		}
		if !j.Disabled {
			for _, t := range sc.NextN(now, scheduleNextCount) {
				e.Next = append(e.Next, t.In(sc.Location()))
			}
		}
		if withNATS {
			last, err := s.Last(ctx, j.Name)
			switch {
			case err != nil:
				e.Error = err.Error()
			default:
				if !last.Slot.IsZero() {
					t := last.Slot.In(sc.Location())
					e.LastSlot = &t
				}
				if !last.Stored.IsZero() {
					t := last.Stored
					e.LastStored = &t
				}
				e.LastManual = last.Manual
			}
		}
		out = append(out, e)
	}
	return out
}

func printSchedule(w io.Writer, entries []ScheduleEntry, window time.Duration) {
	fmt.Fprintf(w, "%d jobs; missed slots are caught up for %s (LEVQOR_CATCHUP_WINDOW); times in each job's zone\n", len(entries), window)
	const layout = "2006-01-02 15:04:05 MST"
	for _, e := range entries {
		state := "enabled"
		if e.Disabled {
			state = "disabled by LEVQOR_SCHEDULE"
		}
		zone := e.TimeZone
		if zone == "" {
			zone = "UTC"
		}
		fmt.Fprintf(w, "\n%s  (%s)\n", e.Name, state)
		fmt.Fprintf(w, "  spec       %s  [%s]\n", e.Spec, zone)
		if e.Disabled {
			fmt.Fprintf(w, "  next       -\n")
		} else {
			next := make([]string, len(e.Next))
			for i, t := range e.Next {
				next[i] = t.Format(layout)
			}
			fmt.Fprintf(w, "  next       %s\n", strings.Join(next, "   "))
		}
		switch {
		case e.Error != "":
			fmt.Fprintf(w, "  last slot  unknown: %s\n", e.Error)
		case e.LastSlot != nil:
			fmt.Fprintf(w, "  last slot  %s\n", e.LastSlot.Format(layout))
		default:
			fmt.Fprintf(w, "  last slot  none in the TICKS stream\n")
		}
		if e.LastManual != nil {
			fmt.Fprintf(w, "  manual     %s (triggered by an operator)\n", e.LastManual.Slot.Format(time.RFC3339))
		}
		fmt.Fprintf(w, "  does       %s\n", e.Description)
	}
}

// triggerOptions are schedule trigger's flags.
type triggerOptions struct {
	actor   string
	asJSON  bool
	wait    bool
	timeout time.Duration
}

// TriggerResult is `levqor schedule trigger --json`: the tick published
// and, with --wait, what each consumer of it did.
type TriggerResult struct {
	scheduler.Published
	Handling []ops.Handling `json:"handling,omitempty"`
}

func scheduleTrigger(ctx context.Context, s *scheduler.Scheduler, js jetstream.JetStream, topo bus.Topology, st *store.Store, job string, o triggerOptions, stdout, stderr io.Writer) error {
	if j, _ := scheduler.Lookup(s.Jobs(), job); j.Disabled {
		fmt.Fprintf(stderr, "note: %s is disabled by LEVQOR_SCHEDULE; its worker still handles this tick\n", job)
	}
	p, err := s.Trigger(ctx, job)
	if err != nil {
		_ = auditCLI(ctx, st, stderr, o.actor, ops.ActionScheduleTrigger, map[string]any{"job": job}, nil, store.AuditOutcomeFailed)
		return err
	}
	if err := auditCLI(ctx, st, stderr, o.actor, ops.ActionScheduleTrigger,
		map[string]any{"job": job, "msg_id": p.MsgID, "slot": p.Tick.Slot}, map[string]any{"seq": p.Seq}, store.AuditOutcomeOK); err != nil {
		return err
	}
	if !o.asJSON {
		fmt.Fprintf(stdout, "published manual tick %s\n  slot %s, TICKS sequence %d\n", p.MsgID, p.Tick.Slot.Format(time.RFC3339), p.Seq)
	}
	res := TriggerResult{Published: p}
	var waitErr error
	if o.wait {
		wctx, cancel := context.WithTimeout(ctx, o.timeout)
		defer cancel()
		res.Handling, waitErr = ops.WaitHandled(wctx, js, topo, bus.Ticks, topo.Subject(bus.Ticks, job), p.Seq)
		if errors.Is(waitErr, context.DeadlineExceeded) {
			waitErr = fmt.Errorf("%s not handled within %s (--timeout): see `levqor stuck`", job, o.timeout)
		}
		for _, h := range res.Handling {
			if !o.asJSON {
				line := "  " + h.Consumer + "  " + h.State
				if h.State == ops.HandlingDeadLettered {
					line += fmt.Sprintf(" (dlq seq %d): %s", h.DLQSeq, h.Reason)
				}
				fmt.Fprintln(stdout, line)
			}
			if h.State == ops.HandlingDeadLettered && waitErr == nil {
				waitErr = fmt.Errorf("%s was dead-lettered by %s: see `levqor dlq show %d`", job, h.Consumer, h.DLQSeq)
			}
		}
	}
	if o.asJSON {
		if err := writeJSON(stdout, res); err != nil {
			return err
		}
	}
	return waitErr
}

// backfillRange is `schedule backfill`'s --since and --until.
type backfillRange struct{ since, until time.Time }

func scheduleBackfill(ctx context.Context, s *scheduler.Scheduler, st *store.Store, job string, r backfillRange, actor string, asJSON bool, stdout, stderr io.Writer) error {
	params := map[string]any{"job": job, "since": r.since.UTC(), "until": r.until.UTC()}
	res, err := s.Backfill(ctx, job, r.since, r.until)
	var refused *scheduler.BackfillError
	if errors.As(err, &refused) {
		return usageError("--%s: %s", refused.Field, refused.Message) // nothing happened
	}
	if err != nil {
		_ = auditCLI(ctx, st, stderr, actor, ops.ActionScheduleBackfill, params, map[string]any{"published": len(res.Published)}, store.AuditOutcomeFailed)
		return err
	}
	if err := auditCLI(ctx, st, stderr, actor, ops.ActionScheduleBackfill, params,
		map[string]any{"published": len(res.Published), "present": len(res.Present)}, store.AuditOutcomeOK); err != nil {
		return err
	}
	if asJSON {
		return writeJSON(stdout, res)
	}
	for _, p := range res.Published {
		fmt.Fprintf(stdout, "published %s  TICKS sequence %d\n", p.MsgID, p.Seq)
	}
	fmt.Fprintf(stdout, "%d slot(s) published, %d already in the TICKS stream\n", len(res.Published), len(res.Present))
	return nil
}

// redactNATSURL hides credentials (user and password, or a token) in a
// NATS URL, or a comma-separated list of them, so that it can be printed.
func redactNATSURL(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			scheme := ""
			if k := strings.Index(p, "://"); k >= 0 && k < at {
				scheme = p[:k+3]
			}
			parts[i] = scheme + "xxxxx@" + p[at+1:]
		}
	}
	return strings.Join(parts, ",")
}
