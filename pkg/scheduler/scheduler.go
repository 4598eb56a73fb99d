package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/keys"
)

// Defaults and limits.
const (
	// CatchUpWindowDefault is how far back a scheduler that was down
	// publishes the slots it missed; the configuration's default too.
	CatchUpWindowDefault = 6 * time.Hour
	// MinCatchUpWindow is the shortest catch-up window. A slot a few
	// seconds late (a GC pause, a slow publish) is never skipped.
	MinCatchUpWindow = time.Minute
	// MaxCatchUpDefault bounds how many missed slots of one job are
	// published at once even within the window (a per-minute job down for
	// six hours has 360): the newest are published, the older ones
	// skipped and counted.
	MaxCatchUpDefault = 1000
	// TimeoutDefault bounds one request to JetStream.
	TimeoutDefault = 5 * time.Second
	// retryMax caps the wait between attempts while JetStream is
	// unreachable.
	retryMax = 5 * time.Second
)

// Config configures a Scheduler.
type Config struct {
	// BusKey proves the ticks published (LEVQOR_BUS_KEY): routers with the
	// key refuse ticks without the proof.
	BusKey *keys.BusKey
	// Topology names the TICKS stream and its subjects; its TICKS dedupe
	// window bounds the job periods and the catch-up window. Required
	// (with defaults filled in).
	Topology bus.Topology
	// Jobs are the jobs to schedule, usually Override(Catalog(), …).
	// Disabled jobs are kept for Trigger and listing but publish nothing.
	Jobs []Job
	// CatchUpWindow is how far back missed slots are still published.
	// Values below MinCatchUpWindow, zero included, mean MinCatchUpWindow.
	CatchUpWindow time.Duration
	// MaxCatchUp bounds the missed slots published at once per job; zero
	// means MaxCatchUpDefault.
	MaxCatchUp int
	// Timeout bounds one publish or read; zero means TimeoutDefault.
	Timeout time.Duration
	// Logger receives a line per tick published; required.
	Logger logrus.FieldLogger
	// Now is the clock; nil means time.Now. Tests move it and call Nudge.
	Now func() time.Time
	// Paused, optional, reports whether an operator paused a job
	// (package control): its slots pass unpublished until it is resumed.
	Paused func(job string) bool
}

type entry struct {
	job     Job
	sched   *Schedule
	next    time.Time
	started bool // next has been set from the stream
}

// Scheduler publishes the ticks of its jobs. Run it in any number of
// replicas; each slot is stored once.
type Scheduler struct {
	cfg     Config
	window  time.Duration
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
	lastSlot  *prometheus.GaugeVec
}

