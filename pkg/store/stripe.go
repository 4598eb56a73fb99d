package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// StripeEvent is one entry of the Stripe event ledger: every event Stripe
// sent, once, with the exact bytes it sent.
type StripeEvent struct {
	// ID is Stripe's event id, e.g. "evt_1Nq…"; it is the ledger's key.
	ID string `json:"id"`
	// Type is Stripe's event type, e.g. "invoice.payment_failed".
	Type string `json:"type"`
	// APIVersion is the Stripe API version the payload was rendered with.
	APIVersion string `json:"api_version"`
	// Livemode is false for test-mode events.
	Livemode bool `json:"livemode"`
	// Created is Stripe's created time; handlers order events of one object
	// by it, because Stripe delivers out of order.
	Created time.Time `json:"created"`
	// ReceivedAt is when ingest (and so JetStream) received the event.
	ReceivedAt time.Time `json:"received_at"`
	// RecordedAt is when the event was written to the ledger; zero means
	// now.
	RecordedAt time.Time `json:"recorded_at"`
	// StreamSeq is the event's sequence in the STRIPE stream.
	StreamSeq uint64 `json:"stream_seq"`
	// Payload is the exact body Stripe sent. It is a json.RawMessage so
	// that the event renders as JSON, not base64, in API answers.
	Payload json.RawMessage `json:"payload"`
}

type stripeEventRow struct {
	ID         string    `db:"id"`
	Type       string    `db:"type"`
	APIVersion string    `db:"api_version"`
	Livemode   bool      `db:"livemode"`
	Created    time.Time `db:"created"`
	ReceivedAt time.Time `db:"received_at"`
	RecordedAt time.Time `db:"recorded_at"`
	StreamSeq  uint64    `db:"stream_seq"`
	Payload    []byte    `db:"payload"`
}

// InsertStripeEvent adds e to the ledger within tx and reports whether it
// was new. Stripe resends events, so a duplicate is expected and reported as
// false, not as an error; the first copy is kept.
func (tx *Tx) InsertStripeEvent(ctx context.Context, e StripeEvent) (inserted bool, err error) {
	n, err := tx.InsertStripeEvents(ctx, []StripeEvent{e})
	return n == 1, err
}

// InsertStripeEvents adds events, each id at most once, to the ledger in
// one statement and returns how many were new.
func (tx *Tx) InsertStripeEvents(ctx context.Context, evs []StripeEvent) (inserted int64, err error) {
	const cols = 9
	err = inRowChunks(evs, cols, func(part []StripeEvent) error {
		args := make([]any, 0, len(part)*cols)
		ids := make([]string, 0, len(part))
		for _, e := range part {
			if e.ID == "" {
				return fmt.Errorf("store: inserting stripe event: id is required")
			}
			ids = append(ids, e.ID)
			args = append(args, e.ID, e.Type, e.APIVersion, e.Livemode,
				ts(e.Created), ts(e.ReceivedAt), ts(orNow(e.RecordedAt)), e.StreamSeq, nonNil(e.Payload))
		}
		res, err := tx.tx.ExecContext(ctx, tx.rebind(`INSERT INTO stripe_events
(id, type, api_version, livemode, created, received_at, recorded_at, stream_seq, payload)
VALUES `+rowsSQL(placeholders(cols), len(part))+`
ON CONFLICT (id) DO NOTHING`), args...)
		if err != nil {
			return fmt.Errorf("store: inserting %s: %w", what("stripe event", ids...), err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("store: inserting %s: %w", what("stripe event", ids...), err)
		}
		inserted += n
		return nil
	})
	return inserted, err
}

const getStripeEventSQL = `SELECT id, type, api_version, livemode, created, received_at, recorded_at, stream_seq, payload
FROM stripe_events
WHERE id = ?`

// GetStripeEvent returns the ledger entry for the Stripe event id, or an
// error wrapping ErrNotFound.
func (s *Store) GetStripeEvent(ctx context.Context, id string) (*StripeEvent, error) {
	var r stripeEventRow
	err := s.db.GetContext(ctx, &r, s.rebind(getStripeEventSQL), id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: stripe event %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: getting stripe event %s: %w", id, err)
	}
	e := &StripeEvent{
		ID:         r.ID,
		Type:       r.Type,
		APIVersion: r.APIVersion,
		Livemode:   r.Livemode,
		Created:    r.Created.UTC(),
		ReceivedAt: r.ReceivedAt.UTC(),
		RecordedAt: r.RecordedAt.UTC(),
		StreamSeq:  r.StreamSeq,
	}
	if len(r.Payload) > 0 {
		e.Payload = r.Payload
	}
	return e, nil
}

// CountStripeEvents returns the number of events in the ledger.
func (s *Store) CountStripeEvents(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.GetContext(ctx, &n, `SELECT COUNT(*) FROM stripe_events`); err != nil {
		return 0, fmt.Errorf("store: counting stripe events: %w", err)
	}
	return n, nil
}
