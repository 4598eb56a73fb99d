package scheduler

import (
	"context"
	"slices"
	"strings"

	"github.com/levqor/levqor/pkg/bus"
)

// TickFunc runs one job for a tick, acting on t.Slot. m is the tick's
// message, for its correlation id and InProgress.
type TickFunc func(ctx context.Context, m *bus.Message, t Tick) error

// Jobs maps job names to the functions that run them.
type Jobs map[string]TickFunc

// Dispatch returns the handler of a worker's tick consumer: it decodes the
// tick and runs its job's function. A payload that does not decode, or a
// job the worker does not have, is a permanent failure naming owner (the
// worker), dead-lettered for an operator to look at: no retry can make a
// worker run a job it lacks.
func Dispatch(owner string, jobs Jobs) bus.Handler {
	return func(ctx context.Context, m *bus.Message) error {
		t, err := ParseTick(m.Data)
		if err != nil {
			return bus.Permanent(err)
		}
		fn, ok := jobs[t.Job]
		if !ok {
			return bus.Permanentf("%s has no job %q (it runs %s)", owner, t.Job, strings.Join(jobs.Names(), ", "))
		}
		return fn(ctx, m, t)
	}
}

// Names returns the job names, sorted.
func (j Jobs) Names() []string {
	names := make([]string, 0, len(j))
	for name := range j {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
