package housekeeping

import (
	"context"
	"fmt"
	"time"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
)

// retentionMargin is added to the inbox retention so that a message at the
// very end of its stream's life is never handled after its row is gone.
const retentionMargin = 24 * time.Hour

// InboxRetention is how long inbox rows must be kept under topo: the
// longest a message stays in a stream, plus how long the DLQ keeps a dead
// letter (a replay republishes a message to every consumer of its subject,
// up to that long after it was dead-lettered), plus a day. With the default
// streams: 35 + 30 + 1 = 66 days.
func InboxRetention(topo bus.Topology) time.Duration {
	var longest time.Duration
	for _, k := range bus.Kinds {
		if k != bus.DLQ {
			longest = max(longest, topo.Streams[k].MaxAge)
		}
	}
	return longest + topo.Streams[bus.DLQ].MaxAge + retentionMargin
}

// OutboxRetention is how long published outbox rows are kept under topo:
// as long as the EVENTS stream keeps the events they became (14 days by
// default). Unpublished rows are never pruned.
func OutboxRetention(topo bus.Topology) time.Duration {
	return topo.Streams[bus.Events].MaxAge
}

// Pruner handles housekeeping.prune ticks.
type Pruner struct {
	// Store is the database to prune; required.
	Store *store.Store
	// Topology decides the retentions (InboxRetention, OutboxRetention);
	// zero means the default streams.
	Topology bus.Topology
	// InboxRetention and OutboxRetention, when positive, replace the
	// retentions derived from Topology.
	InboxRetention  time.Duration
	OutboxRetention time.Duration
}

// Handle prunes the inbox, the outbox and finished commands relative to
// the tick's slot, not the clock, so a late or
// replayed tick does what its slot asked for. Deleting is idempotent, so
// redelivery is harmless.
func (p *Pruner) Handle(ctx context.Context, m *bus.Message) error {
	return scheduler.Dispatch("prune", scheduler.Jobs{scheduler.JobHousekeepingPrune: p.Run})(ctx, m)
}

// Run is Handle for a decoded tick.
func (p *Pruner) Run(ctx context.Context, _ *bus.Message, t scheduler.Tick) error {
	topo := p.Topology
	if topo.Streams == nil {
		topo = topo.WithDefaults()
	}
	inRet, outRet := p.InboxRetention, p.OutboxRetention
	if inRet <= 0 {
		inRet = InboxRetention(topo)
	}
	if outRet <= 0 {
		outRet = OutboxRetention(topo)
	}
	in, err := p.Store.PruneInbox(ctx, t.Slot.Add(-inRet))
	if err != nil {
		return fmt.Errorf("pruning inbox: %w", err)
	}
	out, err := p.Store.PruneOutbox(ctx, t.Slot.Add(-outRet))
	if err != nil {
		return fmt.Errorf("pruning outbox: %w", err)
	}
	// Finished commands follow the inbox: a replayed command message
	// still finds its row (and its result) as long as the inbox would
	// recognise the message.
	cmds, err := p.Store.PruneCommands(ctx, t.Slot.Add(-inRet))
	if err != nil {
		return fmt.Errorf("pruning commands: %w", err)
	}
	bus.Logger(ctx).WithFields(map[string]any{
		"slot":            t.Slot.Format(time.RFC3339),
		"inbox_pruned":    in,
		"outbox_pruned":   out,
		"commands_pruned": cmds,
	}).Info("pruned")
	return nil
}
