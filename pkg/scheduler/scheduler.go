// Package scheduler publishes ticks for periodic jobs. Workers do the work;
// the scheduler only says "slot S of job J has come".
//
// Every tick's Nats-Msg-Id is "<job>@<slot time in UTC>", so any number of
// scheduler replicas can run: JetStream stores each slot once and drops the
// rest as duplicates. After downtime, slots missed within the catch-up
// window are published oldest first, each with its own slot time; older ones
// are counted and skipped rather than flooding the workers.
package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
	_ "time/tzdata" // jobs name time zones; the runtime image has no zoneinfo

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"
	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
)

// Job is one periodic job.
type Job struct {
	// Name is also the tick's subject under the TICKS prefix, e.g.
	// "housekeeping.prune" → levqor.tick.housekeeping.prune.
	Name string
	// Spec is a cron expression with an optional leading seconds field, or
	// a descriptor such as @hourly.
	Spec string
	// TimeZone the spec is read in (IANA name); empty means UTC.
	TimeZone string
	// Description says what the job does, for `levqor schedule list`.
	Description string
	// Disabled jobs publish nothing.
	Disabled bool
}

// Tick is the payload of a tick message. Handlers act on Slot, not on the
// time they happen to run.
type Tick struct {
	Job    string    `json:"job"`
	Slot   time.Time `json:"slot"`
	Manual bool      `json:"manual,omitempty"`
}

// MsgID is the dedupe id of a job's slot.
func MsgID(job string, slot time.Time) string {
	return job + "@" + slot.UTC().Format(time.RFC3339)
}

// ParseTick decodes a tick payload.
func ParseTick(data []byte) (Tick, error) {
	var t Tick
	if err := json.Unmarshal(data, &t); err != nil {
		return t, fmt.Errorf("tick payload: %w", err)
	}
	if t.Job == "" || t.Slot.IsZero() {
		return t, errors.New("tick payload: job and slot are required")
	}
	return t, nil
}

var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Schedule parses a job's spec in its time zone.
func (j Job) Schedule() (cron.Schedule, error) {
	loc := time.UTC
	if j.TimeZone != "" {
		var err error
		if loc, err = time.LoadLocation(j.TimeZone); err != nil {
			return nil, fmt.Errorf("job %s: time zone %q: %w", j.Name, j.TimeZone, err)
		}
	}
	s, err := parser.Parse(j.Spec)
	if err != nil {
		return nil, fmt.Errorf("job %s: spec %q: %w", j.Name, j.Spec, err)
	}
	if ss, ok := s.(*cron.SpecSchedule); ok {
		ss.Location = loc
	}
	return s, nil
}

// Defaults.
const (
	CatchUpWindowDefault = 6 * time.Hour
	// maxCatchUpPerJob bounds how many missed slots one start publishes for
	// a job even within the window (a per-second job down for an hour).
	maxCatchUpPerJob = 1000
)

// Config configures a Scheduler.
type Config struct {
	Topology bus.Topology
	Jobs     []Job
	// CatchUpWindow is how far back missed slots are still published.
	CatchUpWindow time.Duration
	Logger        logrus.FieldLogger
	// Now is the clock; nil means time.Now. Tests move it.
	Now func() time.Time
}

type entry struct {
	job   Job
	sched cron.Schedule
	next  time.Time
}

// Scheduler publishes ticks.
type Scheduler struct {
	cfg     Config
	js      jetstream.JetStream
	pub     *bus.Publisher
	log     logrus.FieldLogger
	entries []*entry
	m       metrics
	wake    chan struct{}
}

type metrics struct {
	published *prometheus.CounterVec
	dupes     *prometheus.CounterVec
	skipped   *prometheus.CounterVec
	lag       *prometheus.HistogramVec
	errors    *prometheus.CounterVec
}

// New validates the jobs and returns a scheduler.
func New(js jetstream.JetStream, cfg Config) (*Scheduler, error) {
	if cfg.CatchUpWindow <= 0 {
		cfg.CatchUpWindow = CatchUpWindowDefault
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		return nil, errors.New("scheduler: Logger is required")
	}
	s := &Scheduler{cfg: cfg, js: js, pub: bus.NewPublisher(js, cfg.Topology), log: cfg.Logger, wake: make(chan struct{}, 1)}
	seen := map[string]bool{}
	for _, j := range cfg.Jobs {
		if seen[j.Name] {
			return nil, fmt.Errorf("scheduler: job %s defined twice", j.Name)
		}
		seen[j.Name] = true
		sc, err := j.Schedule()
		if err != nil {
			return nil, err
		}
		if !j.Disabled {
			s.entries = append(s.entries, &entry{job: j, sched: sc})
		}
	}
	s.m = metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "levqor_scheduler_ticks_published_total", Help: "Ticks stored by JetStream, by job."}, []string{"job"}),
		dupes:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "levqor_scheduler_ticks_duplicate_total", Help: "Ticks another replica had already published, by job."}, []string{"job"}),
		skipped:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "levqor_scheduler_slots_skipped_total", Help: "Missed slots older than the catch-up window, by job."}, []string{"job"}),
		lag:       prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "levqor_scheduler_publish_lag_seconds", Help: "Delay between a slot's time and its publish.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 12)}, []string{"job"}),
		errors:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "levqor_scheduler_publish_errors_total", Help: "Failed tick publishes, by job (retried)."}, []string{"job"}),
	}
	return s, nil
}

