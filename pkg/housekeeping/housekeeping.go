// Package housekeeping is the worker that keeps Levqor's own tables small:
// on the scheduler's housekeeping.prune tick it deletes inbox rows older
// than the longest stream retention (a message that old can no longer be
// redelivered, so its inbox row protects nothing) and outbox rows published
// long ago.
package housekeeping

import (
	"context"
	"fmt"
	"time"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
)

// ConsumerTick is the housekeeping worker's consumer on TICKS.
const ConsumerTick = "housekeeping-tick"

// Retention defaults. InboxRetentionDefault exceeds the STRIPE stream's 35
// days so a replay of any stored message is still deduplicated.
const (
	InboxRetentionDefault  = 40 * 24 * time.Hour
	OutboxRetentionDefault = 7 * 24 * time.Hour
)

// Pruner prunes on ticks.
type Pruner struct {
	Store           *store.Store
	InboxRetention  time.Duration
	OutboxRetention time.Duration
}

// Register adds the housekeeping routes to r.
func (p *Pruner) Register(r *bus.Router) {
	r.Handle(bus.ConsumerSpec{Name: ConsumerTick, Kind: bus.Ticks, Filter: "housekeeping.>"}, p.Handle)
}

// Handle prunes relative to the tick's slot, not the clock, so a late or
// replayed tick does what its slot asked for. Deleting is idempotent, so
// redelivery is harmless.
func (p *Pruner) Handle(ctx context.Context, m *bus.Message) error {
	t, err := scheduler.ParseTick(m.Data)
	if err != nil {
		return bus.Permanent(err)
	}
	if t.Job != scheduler.JobHousekeepingPrune {
		return bus.Permanentf("housekeeping has no job %q", t.Job)
	}
	inRet, outRet := p.InboxRetention, p.OutboxRetention
	if inRet <= 0 {
		inRet = InboxRetentionDefault
	}
	if outRet <= 0 {
		outRet = OutboxRetentionDefault
	}
	in, err := p.Store.PruneInbox(ctx, t.Slot.Add(-inRet))
	if err != nil {
		return fmt.Errorf("pruning inbox: %w", err)
	}
	out, err := p.Store.PruneOutbox(ctx, t.Slot.Add(-outRet))
	if err != nil {
		return fmt.Errorf("pruning outbox: %w", err)
	}
	bus.Logger(ctx).WithFields(map[string]any{"slot": t.Slot, "inbox_pruned": in, "outbox_pruned": out}).Info("pruned")
	return nil
}
