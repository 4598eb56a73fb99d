package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/levqor/levqor/pkg/telemetry"
)

// Tx is one database transaction, handed to the function given to
// Store.InTx. A handler records its effects through it together with its
// inbox claim and outbox messages, so that they commit or vanish as one.
// A Tx must not be used after that function returns.
type Tx struct {
	Querier
	tx *sqlx.Tx
}

// rebind turns a query written with ? placeholders into the dialect's form.
func (tx *Tx) rebind(query string) string { return tx.tx.Rebind(query) }

// InTx runs fn in one transaction. The transaction commits if fn returns
// nil and rolls back otherwise, in which case InTx returns fn's error as it
// is, so that errors.Is and errors.As see what the handler returned. A panic
// in fn rolls back and panics again.
//
// On SQLite the store has a single connection, which the transaction holds
// until fn returns: fn must use tx, never the Store, or it waits forever.
func (s *Store) InTx(ctx context.Context, fn func(tx *Tx) error) (err error) {
	if telemetry.Tracing() {
		var span trace.Span
		ctx, span = telemetry.StartSpan(ctx, "db.transaction", trace.SpanKindClient, attribute.String("db.system", s.db.DriverName()))
		defer func() { telemetry.EndSpan(span, err) }()
	}
	sqlTx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: beginning transaction: %w", err)
	}
	committed := false
	defer func() {
		if committed {
			return
		}
		if rbErr := sqlTx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
			s.log.WithField("error", rbErr.Error()).Warn("rolling back transaction failed")
		}
		if p := recover(); p != nil {
			panic(p)
		}
	}()
	if err := fn(&Tx{Querier: Querier{db: sqlTx}, tx: sqlTx}); err != nil {
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		// database/sql has already rolled back or closed the transaction.
		committed = true
		return fmt.Errorf("store: committing transaction: %w", err)
	}
	committed = true
	return nil
}
