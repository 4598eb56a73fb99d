package store

import (
	"context"
	"fmt"
	"time"
)

// AdvanceTickWatermarkParams names a job's slot whose effects a worker is
// about to commit.
type AdvanceTickWatermarkParams struct {
	// Job is the scheduled job, e.g. "housekeeping.watch".
	Job string
	// Slot is the tick's slot.
	Slot time.Time
	// At is when the worker acted; zero means now.
	At time.Time
}

const advanceTickWatermarkSQL = `INSERT INTO tick_watermarks (job, slot, updated_at)
VALUES (?, ?, ?)
ON CONFLICT (job) DO UPDATE SET slot = excluded.slot, updated_at = excluded.updated_at
WHERE tick_watermarks.slot < excluded.slot`

// AdvanceTickWatermark moves p.Job's watermark to p.Slot within tx and
// reports whether it moved: false means a slot as new or newer was already
// acted on, and the caller should change nothing. If tx rolls back, the
// watermark stays where it was.
//
// On PostgreSQL the row stays locked until tx ends, so two workers handling
// two slots of one job at once take turns, and the later slot sees what the
// earlier one committed.
func (tx *Tx) AdvanceTickWatermark(ctx context.Context, p AdvanceTickWatermarkParams) (bool, error) {
	if p.Job == "" || p.Slot.IsZero() {
		return false, fmt.Errorf("store: advancing tick watermark: job and slot are required (got %q, %s)", p.Job, p.Slot)
	}
	res, err := tx.tx.ExecContext(ctx, tx.rebind(advanceTickWatermarkSQL), p.Job, ts(p.Slot), ts(orNow(p.At)))
	if err != nil {
		return false, fmt.Errorf("store: advancing tick watermark of %s to %s: %w", p.Job, p.Slot.UTC().Format(time.RFC3339), err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: advancing tick watermark of %s: %w", p.Job, err)
	}
	return n == 1, nil
}

// WatchState is what the housekeeping watch saw of one consumer at its last
// slot.
type WatchState struct {
	// Consumer is the durable consumer's name, also the token of its
	// dead-letter subject (levqor.dlq.<consumer>).
	Consumer string `db:"consumer" json:"consumer"`
	// Stream is the stream the consumer reads; empty for a consumer known
	// only from its dead letters.
	Stream string `db:"stream" json:"stream,omitempty"`
	// DLQMessages is how many of its dead letters the DLQ held.
	DLQMessages int64 `db:"dlq_messages" json:"dlq_messages"`
	// Stuck is whether the consumer was judged stuck.
	Stuck bool `db:"stuck" json:"stuck"`
	// Slot is the watch's slot.
	Slot time.Time `db:"slot" json:"slot"`
	// UpdatedAt is when the row was written; zero means now.
	UpdatedAt time.Time `db:"updated_at" json:"updated_at"`
}

const watchStatesSQL = `SELECT consumer, stream, dlq_messages, stuck, slot, updated_at
FROM ops_watch
ORDER BY consumer`

// WatchStates returns the last watch's state of every consumer, by
// consumer name.
func (tx *Tx) WatchStates(ctx context.Context) (map[string]WatchState, error) {
	var rows []WatchState
	if err := tx.tx.SelectContext(ctx, &rows, watchStatesSQL); err != nil {
		return nil, fmt.Errorf("store: reading watch states: %w", err)
	}
	out := make(map[string]WatchState, len(rows))
	for _, r := range rows {
		r.Slot, r.UpdatedAt = r.Slot.UTC(), r.UpdatedAt.UTC()
		out[r.Consumer] = r
	}
	return out, nil
}

const saveWatchStateSQL = `INSERT INTO ops_watch (consumer, stream, dlq_messages, stuck, slot, updated_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (consumer) DO UPDATE SET
    stream = excluded.stream,
    dlq_messages = excluded.dlq_messages,
    stuck = excluded.stuck,
    slot = excluded.slot,
    updated_at = excluded.updated_at`

// SaveWatchState records s as the consumer's latest watch state within tx.
func (tx *Tx) SaveWatchState(ctx context.Context, s WatchState) error {
	if s.Consumer == "" || s.Slot.IsZero() {
		return fmt.Errorf("store: saving watch state: consumer and slot are required (got %q, %s)", s.Consumer, s.Slot)
	}
	if s.DLQMessages < 0 {
		return fmt.Errorf("store: saving watch state of %s: negative dlq_messages %d", s.Consumer, s.DLQMessages)
	}
	_, err := tx.tx.ExecContext(ctx, tx.rebind(saveWatchStateSQL),
		s.Consumer, s.Stream, s.DLQMessages, s.Stuck, ts(s.Slot), ts(orNow(s.UpdatedAt)))
	if err != nil {
		return fmt.Errorf("store: saving watch state of %s: %w", s.Consumer, err)
	}
	return nil
}
