package scheduler_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/bus/bustest"
	"github.com/levqor/levqor/pkg/scheduler"
)

// clock is a clock the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// replica is one running scheduler with its own NATS connection, metrics
// and logs.
type replica struct {
	s    *scheduler.Scheduler
	reg  *prometheus.Registry
	logs *test.Hook
	stop func()
}

func startReplica(t *testing.T, env *bustest.Env, cfg scheduler.Config) *replica {
	t.Helper()
	js, err := jetstream.New(bustest.Connect(t, env.Server.ClientURL()))
	require.NoError(t, err)
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	cfg.Topology = env.Topo
	cfg.Logger = log
	s, err := scheduler.New(js, cfg)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	s.Register(reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	r := &replica{s: s, reg: reg, logs: hook}
	r.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Error("scheduler did not stop within 10s")
			}
		})
	}
	t.Cleanup(r.stop)
	return r
}

// metric returns the value of a counter or gauge, or the sample count of a
// histogram, for job; 0 when absent.
func (r *replica) metric(t *testing.T, name, job string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabel(m.GetLabel(), "job", job) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func (r *replica) histogramSum(t *testing.T, name, job string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == name && hasLabel(m.GetLabel(), "job", job) {
				return m.Histogram.GetSampleSum()
			}
		}
	}
	return 0
}

func hasLabel[L interface {
	GetName() string
	GetValue() string
}](labels []L, k, v string) bool {
	for _, l := range labels {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

// stored is one tick as JetStream stored it.
type stored struct {
	id   string
	tick scheduler.Tick
}

// ticks returns the ticks of job in the TICKS stream, in stream order.
func ticks(t *testing.T, env *bustest.Env, job string) []stored {
	t.Helper()
	var out []stored
	for _, m := range env.Messages(t, bus.Ticks) {
		if m.Subject != env.Topo.Subject(bus.Ticks, job) {
			continue
		}
		tk, err := scheduler.ParseTick(m.Data)
		if m.Header.Get(bus.HeaderMsgID) == "by-hand" {
			continue // the garbage TestUnreadableLastTickDoesNotStopTheJob put there
		}
		require.NoError(t, err)
		out = append(out, stored{id: m.Header.Get(bus.HeaderMsgID), tick: tk})
	}
	return out
}

func slots(ts []stored) []string {
	out := make([]string, len(ts))
	for i, s := range ts {
		out[i] = s.tick.Slot.Format("15:04")
	}
	return out
}

// minutes lists "HH:MM" from from to to inclusive.
func minutes(from, to string) []string {
	a, _ := time.Parse("15:04", from)
	b, _ := time.Parse("15:04", to)
	var out []string
	for t := a; !t.After(b); t = t.Add(time.Minute) {
		out = append(out, t.Format("15:04"))
	}
	return out
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// seed publishes a scheduled tick as an earlier scheduler run would have.
func seed(t *testing.T, env *bustest.Env, job string, slot time.Time) {
	t.Helper()
	b, err := json.Marshal(scheduler.Tick{Job: job, Slot: slot})
	require.NoError(t, err)
	_, err = bus.NewPublisher(env.JS, env.Topo).Publish(context.Background(), env.Topo.Subject(bus.Ticks, job), scheduler.MsgID(job, slot), nil, b)
	require.NoError(t, err)
}

func waitSlots(t *testing.T, env *bustest.Env, job string, want []string) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, want, slots(ticks(t, env, job)))
	}, 10*time.Second, 20*time.Millisecond)
}

