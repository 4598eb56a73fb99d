package scheduler_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/service"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/telemetry"
)

// matches reports whether NATS subject filter f matches subject s.
func matches(f, s string) bool {
	ft, st := strings.Split(f, "."), strings.Split(s, ".")
	for i, tok := range ft {
		if tok == ">" {
			return len(st) > i
		}
		if i >= len(st) || (tok != "*" && tok != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}

func TestCatalog(t *testing.T) {
	t.Parallel()
	log := logrus.New()
	log.Out = io.Discard
	catalog := scheduler.Catalog()
	require.NotEmpty(t, catalog)

	t.Run("EveryJobIsValidUnderTheDefaultTopology", func(t *testing.T) {
		s, err := scheduler.New(nil, scheduler.Config{Topology: bus.Topology{}.WithDefaults(), Jobs: catalog, CatchUpWindow: scheduler.CatchUpWindowDefault, Logger: log})
		require.NoError(t, err)
		require.Len(t, s.Jobs(), len(catalog))
		for _, j := range catalog {
			require.NotEmpty(t, j.Description, j.Name)
			require.False(t, j.Disabled, "%s: the catalog runs every job; deployments turn jobs off", j.Name)
			sc, err := j.Schedule()
			require.NoError(t, err)
			next := sc.NextN(time.Now(), 3)
			require.Len(t, next, 3, j.Name)
		}
	})

	t.Run("EveryJobHasAWorker", func(t *testing.T) {
		// Build the routers of every worker, as `levqor workers` does, and
		// find a tick consumer for each job: a job without one would tick
		// into the void.
		cfg, err := config.FromEnv(func(string) string { return "" })
		require.NoError(t, err)
		env := &service.Env{Cfg: cfg, Log: log, Reg: telemetry.NewRegistry(), Store: storetest.SQLite(t)}
		r, err := env.Router([]string{"all"})
		require.NoError(t, err)
		for _, j := range catalog {
			subject := cfg.Topology.Subject(bus.Ticks, j.Name)
			var consumers []string
			for _, rt := range r.Routes() {
				if rt.Consumer.Kind != bus.Ticks {
					continue
				}
				filter := rt.Consumer.Filter
				if filter == "" {
					filter = ">"
				}
				if matches(cfg.Topology.Subject(bus.Ticks, filter), subject) {
					consumers = append(consumers, rt.Consumer.Name)
				}
			}
			require.NotEmpty(t, consumers, "no worker consumes %s", subject)
		}
	})
}

func TestSubjectMatching(t *testing.T) {
	t.Parallel()
	require.True(t, matches("levqor.tick.housekeeping.>", "levqor.tick.housekeeping.prune"))
	require.True(t, matches("levqor.tick.*.prune", "levqor.tick.housekeeping.prune"))
	require.True(t, matches("levqor.tick.housekeeping.prune", "levqor.tick.housekeeping.prune"))
	require.False(t, matches("levqor.tick.housekeeping.>", "levqor.tick.housekeeping"))
	require.False(t, matches("levqor.tick.billing.>", "levqor.tick.housekeeping.prune"))
	require.False(t, matches("levqor.tick.housekeeping", "levqor.tick.housekeeping.prune"))
}
