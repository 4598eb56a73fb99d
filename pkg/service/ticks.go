package service

import (
	"context"
	"fmt"
	"time"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/telemetry"
)

// TickSilenceFactor is how many periods of the most frequent job may pass
// without a tick before a workers process reports itself degraded.
const TickSilenceFactor = 3

// tickWatch judges the scheduler by when the TICKS stream last stored a
// tick, so that a stopped scheduler shows on every worker's /readyz. The
// stream, not this process's deliveries, is what counts: replicas share
// their consumers, and a process may consume only hourly jobs.
type tickWatch struct {
	every time.Duration
	// lastTick reads when the stream stored its last message; zero when
	// it holds none.
	lastTick func(ctx context.Context) (time.Time, error)
	now      func() time.Time
	started  time.Time
}

// check degrades when no tick was stored for TickSilenceFactor periods
// (counted from the process's start while the stream is empty).
func (w *tickWatch) check() telemetry.Check {
	return telemetry.Check{Name: "ticks", Degrades: true, Fn: func(ctx context.Context) error {
		last, err := w.lastTick(ctx)
		if err != nil {
			return fmt.Errorf("reading the TICKS stream: %w", err)
		}
		if last.IsZero() {
			last = w.started
		}
		silent := w.now().Sub(last)
		if limit := TickSilenceFactor * w.every; silent > limit {
			return fmt.Errorf("no tick for %s, while the most frequent job runs every %s: is the scheduler running?",
				silent.Round(time.Second), w.every)
		}
		return nil
	}}
}

// watchTicks adds the tick check to the process's when r consumes ticks
// and some job is enabled.
func (e *Env) watchTicks(r *bus.Router) error {
	runsTicks := false
	for _, rt := range r.Routes() {
		runsTicks = runsTicks || rt.Consumer.Kind == bus.Ticks
	}
	if !runsTicks {
		return nil
	}
	jobs, _, err := scheduler.Override(scheduler.Catalog(), e.Cfg.Schedule)
	if err != nil {
		return err
	}
	every, ok := scheduler.MostFrequent(jobs, time.Now())
	if !ok {
		return nil
	}
	name := e.Cfg.Topology.StreamName(bus.Ticks)
	e.ticks = &tickWatch{every: every, now: time.Now, started: time.Now(), lastTick: func(ctx context.Context) (time.Time, error) {
		s, err := e.JS.Stream(ctx, name)
		if err != nil {
			return time.Time{}, err
		}
		st := s.CachedInfo().State
		if st.Msgs == 0 {
			return time.Time{}, nil
		}
		return st.LastTime, nil
	}}
	return nil
}
