package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"
)

// Multi-row statements. A consumer that handles a batch of messages in one
// transaction writes each table once per batch: one INSERT with a row per
// message instead of a statement per message. The single-row writes are
// the same statements with one row.

// maxParams bounds the parameters of one statement, below SQLite's 32,766
// and PostgreSQL's 65,535; longer lists of rows take several statements.
const maxParams = 30000

// rowsSQL repeats row, a parenthesized list of placeholders, n times.
func rowsSQL(row string, n int) string {
	var b strings.Builder
	b.Grow(n * (len(row) + 2))
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	return b.String()
}

// placeholders is the row of n plain placeholders: "(?, ?, ?)".
func placeholders(n int) string {
	return "(" + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + ")"
}

// inRowChunks calls fn on successive parts of rows, each small enough that
// its parameters (cols a row) stay under maxParams.
func inRowChunks[T any](rows []T, cols int, fn func([]T) error) error {
	per := max(1, maxParams/cols)
	for len(rows) > 0 {
		n := min(len(rows), per)
		if err := fn(rows[:n]); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// selectIn runs query, whose one "IN (?)" takes the values of ids, in
// chunks of at most inChunk values, appending the rows to dest. Nothing is
// queried for no ids.
func selectIn[T any](ctx context.Context, q dbtx, dest *[]T, query string, ids []string) error {
	return eachChunk(ids, func(chunk []string) error {
		qs, args, err := sqlx.In(query, chunk)
		if err != nil {
			return err
		}
		var part []T
		if err := q.SelectContext(ctx, &part, q.Rebind(qs), args...); err != nil {
			return err
		}
		*dest = append(*dest, part...)
		return nil
	})
}

// what names the rows of a multi-row write in its errors: the id itself
// for one row, the count for more.
func what(kind string, ids ...string) string {
	if len(ids) == 1 {
		return kind + " " + ids[0]
	}
	return fmt.Sprintf("%d %ss", len(ids), kind)
}
