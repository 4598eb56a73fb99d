// Package schema holds Levqor's database migrations, one numbered series of
// goose SQL files per dialect, embedded so that every binary carries the
// schema it expects and can migrate at start-up or from `levqor migrate`.
//
// The two series describe the same tables with the same columns; only the
// types differ, each the natural one for its dialect. A change to one
// dialect's series needs the matching file in the other.
package schema

import "embed"

// FS holds the migrations: postgres/*.sql for PostgreSQL and sqlite/*.sql
// for SQLite. Package store picks the directory that matches its dialect.
//
//go:embed postgres/*.sql sqlite/*.sql
var FS embed.FS
