package service

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/telemetry"
)

// TickSilenceFactor is how many periods of the most frequent job may pass
// without a tick before a workers process reports itself degraded.
const TickSilenceFactor = 3

// tickWatch remembers when a tick last reached one of the process's tick
// consumers, so that a stopped scheduler shows on every worker's /readyz.
type tickWatch struct {
	every time.Duration
	last  atomic.Int64 // unix nanoseconds
	now   func() time.Time
}

func newTickWatch(every time.Duration, now func() time.Time) *tickWatch {
	w := &tickWatch{every: every, now: now}
	w.last.Store(now().UnixNano()) // a process just started has seen nothing yet, and is not late
	return w
}

// middleware notes every delivery from the TICKS stream.
func (w *tickWatch) middleware(ticks string) bus.Middleware {
	return func(next bus.Handler) bus.Handler {
		return func(ctx context.Context, m *bus.Message) error {
			if m.Stream == ticks {
				w.last.Store(w.now().UnixNano())
			}
			return next(ctx, m)
		}
	}
}

// check degrades when no tick came for TickSilenceFactor periods.
func (w *tickWatch) check() telemetry.Check {
	return telemetry.Check{Name: "ticks", Degrades: true, Fn: func(context.Context) error {
		silent := w.now().Sub(time.Unix(0, w.last.Load()))
		if limit := TickSilenceFactor * w.every; silent > limit {
			return fmt.Errorf("no tick for %s, while the most frequent job runs every %s: is the scheduler running?",
				silent.Round(time.Second), w.every)
		}
		return nil
	}}
}

// watchTicks makes r note the ticks it consumes, when it consumes any and
// some job is enabled, and adds the check to the process's.
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
	e.ticks = newTickWatch(every, time.Now)
	r.Use(e.ticks.middleware(e.Cfg.Topology.StreamName(bus.Ticks)))
	return nil
}