func TestThreeReplicasPublishEachSlotOnce(t *testing.T) {
	t.Parallel()
	env := bustest.Start(t)
	job := scheduler.Job{Name: "test.every_second", Spec: "* * * * * *"}
	var rs []*replica
	for i := 0; i < 3; i++ {
		rs = append(rs, startReplica(t, env, scheduler.Config{Jobs: []scheduler.Job{job}, CatchUpWindow: time.Hour}))
	}
	// Stop half-way between two slots: a replica stopped while its
	// publish is in flight sees no ack and does not count a tick the
	// stream stored.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(4*time.Second + 500*time.Millisecond)))
	for _, r := range rs {
		r.stop()
	}

	got := ticks(t, env, job.Name)
	require.GreaterOrEqual(t, len(got), 3, "ticks every second for four seconds")
	for i, s := range got {
		require.Equal(t, scheduler.MsgID(job.Name, s.tick.Slot), s.id)
		if i > 0 {
			require.Equal(t, time.Second, s.tick.Slot.Sub(got[i-1].tick.Slot),
				"each slot stored exactly once, none missing: %v", slots(got))
		}
	}
	var published, dupes float64
	for _, r := range rs {
		published += r.metric(t, "levqor_scheduler_ticks_published_total", job.Name)
		dupes += r.metric(t, "levqor_scheduler_ticks_duplicate_total", job.Name)
	}
	require.EqualValues(t, len(got), published, "the replicas' published counters add up to what the stream holds")
	require.Greater(t, dupes, float64(len(got)), "the other replicas' copies were dropped as duplicates")
	var perTickLines int
	for _, r := range rs {
		for _, e := range r.logs.AllEntries() {
			if e.Message == "tick published" {
				perTickLines++
				require.Equal(t, job.Name, e.Data["job"])
				require.NotEmpty(t, e.Data["slot"])
			}
		}
	}
	require.Equal(t, len(got), perTickLines, "one log line per tick, naming job and slot")
}

func TestCatchUp(t *testing.T) {
	t.Parallel()
	env := bustest.Start(t)
	const job = "test.every_minute"
	jobs := []scheduler.Job{{Name: job, Spec: "0 * * * * *"}}
	clk := newClock(utc("2026-06-01T10:00:30Z"))
	seed(t, env, job, utc("2026-06-01T10:00:00Z"))

	// Running normally.
	r1 := startReplica(t, env, scheduler.Config{Jobs: jobs, CatchUpWindow: 10 * time.Minute, Now: clk.Now})
	clk.Set(utc("2026-06-01T10:03:10Z"))
	r1.s.Nudge()
	waitSlots(t, env, job, minutes("10:00", "10:03"))
	r1.stop()

	// Down for 57 minutes: only the slots within the last 10 minutes are
	// published, oldest first; 10:04 to 10:50 are skipped and counted.
	clk.Set(utc("2026-06-01T11:00:05Z"))
	r2 := startReplica(t, env, scheduler.Config{Jobs: jobs, CatchUpWindow: 10 * time.Minute, Now: clk.Now})
	before := minutes("10:00", "10:03")
	waitSlots(t, env, job, concat(before, minutes("10:51", "11:00")))
	require.EqualValues(t, 47, r2.metric(t, "levqor_scheduler_slots_skipped_total", job))
	require.EqualValues(t, 10, r2.metric(t, "levqor_scheduler_ticks_published_total", job))
	require.EqualValues(t, 10, r2.metric(t, "levqor_scheduler_publish_lag_seconds", job))
	// Lags 545s (10:51) down to 5s (11:00).
	require.InDelta(t, 2750, r2.histogramSum(t, "levqor_scheduler_publish_lag_seconds", job), 1, "lag is measured from each slot")
	for _, s := range ticks(t, env, job) {
		require.Equal(t, scheduler.MsgID(job, s.tick.Slot), s.id, "each caught-up tick carries its own slot")
		require.False(t, s.tick.Manual)
	}
	require.EqualValues(t, utc("2026-06-01T11:00:00Z").Unix(), r2.metric(t, "levqor_scheduler_last_slot_timestamp_seconds", job))

	// The host sleeps for three hours with the scheduler running: the
	// same window applies.
	clk.Set(utc("2026-06-01T14:00:05Z"))
	r2.s.Nudge()
	before = concat(before, minutes("10:51", "11:00"))
	waitSlots(t, env, job, concat(before, minutes("13:51", "14:00")))
	require.EqualValues(t, 47+170, r2.metric(t, "levqor_scheduler_slots_skipped_total", job))
	r2.stop()

	// A replica with a limit of three publishes the newest three.
	clk.Set(utc("2026-06-01T14:10:05Z"))
	r3 := startReplica(t, env, scheduler.Config{Jobs: jobs, CatchUpWindow: 10 * time.Minute, MaxCatchUp: 3, Now: clk.Now})
	before = concat(before, minutes("13:51", "14:00"))
	waitSlots(t, env, job, concat(before, minutes("14:08", "14:10")))
	require.EqualValues(t, 7, r3.metric(t, "levqor_scheduler_slots_skipped_total", job))
	var warned bool
	for _, e := range r3.logs.AllEntries() {
		if e.Level == logrus.WarnLevel && strings.Contains(e.Message, "skipped") {
			warned = true
			require.Equal(t, 7, e.Data["skipped"])
		}
	}
	require.True(t, warned, "skipping is logged")
}

