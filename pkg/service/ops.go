package service

import (
	"github.com/levqor/levqor/pkg/ops"
)

// Ops returns the operator tools (package ops) over the process's
// connections, judging health by th and listing Stripe events with the
// configured STRIPE_API_KEY and STRIPE_API_BASE. Its window replays can run
// the handlers of every worker in Workers, as the workers themselves
// would; nothing is started.
func (e *Env) Ops(th ops.Thresholds) (*ops.Ops, error) {
	r, err := e.Router([]string{"all"})
	if err != nil {
		return nil, err
	}
	return ops.New(ops.Config{
		JS:       e.JS,
		Topology: e.Cfg.Topology,
		Store:    e.Store,
		Log:      e.Log.WithField("component", "ops"),
		Routes:   r.Routes(),
		Settings: ops.Settings{
			Thresholds: th,
			Stripe:     ops.StripeAPI{BaseURL: e.Cfg.StripeAPIBase, SecretKey: e.Cfg.StripeAPIKey},
		},
	})
}