// Register adds the scheduler's metrics to reg.
func (s *Scheduler) Register(reg prometheus.Registerer) {
	reg.MustRegister(s.m.published, s.m.dupes, s.m.skipped, s.m.lag, s.m.errors)
}

// LastSlot returns the slot of the job's newest tick in the TICKS stream,
// or the zero time when it has none.
func (s *Scheduler) LastSlot(ctx context.Context, job string) (time.Time, error) {
	stream, err := s.js.Stream(ctx, s.cfg.Topology.StreamName(bus.Ticks))
	if err != nil {
		return time.Time{}, err
	}
	msg, err := stream.GetLastMsgForSubject(ctx, s.cfg.Topology.Subject(bus.Ticks, job))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	t, err := ParseTick(msg.Data)
	if err != nil {
		return time.Time{}, err
	}
	return t.Slot, nil
}

// Run publishes ticks until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	if len(s.entries) == 0 {
		s.log.Warn("no enabled jobs; scheduler idle")
		<-ctx.Done()
		return nil
	}
	for _, e := range s.entries {
		s.catchUp(ctx, e)
	}
	for {
		sort.Slice(s.entries, func(i, j int) bool { return s.entries[i].next.Before(s.entries[j].next) })
		first := s.entries[0]
		wait := first.next.Sub(s.cfg.Now())
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-s.wake:
				t.Stop()
				continue
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		now := s.cfg.Now()
		for _, e := range s.entries {
			for !e.next.After(now) && ctx.Err() == nil {
				if s.publishSlot(ctx, e.job, e.next, false) {
					e.next = e.sched.Next(e.next)
				} else {
					sleepCtx(ctx, time.Second)
					break
				}
			}
		}
	}
}

// Nudge makes Run re-read the clock at once (tests that move the clock).
func (s *Scheduler) Nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// catchUp publishes the slots missed since the job's last tick that are
// within the window, and sets the entry's next slot.
func (s *Scheduler) catchUp(ctx context.Context, e *entry) {
	now := s.cfg.Now()
	var last time.Time
	for ctx.Err() == nil {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		last, err = s.LastSlot(lctx, e.job.Name)
		cancel()
		if err == nil {
			break
		}
		s.log.WithError(err).WithField("job", e.job.Name).Warn("cannot read last tick; retrying")
		sleepCtx(ctx, time.Second)
	}
	if last.IsZero() {
		// First run ever: start from now, nothing to catch up.
		e.next = e.sched.Next(now)
		return
	}
	horizon := now.Add(-s.cfg.CatchUpWindow)
	skipped, published := 0, 0
	slot := e.sched.Next(last)
	for !slot.After(now) && ctx.Err() == nil {
		switch {
		case slot.Before(horizon):
			skipped++
		case published >= maxCatchUpPerJob:
			skipped++
		default:
			if !s.publishSlot(ctx, e.job, slot, false) {
				e.next = slot // retried by Run
				return
			}
			published++
		}
		slot = e.sched.Next(slot)
	}
	if skipped > 0 {
		s.m.skipped.WithLabelValues(e.job.Name).Add(float64(skipped))
		s.log.WithFields(logrus.Fields{"job": e.job.Name, "skipped": skipped, "window": s.cfg.CatchUpWindow.String()}).
			Warn("missed slots older than the catch-up window were skipped")
	}
	if published > 0 {
		s.log.WithFields(logrus.Fields{"job": e.job.Name, "published": published}).Info("caught up missed slots")
	}
	e.next = slot
}

// publishSlot publishes one tick and reports whether JetStream has it.
func (s *Scheduler) publishSlot(ctx context.Context, job Job, slot time.Time, manual bool) bool {
	slot = slot.UTC()
	data, _ := json.Marshal(Tick{Job: job.Name, Slot: slot, Manual: manual})
	id := MsgID(job.Name, slot)
	if manual {
		id = "manual:" + id + ":" + s.cfg.Now().UTC().Format(time.RFC3339Nano)
	}
	h := nats.Header{}
	h.Set(bus.HeaderCorrelationID, id)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := s.pub.Publish(pctx, s.cfg.Topology.Subject(bus.Ticks, job.Name), id, h, data)
	log := s.log.WithFields(logrus.Fields{"job": job.Name, "slot": slot.Format(time.RFC3339), "msg_id": id})
	if err != nil {
		s.m.errors.WithLabelValues(job.Name).Inc()
		log.WithError(err).Warn("tick publish failed; retrying")
		return false
	}
	if res.Duplicate {
		s.m.dupes.WithLabelValues(job.Name).Inc()
		log.Debug("tick already published by another replica")
		return true
	}
	s.m.published.WithLabelValues(job.Name).Inc()
	s.m.lag.WithLabelValues(job.Name).Observe(s.cfg.Now().Sub(slot).Seconds())
	log.WithField("stream_seq", res.Seq).Info("tick published")
	return true
}

// Trigger publishes an extra tick for job now, with a distinct id and
// marked manual, for an operator who wants a job to run at once.
func (s *Scheduler) Trigger(ctx context.Context, job string) error {
	for _, j := range s.cfg.Jobs {
		if j.Name == job {
			if !s.publishSlot(ctx, j, s.cfg.Now().Truncate(time.Second), true) {
				return fmt.Errorf("publishing a manual tick for %s failed", job)
			}
			return nil
		}
	}
	return fmt.Errorf("no job named %q", job)
}
