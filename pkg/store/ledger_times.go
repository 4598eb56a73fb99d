package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// ledgerBatch bounds the ids per query, well under every driver's limit on
// bound parameters.
const ledgerBatch = 500

// StripeEventsRecordedAt returns when each of ids was written to the ledger;
// ids not (yet) in the ledger are absent from the map. Load tests use it to
// measure the time from a webhook's acceptance to its committed effect.
func (s *Store) StripeEventsRecordedAt(ctx context.Context, ids []string) (map[string]time.Time, error) {
	out := make(map[string]time.Time, len(ids))
	for start := 0; start < len(ids); start += ledgerBatch {
		batch := ids[start:min(len(ids), start+ledgerBatch)]
		q, args, err := sqlx.In(`SELECT id, recorded_at FROM stripe_events WHERE id IN (?)`, batch)
		if err != nil {
			return nil, fmt.Errorf("store: building ledger query: %w", err)
		}
		var rows []struct {
			ID         string    `db:"id"`
			RecordedAt time.Time `db:"recorded_at"`
		}
		if err := s.db.SelectContext(ctx, &rows, s.rebind(q), args...); err != nil {
			return nil, fmt.Errorf("store: reading ledger times: %w", err)
		}
		for _, r := range rows {
			out[r.ID] = r.RecordedAt.UTC()
		}
	}
	return out, nil
}