// New validates the jobs and returns a scheduler; nothing runs until Run.
// It refuses a job whose slots lie further apart than the TICKS stream's
// dedupe window, and a catch-up window longer than it: in either case a
// slot published by two replicas, or by one catching up, could be stored
// twice.
func New(js jetstream.JetStream, cfg Config) (*Scheduler, error) {
	if cfg.Logger == nil {
		return nil, errors.New("scheduler: Logger is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxCatchUp <= 0 {
		cfg.MaxCatchUp = MaxCatchUpDefault
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = TimeoutDefault
	}
	dedupe := cfg.Topology.Streams[bus.Ticks].Duplicates
	if dedupe <= 0 {
		return nil, errors.New("scheduler: the topology has no TICKS dedupe window (fill it with Topology.WithDefaults)")
	}
	window := max(cfg.CatchUpWindow, MinCatchUpWindow)
	if window > dedupe {
		return nil, fmt.Errorf("LEVQOR_CATCHUP_WINDOW %s exceeds the TICKS stream's dedupe window %s: a slot caught up that late could be stored twice", window, dedupe)
	}
	s := &Scheduler{
		cfg:    cfg,
		window: window,
		js:     js,
		pub:    bus.NewPublisher(js, cfg.Topology, bus.WithBusKey(cfg.BusKey)),
		log:    cfg.Logger,
		wake:   make(chan struct{}, 1),
	}
	seen := map[string]bool{}
	now := cfg.Now()
	for _, j := range cfg.Jobs {
		if seen[j.Name] {
			return nil, fmt.Errorf("scheduler: job %s defined twice", j.Name)
		}
		seen[j.Name] = true
		sc, err := j.Schedule()
		if err != nil {
			return nil, err
		}
		if j.Disabled {
			continue
		}
		if sc.Next(now).IsZero() {
			return nil, fmt.Errorf("job %s: spec %q never fires", j.Name, j.Spec)
		}
		if p := sc.Period(now); p > dedupe {
			return nil, fmt.Errorf("job %s: spec %q leaves up to %s between slots, more than the TICKS stream's dedupe window %s", j.Name, j.Spec, p.Round(time.Minute), dedupe)
		}
		s.entries = append(s.entries, &entry{job: j, sched: sc})
	}
	s.m = metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levqor_scheduler_ticks_published_total",
			Help: "Scheduled ticks stored by JetStream from this replica, by job.",
		}, []string{"job"}),
		dupes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levqor_scheduler_ticks_duplicate_total",
			Help: "Ticks JetStream dropped as duplicates because another replica had published the slot, by job.",
		}, []string{"job"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levqor_scheduler_slots_skipped_total",
			Help: "Missed slots not published because they were older than the catch-up window or beyond the catch-up limit, by job.",
		}, []string{"job"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "levqor_scheduler_publish_lag_seconds",
			Help:    "Time from a slot to JetStream's acknowledgement of its tick, by job; hours after a catch-up.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 12), // 10ms to ~11.6h
		}, []string{"job"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levqor_scheduler_publish_errors_total",
			Help: "Failed tick publishes or reads of the last tick, by job (retried).",
		}, []string{"job"}),
		lastSlot: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "levqor_scheduler_last_slot_timestamp_seconds",
			Help: "Unix time of the newest slot this replica saw stored in TICKS, by job.",
		}, []string{"job"}),
	}
	return s, nil
}

// Register adds the scheduler's metrics to reg.
func (s *Scheduler) Register(reg prometheus.Registerer) {
	reg.MustRegister(s.m.published, s.m.dupes, s.m.skipped, s.m.lag, s.m.errors, s.m.lastSlot)
}

// Jobs returns every job of the scheduler, disabled ones included.
func (s *Scheduler) Jobs() []Job { return append([]Job(nil), s.cfg.Jobs...) }

// CatchUpWindow is the effective catch-up window.
func (s *Scheduler) CatchUpWindow() time.Duration { return s.window }

// LastTick is what the TICKS stream says about a job.
type LastTick struct {
	// Slot is the newest scheduled slot published, zero when the stream
	// holds none (never published, or older than the stream keeps).
	Slot time.Time `json:"slot,omitempty"`
	// Manual is the newest tick when an operator triggered it after the
	// last scheduled one.
	Manual *Tick `json:"manual,omitempty"`
	// Stored is when JetStream stored the newest tick.
	Stored time.Time `json:"stored,omitempty"`
}

// ErrUnreadableTick means the newest message on a job's tick subject is not
// a tick (someone published there by hand). Run then starts the job from
// its next slot, as if it had no history.
var ErrUnreadableTick = errors.New("not a tick")

// Last reads the newest tick of job from the TICKS stream.
func (s *Scheduler) Last(ctx context.Context, job string) (LastTick, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	stream, err := s.js.Stream(ctx, s.cfg.Topology.StreamName(bus.Ticks))
	if err != nil {
		return LastTick{}, fmt.Errorf("reading the last tick of %s: %w", job, err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, s.cfg.Topology.Subject(bus.Ticks, job))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return LastTick{}, nil
	}
	if err != nil {
		return LastTick{}, fmt.Errorf("reading the last tick of %s: %w", job, err)
	}
	t, err := ParseTick(msg.Data)
	if err != nil {
		return LastTick{}, fmt.Errorf("the last tick of %s (stream sequence %d): %w: %w", job, msg.Sequence, ErrUnreadableTick, err)
	}
	lt := LastTick{Slot: t.Slot, Stored: msg.Time.UTC()}
	if t.Manual || t.Backfill {
		lt.Manual, lt.Slot = &t, time.Time{}
		if t.LastScheduled != nil {
			lt.Slot = t.LastScheduled.UTC()
		}
	}
	return lt, nil
}