func TestFirstRunPublishesNothingFromThePast(t *testing.T) {
	t.Parallel()
	env := bustest.Start(t)
	const job = "test.fresh"
	clk := newClock(utc("2026-06-01T10:00:30Z"))
	r := startReplica(t, env, scheduler.Config{Jobs: []scheduler.Job{{Name: job, Spec: "0 * * * * *"}}, CatchUpWindow: time.Hour, Now: clk.Now})
	require.Eventually(t, func() bool {
		for _, e := range r.logs.AllEntries() {
			if strings.Contains(e.Message, "no earlier tick") {
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond)
	require.Empty(t, ticks(t, env, job), "a new job has no history to catch up")
	clk.Set(utc("2026-06-01T10:01:00Z"))
	r.s.Nudge()
	waitSlots(t, env, job, []string{"10:01"})
}

func TestSchedulerRidesOutANATSOutage(t *testing.T) {
	t.Parallel()
	env := bustest.Start(t)
	const job = "test.outage"
	seed(t, env, job, utc("2026-06-01T10:00:00Z"))
	clk := newClock(utc("2026-06-01T10:00:30Z"))
	r := startReplica(t, env, scheduler.Config{Jobs: []scheduler.Job{{Name: job, Spec: "0 * * * * *"}}, CatchUpWindow: 10 * time.Minute, Timeout: 300 * time.Millisecond, Now: clk.Now})
	require.Eventually(t, func() bool {
		return r.metric(t, "levqor_scheduler_last_slot_timestamp_seconds", job) > 0
	}, 5*time.Second, 10*time.Millisecond, "started from the seeded slot")

	env.Server.Stop()
	clk.Set(utc("2026-06-01T10:02:05Z"))
	r.s.Nudge()
	require.Eventually(t, func() bool {
		return r.metric(t, "levqor_scheduler_publish_errors_total", job) >= 2
	}, 10*time.Second, 20*time.Millisecond, "publishing fails and is retried while NATS is down")

	require.NoError(t, env.Server.Restart())
	waitSlots(t, env, job, minutes("10:00", "10:02"))
	require.Zero(t, r.metric(t, "levqor_scheduler_slots_skipped_total", job), "slots missed within the window are not lost")
}

func TestTrigger(t *testing.T) {
	t.Parallel()
	env := bustest.Start(t)
	const job = "test.triggered"
	jobs := []scheduler.Job{{Name: job, Spec: "0 * * * * *"}, {Name: "test.off", Spec: "@daily", Disabled: true}}
	seed(t, env, job, utc("2026-06-01T10:00:00Z"))
	clk := newClock(utc("2026-06-01T10:00:40.5Z"))
	log, _ := test.NewNullLogger()
	js, err := jetstream.New(bustest.Connect(t, env.Server.ClientURL()))
	require.NoError(t, err)
	s, err := scheduler.New(js, scheduler.Config{Topology: env.Topo, Jobs: jobs, Logger: log, Now: clk.Now})
	require.NoError(t, err)
	ctx := context.Background()

	a, err := s.Trigger(ctx, job)
	require.NoError(t, err)
	b, err := s.Trigger(ctx, job)
	require.NoError(t, err)
	require.NotEqual(t, a.MsgID, b.MsgID, "every trigger is a tick of its own")
	require.True(t, a.Tick.Manual)
	require.Equal(t, utc("2026-06-01T10:00:40Z"), a.Tick.Slot)
	require.True(t, strings.HasPrefix(a.MsgID, job+"@2026-06-01T10:00:40Z/manual-"), a.MsgID)
	got := ticks(t, env, job)
	require.Len(t, got, 3)
	require.True(t, got[2].tick.Manual, "recorded as manual in the payload")

	last, err := s.Last(ctx, job)
	require.NoError(t, err)
	require.Equal(t, utc("2026-06-01T10:00:00Z"), last.Slot, "the last scheduled slot, not the manual one")
	require.NotNil(t, last.Manual)
	require.True(t, last.Manual.Manual)
	require.Equal(t, b.Tick.Slot, last.Manual.Slot)
	require.Equal(t, utc("2026-06-01T10:00:00Z"), *last.Manual.LastScheduled)

	_, err = s.Trigger(ctx, "test.off")
	require.NoError(t, err, "a disabled job can still be run by hand")
	_, err = s.Trigger(ctx, "test.nope")
	require.ErrorContains(t, err, "test.triggered", "the error lists the jobs")

	// A scheduler starting after the manual ticks catches up from the last
	// scheduled slot: 10:01 to 10:03 are not lost to the manual tick.
	clk.Set(utc("2026-06-01T10:03:10Z"))
	startReplica(t, env, scheduler.Config{Jobs: jobs, CatchUpWindow: time.Hour, Now: clk.Now})
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var sched []string
		for _, s := range ticks(t, env, job) {
			if !s.tick.Manual {
				sched = append(sched, s.tick.Slot.Format("15:04"))
			}
		}
		assert.Equal(c, minutes("10:00", "10:03"), sched)
	}, 10*time.Second, 20*time.Millisecond)
}

func TestNewRefusesWhatDedupeCannotCover(t *testing.T) {
	t.Parallel()
	log, _ := test.NewNullLogger()
	topo := bus.Topology{}.WithDefaults()
	for name, tc := range map[string]struct {
		cfg  scheduler.Config
		want string
	}{
		"WeeklyJob":       {scheduler.Config{Jobs: []scheduler.Job{{Name: "a.weekly", Spec: "0 0 3 * * 1"}}}, "dedupe window"},
		"MonthlyJob":      {scheduler.Config{Jobs: []scheduler.Job{{Name: "a.monthly", Spec: "@monthly"}}}, "a.monthly"},
		"NeverFires":      {scheduler.Config{Jobs: []scheduler.Job{{Name: "a.never", Spec: "0 0 0 30 2 *"}}}, "never fires"},
		"LongCatchUp":     {scheduler.Config{CatchUpWindow: 72 * time.Hour}, "LEVQOR_CATCHUP_WINDOW"},
		"DuplicateJob":    {scheduler.Config{Jobs: []scheduler.Job{{Name: "a.b", Spec: "@daily"}, {Name: "a.b", Spec: "@hourly"}}}, "twice"},
		"BadSpecDisabled": {scheduler.Config{Jobs: []scheduler.Job{{Name: "a.b", Spec: "nonsense", Disabled: true}}}, "a.b"},
	} {
		t.Run(name, func(t *testing.T) {
			tc.cfg.Topology, tc.cfg.Logger = topo, log
			_, err := scheduler.New(nil, tc.cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err := scheduler.New(nil, scheduler.Config{Topology: topo, Logger: log, Jobs: []scheduler.Job{{Name: "a.weekly", Spec: "0 0 3 * * 1", Disabled: true}}})
	require.NoError(t, err, "a disabled job publishes nothing, so its period does not matter")
}

func TestUnreadableLastTickDoesNotStopTheJob(t *testing.T) {
	t.Parallel()
	env := bustest.Start(t)
	const job = "test.garbled"
	_, err := bus.NewPublisher(env.JS, env.Topo).Publish(context.Background(), env.Topo.Subject(bus.Ticks, job), "by-hand", nil, []byte("hello"))
	require.NoError(t, err)
	clk := newClock(utc("2026-06-01T10:00:30Z"))
	r := startReplica(t, env, scheduler.Config{Jobs: []scheduler.Job{{Name: job, Spec: "0 * * * * *"}}, Now: clk.Now})
	require.Eventually(t, func() bool {
		for _, e := range r.logs.AllEntries() {
			if e.Level == logrus.ErrorLevel && strings.Contains(e.Message, "cannot tell the last slot") {
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond, "the operator is told")
	clk.Set(utc("2026-06-01T10:01:00Z"))
	r.s.Nudge()
	waitSlots(t, env, job, []string{"10:01"})
}
