package store

import (
	"context"

	"github.com/jmoiron/sqlx"
)

// dbtx is what the connection pool (*sqlx.DB) and a transaction
// (*sqlx.Tx) both offer; a query written against it runs either way.
type dbtx interface {
	sqlx.ExtContext
	GetContext(ctx context.Context, dest any, query string, args ...any) error
	SelectContext(ctx context.Context, dest any, query string, args ...any) error
}

// Querier holds the queries that read the same on the pool and inside a
// transaction. Store and Tx both embed one, so s.GetAccount and
// tx.GetAccount are one method written once: the Store's runs on the pool,
// the Tx's sees the transaction's own writes.
type Querier struct {
	db dbtx
}

func (q Querier) rebind(query string) string { return q.db.Rebind(query) }

// Both ways of querying offer every read, checked at compile time.
var (
	_ reader = (*Store)(nil)
	_ reader = (*Tx)(nil)
)

// reader lists the reads a handler may make on the pool before its
// transaction and again inside it.
type reader interface {
	GetAccount(ctx context.Context, id string) (*Account, error)
	AccountSubscriptions(ctx context.Context, accountID string) ([]Subscription, error)
	GetDunning(ctx context.Context, accountID string) (*Dunning, error)
	GetRun(ctx context.Context, id string) (*BackupRun, error)
	GetSource(ctx context.Context, id string) (*BackupSource, error)
	GetSnapshot(ctx context.Context, id string) (*Snapshot, error)
	SourceSnapshots(ctx context.Context, sourceID string, states ...string) ([]Snapshot, error)
	SourceHolds(ctx context.Context, sourceID string) ([]LegalHold, error)
}
