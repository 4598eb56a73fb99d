package service

import (
	"time"

	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/scheduler"
)

// Ops returns the operator tools (package ops) over the process's
// connections, judging health by th and listing Stripe events with the
// configured STRIPE_API_KEY and STRIPE_API_BASE. It builds no worker: a
// window replay publishes to the workers' subjects.
func (e *Env) Ops(th ops.Thresholds) (*ops.Ops, error) {
	jobs, _, err := scheduler.Override(scheduler.Catalog(), e.Cfg.Schedule)
	if err != nil {
		return nil, err
	}
	every, _ := scheduler.MostFrequent(jobs, time.Now())
	bk, err := e.BusKey()
	if err != nil {
		return nil, err
	}
	js, err := e.OperatorJS()
	if err != nil {
		return nil, err
	}
	return ops.New(ops.Config{
		JS:       js,
		Topology: e.Cfg.Topology,
		Store:    e.Store,
		Log:      e.Log.WithField("component", "ops"),
		Settings: ops.Settings{
			Thresholds: th,
			Stripe:     ops.StripeAPI{BaseURL: e.Cfg.StripeAPIBase, SecretKey: e.Cfg.StripeAPIKey},
			TickEvery:  every,
			BusKey:     bk,
			Jobs:       jobs,
		},
	})
}
