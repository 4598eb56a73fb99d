package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jmoiron/sqlx"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/levqor/levqor/pkg/telemetry"
)

// OutboxMessage is an event a worker publishes through the transactional
// outbox: written in the same transaction as the state change it announces,
// then published to JetStream by the relay, at least once, with ID as its
// dedupe id.
type OutboxMessage struct {
	// ID is assigned by the database; ids only grow and are never reused.
	ID int64 `json:"id"`
	// Subject is the subject to publish to, e.g.
	// "levqor.event.billing.entitlements_changed".
	Subject string `json:"subject"`
	// Headers are the message headers to publish, e.g. the correlation id.
	Headers map[string]string `json:"headers,omitempty"`
	// Payload is the message body, published as is.
	Payload []byte `json:"payload"`
	// CreatedAt is when the message was enqueued; zero means now.
	CreatedAt time.Time `json:"created_at"`
	// PublishedAt is when the relay got JetStream's acknowledgement; nil
	// until then.
	PublishedAt *time.Time `json:"published_at,omitempty"`
}

type outboxRow struct {
	ID          int64        `db:"id"`
	Subject     string       `db:"subject"`
	Headers     []byte       `db:"headers"`
	Payload     []byte       `db:"payload"`
	CreatedAt   time.Time    `db:"created_at"`
	PublishedAt sql.NullTime `db:"published_at"`
}

func (r outboxRow) message() (OutboxMessage, error) {
	m := OutboxMessage{
		ID:          r.ID,
		Subject:     r.Subject,
		Payload:     nonNil(r.Payload),
		CreatedAt:   r.CreatedAt.UTC(),
		PublishedAt: fromNull(r.PublishedAt),
	}
	if len(r.Headers) > 0 {
		if err := json.Unmarshal(r.Headers, &m.Headers); err != nil {
			return OutboxMessage{}, fmt.Errorf("store: outbox row %d: decoding headers: %w", r.ID, err)
		}
	}
	if len(m.Headers) == 0 {
		m.Headers = nil
	}
	return m, nil
}

// EnqueueOutbox writes m to the outbox within tx and returns its id. The
// message becomes visible to the relay when tx commits and disappears with
// it if tx rolls back. m.ID and m.PublishedAt are ignored.
func (tx *Tx) EnqueueOutbox(ctx context.Context, m OutboxMessage) (int64, error) {
	ids, err := tx.EnqueueOutboxes(ctx, []OutboxMessage{TraceOutbox(ctx, m)})
	if err != nil {
		return 0, err
	}
	return ids[0], nil
}

// TraceOutbox makes the write of m a span of ctx's trace and has m carry
// it, so that the relay's publish and the consumers' spans join the
// handler's trace beneath it. Without tracing it returns m.
func TraceOutbox(ctx context.Context, m OutboxMessage) OutboxMessage {
	if !telemetry.Tracing() {
		return m
	}
	ctx, span := telemetry.StartSpan(ctx, "outbox "+m.Subject, trace.SpanKindProducer)
	defer span.End()
	h := make(map[string]string, len(m.Headers)+1)
	maps.Copy(h, m.Headers)
	telemetry.Inject(ctx, propagation.MapCarrier(h))
	m.Headers = h
	return m
}

// EnqueueOutboxes writes msgs to the outbox within tx in one statement and
// returns their ids, in order; see EnqueueOutbox. Call TraceOutbox on each
// first, in its handler's context, to carry traces.
func (tx *Tx) EnqueueOutboxes(ctx context.Context, msgs []OutboxMessage) ([]int64, error) {
	const cols = 4
	ids := make([]int64, 0, len(msgs))
	err := inRowChunks(msgs, cols, func(part []OutboxMessage) error {
		args := make([]any, 0, len(part)*cols)
		for _, m := range part {
			if m.Subject == "" {
				return fmt.Errorf("store: enqueueing outbox message: subject is required")
			}
			headers := []byte("{}")
			if len(m.Headers) > 0 {
				var err error
				if headers, err = json.Marshal(m.Headers); err != nil {
					return fmt.Errorf("store: enqueueing outbox message on %s: encoding headers: %w", m.Subject, err)
				}
			}
			args = append(args, m.Subject, string(headers), nonNil(m.Payload), ts(orNow(m.CreatedAt)))
		}
		var got []int64
		err := tx.tx.SelectContext(ctx, &got, tx.rebind(`INSERT INTO outbox (subject, headers, payload, created_at)
VALUES `+rowsSQL(placeholders(cols), len(part))+`
RETURNING id`), args...)
		if err != nil {
			return fmt.Errorf("store: enqueueing outbox message on %s: %w", part[0].Subject, err)
		}
		if len(got) != len(part) {
			return fmt.Errorf("store: enqueueing %d outbox messages returned %d ids", len(part), len(got))
		}
		// Ids are taken in the order of the rows; the relay publishes in
		// id order.
		slices.Sort(got)
		ids = append(ids, got...)
		return nil
	})
	return ids, err
}

const unpublishedOutboxSQL = `SELECT id, subject, headers, payload, created_at, published_at
FROM outbox
WHERE published_at IS NULL
ORDER BY id
LIMIT ?`

// UnpublishedOutbox returns up to limit messages not yet published, oldest
// id first. On PostgreSQL ids are taken when a row is inserted, not when its
// transaction commits, so a row with a smaller id can appear after larger
// ones were returned: the relay must not treat the last id it saw as a
// watermark.
func (s *Store) UnpublishedOutbox(ctx context.Context, limit int) ([]OutboxMessage, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("store: listing unpublished outbox: limit must be positive, got %d", limit)
	}
	var rows []outboxRow
	if err := s.db.SelectContext(ctx, &rows, s.rebind(unpublishedOutboxSQL), limit); err != nil {
		return nil, fmt.Errorf("store: listing unpublished outbox: %w", err)
	}
	msgs := make([]OutboxMessage, 0, len(rows))
	for _, r := range rows {
		m, err := r.message()
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

const markOutboxPublishedSQL = `UPDATE outbox SET published_at = ?
WHERE id IN (?) AND published_at IS NULL`

// markOutboxBatch bounds the number of ids per statement, well below the
// bind-parameter limits of both dialects.
const markOutboxBatch = 500

// MarkOutboxPublished records that the messages with the given ids were
// published at at. Ids already marked keep their first publication time;
// unknown ids are ignored.
func (s *Store) MarkOutboxPublished(ctx context.Context, ids []int64, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	at = ts(at)
	return s.InTx(ctx, func(tx *Tx) error {
		for start := 0; start < len(ids); start += markOutboxBatch {
			batch := ids[start:min(start+markOutboxBatch, len(ids))]
			query, args, err := sqlx.In(markOutboxPublishedSQL, at, batch)
			if err != nil {
				return fmt.Errorf("store: marking outbox published: %w", err)
			}
			if _, err := tx.tx.ExecContext(ctx, tx.rebind(query), args...); err != nil {
				return fmt.Errorf("store: marking outbox published: %w", err)
			}
		}
		return nil
	})
}

const pruneOutboxSQL = `DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < ?`

// PruneOutbox deletes messages published before before and returns how many
// it deleted. Unpublished messages are never deleted, however old.
func (s *Store) PruneOutbox(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.rebind(pruneOutboxSQL), ts(before))
	if err != nil {
		return 0, fmt.Errorf("store: pruning outbox: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: pruning outbox: %w", err)
	}
	return n, nil
}

// nonNil makes empty byte slices read and write the same in both dialects:
// SQLite returns an empty BLOB as nil and lib/pq writes nil as NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
