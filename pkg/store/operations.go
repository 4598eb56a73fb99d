package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// The queries behind the operators' tools (package ops): what is failing,
// which messages a consumer has already processed, which Stripe events the
// ledger already holds.

// FailureRecord is a consumer's latest failure at a message, as operators
// list it.
type FailureRecord struct {
	Failure
	// FirstFailedAt is when the consumer first failed at the message.
	FirstFailedAt time.Time `json:"first_failed_at"`
	// Processed is true when the consumer has since processed the message
	// (it has an inbox row): the failure is history, not a problem.
	Processed bool `json:"processed"`
}

// ListFailuresParams selects failures. The zero value lists the failures
// that still need attention: not dead-lettered and not since processed.
type ListFailuresParams struct {
	// Consumer keeps this consumer's failures only; empty means all.
	Consumer string
	// IncludeDeadLettered adds failures whose message went to the DLQ.
	IncludeDeadLettered bool
	// IncludeProcessed adds failures the consumer later recovered from.
	IncludeProcessed bool
	// Limit caps the rows returned, most recently failed first; 0 means
	// ListFailuresLimitDefault.
	Limit int
}

// ListFailuresLimitDefault bounds ListFailures when the caller sets no
// limit.
const ListFailuresLimitDefault = 1000

type failureRecordRow struct {
	Consumer      string    `db:"consumer"`
	MsgID         string    `db:"msg_id"`
	Subject       string    `db:"subject"`
	Stream        string    `db:"stream"`
	StreamSeq     uint64    `db:"stream_seq"`
	Deliveries    int       `db:"deliveries"`
	LastError     string    `db:"last_error"`
	FirstFailedAt time.Time `db:"first_failed_at"`
	LastFailedAt  time.Time `db:"last_failed_at"`
	DeadLettered  bool      `db:"dead_lettered"`
	Processed     bool      `db:"processed"`
}

// ListFailures returns the failures workers reported (RecordFailure) that
// match p, most recently failed first.
func (s *Store) ListFailures(ctx context.Context, p ListFailuresParams) ([]FailureRecord, error) {
	where := []string{"1 = 1"}
	var args []any
	if p.Consumer != "" {
		where = append(where, "f.consumer = ?")
		args = append(args, p.Consumer)
	}
	if !p.IncludeDeadLettered {
		where = append(where, "NOT f.dead_lettered")
	}
	if !p.IncludeProcessed {
		where = append(where, "i.msg_id IS NULL")
	}
	limit := p.Limit
	if limit <= 0 {
		limit = ListFailuresLimitDefault
	}
	args = append(args, limit)
	q := `SELECT f.consumer, f.msg_id, f.subject, f.stream, f.stream_seq, f.deliveries, f.last_error,
	f.first_failed_at, f.last_failed_at, f.dead_lettered, (i.msg_id IS NOT NULL) AS processed
FROM message_failures f
LEFT JOIN inbox i ON i.consumer = f.consumer AND i.msg_id = f.msg_id
WHERE ` + strings.Join(where, " AND ") + `
ORDER BY f.last_failed_at DESC, f.consumer, f.msg_id
LIMIT ?`
	var rows []failureRecordRow
	if err := s.db.SelectContext(ctx, &rows, s.rebind(q), args...); err != nil {
		return nil, fmt.Errorf("store: listing failures: %w", err)
	}
	out := make([]FailureRecord, 0, len(rows))
	for _, r := range rows {
		out = append(out, FailureRecord{
			Failure: Failure{
				Consumer: r.Consumer, MsgID: r.MsgID, Subject: r.Subject, Stream: r.Stream,
				StreamSeq: r.StreamSeq, Deliveries: r.Deliveries, Error: r.LastError,
				DeadLettered: r.DeadLettered, At: r.LastFailedAt.UTC(),
			},
			FirstFailedAt: r.FirstFailedAt.UTC(),
			Processed:     r.Processed,
		})
	}
	return out, nil
}

// inChunk bounds the number of values in one IN (…) list, well below the
// parameter limits of both dialects.
const inChunk = 500

// ProcessedMsgIDs reports which of ids consumer has processed, that is,
// has an inbox row for. Ids it has not processed are absent from the map.
func (s *Store) ProcessedMsgIDs(ctx context.Context, consumer string, ids []string) (map[string]bool, error) {
	out := make(map[string]bool)
	err := eachChunk(ids, func(chunk []string) error {
		q, args, err := sqlx.In(`SELECT msg_id FROM inbox WHERE consumer = ? AND msg_id IN (?)`, consumer, chunk)
		if err != nil {
			return err
		}
		var found []string
		if err := s.db.SelectContext(ctx, &found, s.rebind(q), args...); err != nil {
			return err
		}
		for _, id := range found {
			out[id] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: reading inbox of %s: %w", consumer, err)
	}
	return out, nil
}

// KnownStripeEventIDs reports which of ids the Stripe event ledger holds.
// Ids it does not hold are absent from the map.
func (s *Store) KnownStripeEventIDs(ctx context.Context, ids []string) (map[string]bool, error) {
	known, err := knownIDs(ctx, s.db, "stripe_events", ids)
	if err != nil {
		return nil, fmt.Errorf("store: looking up stripe events: %w", err)
	}
	return known, nil
}

// knownIDs reports which of ids table holds in its id column, in chunks
// of inChunk. table is one of the store's own names, never input.
func knownIDs(ctx context.Context, q dbtx, table string, ids []string) (map[string]bool, error) {
	out := make(map[string]bool)
	err := eachChunk(ids, func(chunk []string) error {
		query, args, err := sqlx.In(`SELECT id FROM `+table+` WHERE id IN (?)`, chunk)
		if err != nil {
			return err
		}
		var found []string
		if err := q.SelectContext(ctx, &found, q.Rebind(query), args...); err != nil {
			return err
		}
		for _, id := range found {
			out[id] = true
		}
		return nil
	})
	return out, err
}

func eachChunk(ids []string, fn func([]string) error) error {
	for len(ids) > 0 {
		n := min(len(ids), inChunk)
		if err := fn(ids[:n]); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}