// Run publishes ticks until ctx ends, then returns nil. It first reads each
// job's last slot from the stream and catches up what was missed; while
// JetStream is unreachable it keeps retrying, and catches up within the
// window once it answers again.
func (s *Scheduler) Run(ctx context.Context) error {
	if len(s.entries) == 0 {
		s.log.Warn("no enabled jobs; scheduler idle")
		<-ctx.Done()
		return nil
	}
	retry := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(200*time.Millisecond),
		backoff.WithMaxInterval(retryMax),
		backoff.WithMaxElapsedTime(0),
	)
	for {
		now := s.cfg.Now()
		failed := false
		for _, e := range s.entries {
			if ctx.Err() != nil {
				return nil
			}
			if !s.fire(ctx, e, now) {
				failed = true
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		wait, ok := s.untilNext()
		if failed {
			if d := retry.NextBackOff(); !ok || d < wait {
				wait = d
			}
		} else {
			retry.Reset()
		}
		timer := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-s.wake:
			timer.Stop()
		case <-timer.C:
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

// untilNext is the time until the earliest next slot of the started jobs.
func (s *Scheduler) untilNext() (time.Duration, bool) {
	var earliest time.Time
	for _, e := range s.entries {
		if e.started && !e.next.IsZero() && (earliest.IsZero() || e.next.Before(earliest)) {
			earliest = e.next
		}
	}
	if earliest.IsZero() {
		return 0, false
	}
	return earliest.Sub(s.cfg.Now()), true
}

// fire publishes e's slots that are due at now, skipping those older than
// the catch-up window or beyond the catch-up limit. It reports false when
// JetStream did not answer; the unpublished slot is tried again next time.
func (s *Scheduler) fire(ctx context.Context, e *entry, now time.Time) bool {
	log := s.log.WithField("job", e.job.Name)
	if !e.started {
		last, err := s.Last(ctx, e.job.Name)
		if errors.Is(err, ErrUnreadableTick) {
			log.WithError(err).Error("cannot tell the last slot; starting with the next slot and catching up nothing")
			last, err = LastTick{}, nil
		}
		if err != nil {
			if ctx.Err() == nil {
				s.m.errors.WithLabelValues(e.job.Name).Inc()
				log.WithError(err).Warn("cannot read the last tick yet; retrying")
			}
			return false
		}
		e.started = true
		if last.Slot.IsZero() {
			// Nothing published before (or all of it expired): nothing to
			// catch up.
			e.next = e.sched.Next(now)
			log.WithField("next_slot", e.next.Format(time.RFC3339)).Info("no earlier tick in the stream; starting with the next slot")
		} else {
			e.next = e.sched.Next(last.Slot)
			s.m.lastSlot.WithLabelValues(e.job.Name).Set(float64(last.Slot.Unix()))
		}
	}
	if e.next.IsZero() || e.next.After(now) {
		return true
	}
	if s.cfg.Paused != nil && s.cfg.Paused(e.job.Name) {
		n := 0
		slot := e.next
		for ; !slot.IsZero() && !slot.After(now); slot = e.sched.Next(slot) {
			n++
		}
		e.next = slot
		s.m.skipped.WithLabelValues(e.job.Name).Add(float64(n))
		log.WithField("skipped", n).Warn("job paused by an operator: its slot is not published (`levqor schedule backfill` brings slots back)")
		return true
	}
	horizon := now.Add(-s.window)
	var due []time.Time
	skipped := 0
	var firstSkipped time.Time
	slot := e.next
	for ; !slot.IsZero() && !slot.After(now); slot = e.sched.Next(slot) {
		if slot.Before(horizon) {
			if skipped == 0 {
				firstSkipped = slot
			}
			skipped++
			continue
		}
		due = append(due, slot)
		if len(due) > s.cfg.MaxCatchUp {
			if skipped == 0 {
				firstSkipped = due[0]
			}
			due = due[1:]
			skipped++
		}
	}
	if skipped > 0 {
		s.m.skipped.WithLabelValues(e.job.Name).Add(float64(skipped))
		log.WithFields(logrus.Fields{
			"skipped":       skipped,
			"first_skipped": firstSkipped.Format(time.RFC3339),
			"window":        s.window.String(),
			"max_catch_up":  s.cfg.MaxCatchUp,
		}).Warn("missed slots older than the catch-up window or beyond its limit were skipped")
	}
	if len(due) > 1 {
		log.WithFields(logrus.Fields{
			"slots": len(due),
			"from":  due[0].Format(time.RFC3339),
			"to":    due[len(due)-1].Format(time.RFC3339),
		}).Info("catching up missed slots, oldest first")
	}
	for _, d := range due {
		if ctx.Err() != nil {
			e.next = d
			return true
		}
		if !s.publishSlot(ctx, e.job, d) {
			e.next = d
			return false
		}
	}
	e.next = slot
	return true
}

// publishSlot publishes the tick of one scheduled slot and reports whether
// JetStream has it (stored now, or earlier by another replica).
func (s *Scheduler) publishSlot(ctx context.Context, job Job, slot time.Time) bool {
	slot = slot.UTC()
	id := MsgID(job.Name, slot)
	log := s.log.WithFields(logrus.Fields{"job": job.Name, "slot": slot.Format(time.RFC3339), "msg_id": id})
	res, err := s.publish(ctx, Tick{Job: job.Name, Slot: slot}, id)
	if err != nil {
		if ctx.Err() == nil {
			s.m.errors.WithLabelValues(job.Name).Inc()
			log.WithError(err).Warn("tick publish failed; retrying")
		}
		return false
	}
	s.m.lastSlot.WithLabelValues(job.Name).Set(float64(slot.Unix()))
	if res.Duplicate {
		s.m.dupes.WithLabelValues(job.Name).Inc()
		log.WithField("stream_seq", res.Seq).Debug("tick already published by another replica")
		return true
	}
	lag := s.cfg.Now().Sub(slot)
	s.m.published.WithLabelValues(job.Name).Inc()
	s.m.lag.WithLabelValues(job.Name).Observe(max(lag, 0).Seconds())
	log.WithFields(logrus.Fields{"stream_seq": res.Seq, "lag_seconds": lag.Seconds()}).Info("tick published")
	return true
}

func (s *Scheduler) publish(ctx context.Context, t Tick, id string) (bus.PubResult, error) {
	data, err := json.Marshal(t)
	if err != nil {
		return bus.PubResult{}, fmt.Errorf("encoding tick: %w", err)
	}
	h := nats.Header{}
	h.Set(bus.HeaderCorrelationID, id)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	return s.pub.Publish(ctx, s.cfg.Topology.Subject(bus.Ticks, t.Job), id, h, data)
}

// Published describes a tick JetStream stored.
type Published struct {
	Tick  Tick   `json:"tick"`
	MsgID string `json:"msg_id"`
	// Seq is the tick's sequence in the TICKS stream.
	Seq uint64 `json:"stream_seq"`
}

// Trigger publishes an extra tick for job now, marked manual and with an id
// of its own, for an operator who wants a job to run at once. Its slot is
// the current second. Disabled jobs can be triggered too.
func (s *Scheduler) Trigger(ctx context.Context, job string) (Published, error) {
	if _, ok := Lookup(s.cfg.Jobs, job); !ok {
		return Published{}, fmt.Errorf("no job named %q (jobs: %s)", job, joinNames(s.cfg.Jobs))
	}
	last, err := s.Last(ctx, job)
	if err != nil {
		return Published{}, err
	}
	t := Tick{Job: job, Slot: s.cfg.Now().UTC().Truncate(time.Second), Manual: true}
	if !last.Slot.IsZero() {
		t.LastScheduled = &last.Slot
	}
	id := ManualMsgID(job, t.Slot)
	res, err := s.publish(ctx, t, id)
	if err != nil {
		return Published{}, fmt.Errorf("publishing a manual tick for %s: %w", job, err)
	}
	if res.Duplicate {
		return Published{}, fmt.Errorf("publishing a manual tick for %s: JetStream dropped %s as a duplicate", job, id)
	}
	s.log.WithFields(logrus.Fields{"job": job, "slot": t.Slot.Format(time.RFC3339), "msg_id": id, "stream_seq": res.Seq}).Info("manual tick published")
	return Published{Tick: t, MsgID: id, Seq: res.Seq}, nil
}

func joinNames(jobs []Job) string { return strings.Join(names(jobs), ", ") }
