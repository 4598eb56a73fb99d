package housekeeping

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
)

// ConsumerTick is the housekeeping worker's consumer on TICKS.
const ConsumerTick = "housekeeping-tick"

// Worker is the housekeeping worker: the prune and watch jobs behind one
// consumer.
type Worker struct {
	// Store is the database; required.
	Store *store.Store
	// JS is what the watch job inspects; required to run it.
	JS jetstream.JetStream
	// Topology names the streams; its retention settings decide what prune
	// may delete. Zero means the defaults.
	Topology bus.Topology
	// Registerer receives the watch job's gauges; nil keeps them
	// unregistered.
	Registerer prometheus.Registerer
	// DLQAccountThreshold is the watch's Watcher.DLQAccountThreshold; zero
	// means DLQAccountThresholdDefault.
	DLQAccountThreshold int
}

// Register adds the housekeeping route to r.
func (w *Worker) Register(r *bus.Router) {
	topo := w.Topology
	if topo.Streams == nil {
		topo = topo.WithDefaults()
	}
	p := &Pruner{Store: w.Store, Topology: topo}
	wa := &Watcher{Store: w.Store, JS: w.JS, Topology: topo, DLQAccountThreshold: w.DLQAccountThreshold}
	if w.Registerer != nil {
		wa.Register(w.Registerer)
	}
	r.Handle(bus.ConsumerSpec{Name: ConsumerTick, Kind: bus.Ticks, Filter: "housekeeping.>"}, Dispatch(p, wa))
}

// Dispatch returns the handler of the housekeeping consumer: each tick goes
// to its job's handler, and a tick of a job housekeeping does not have is a
// permanent failure (dead-lettered, for an operator to look at).
func Dispatch(p *Pruner, w *Watcher) bus.Handler {
	return scheduler.Dispatch("housekeeping", scheduler.Jobs{
		scheduler.JobHousekeepingPrune: p.Run,
		scheduler.JobHousekeepingWatch: w.Run,
	})
}

// registerGauge registers g on reg, or returns the gauge already registered
// under its name (a process that builds its router twice).
func registerGauge(reg prometheus.Registerer, g *prometheus.GaugeVec) *prometheus.GaugeVec {
	err := reg.Register(g)
	if err == nil {
		return g
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(*prometheus.GaugeVec); ok {
			return existing
		}
	}
	panic(fmt.Sprintf("housekeeping: registering metrics: %v", err))
}
