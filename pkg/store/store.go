package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	neturl "net/url"
	"regexp"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // registers the "postgres" driver
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"github.com/sirupsen/logrus"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/levqor/levqor/schema"
)

// Dialect names returned by Store.Dialect. They are also the names of the
// migration directories in package schema.
const (
	// DialectPostgres is PostgreSQL, the production database.
	DialectPostgres = "postgres"
	// DialectSQLite is SQLite, the embedded database of dev mode.
	DialectSQLite = "sqlite"
)

// URLEnv is the environment variable that conventionally holds the database
// URL; Open names it in its errors so that a bad value is easy to trace.
const URLEnv = "LEVQOR_DATABASE_URL"

// SQLiteBusyTimeoutDefault is how long a SQLite connection waits for another
// process's write lock before giving up with SQLITE_BUSY.
const SQLiteBusyTimeoutDefault = 5 * time.Second

// ErrNotFound is returned by lookups such as GetStripeEvent when no row
// matches. Callers test for it with errors.Is and usually answer 404.
var ErrNotFound = errors.New("store: not found")

// PostgresIdleConns is how many idle connections to PostgreSQL the store
// keeps open: enough for a process's concurrent transactions (a worker's
// lanes, the outbox relay, the API), so that none is closed only to be
// opened again.
const PostgresIdleConns = 32

var _ io.Closer = (*Store)(nil)

// Store is a connection pool to Levqor's database, PostgreSQL or SQLite, with
// a method for every query the rest of the system needs. It is safe for
// concurrent use. Create it with Open, apply the schema with Migrate and
// release it with Close.
type Store struct {
	Querier
	db      *sqlx.DB
	dialect string
	url     string // redacted, for logs and errors
	log     logrus.FieldLogger
}

// Open connects to the database named by url and returns a Store. It does
// not migrate; call Migrate for that.
//
// Accepted URLs:
//
//   - postgres://… or postgresql://… for PostgreSQL, passed to lib/pq with
//     binary_parameters=yes added unless the URL sets it (see postgresDSN);
//   - sqlite:<path> or sqlite://<path> for SQLite, e.g. sqlite:levqor.db or
//     sqlite:///var/lib/levqor/levqor.db. Query parameters of the
//     modernc.org/sqlite driver may follow the path and override the
//     defaults (WAL, busy_timeout, foreign_keys, BEGIN IMMEDIATE, UTC times).
//
// A PostgreSQL server that is not up yet is waited for: Open pings with
// exponential backoff, logging each failed attempt with the password
// redacted, until a ping succeeds or ctx ends, in which case the error wraps
// ctx's error and the last ping error. SQLite has no server to wait for, so
// its first failure is final.
func Open(ctx context.Context, url string, log logrus.FieldLogger) (*Store, error) {
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	dialect, dsn, err := parseURL(url)
	if err != nil {
		return nil, err
	}
	redacted := RedactURL(url)
	db, err := sqlx.Open(dialect, dsn)
	if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", redacted, err)
	}
	if dialect == DialectSQLite {
		// One connection: see the package documentation.
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
	} else {
		// database/sql keeps 2 idle connections by default: a worker
		// running 8 lanes closed a connection after most transactions
		// and opened a new one (a new backend process) for the next.
		// Connections stay open while in use, and idle ones go after a
		// few minutes.
		db.SetMaxIdleConns(PostgresIdleConns)
		db.SetConnMaxIdleTime(5 * time.Minute)
	}
	s := &Store{
		Querier: Querier{db: db},
		db:      db,
		dialect: dialect,
		url:     redacted,
		log:     log.WithField("database", redacted),
	}
	if err := s.connect(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// connect pings until the database answers or ctx ends.
func (s *Store) connect(ctx context.Context) error {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(5*time.Second),
		backoff.WithMaxElapsedTime(0),
	)
	var lastErr error
	attempt := 0
	op := func() error {
		attempt++
		pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := s.db.PingContext(pingCtx)
		if err == nil {
			return nil
		}
		lastErr = err
		if s.dialect == DialectSQLite || ctx.Err() != nil {
			return backoff.Permanent(err)
		}
		return err
	}
	notify := func(err error, wait time.Duration) {
		s.log.WithFields(logrus.Fields{
			"attempt":  attempt,
			"retry_in": wait.String(),
			"error":    redactString(err.Error()),
		}).Warn("database not reachable, retrying")
	}
	err := backoff.RetryNotify(op, backoff.WithContext(b, ctx), notify)
	if err == nil {
		if attempt > 1 {
			s.log.WithField("attempt", attempt).Info("database reachable")
		}
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		if lastErr != nil {
			return fmt.Errorf("store: connecting to %s: %w (last error: %s)", s.url, ctxErr, redactString(lastErr.Error()))
		}
		return fmt.Errorf("store: connecting to %s: %w", s.url, ctxErr)
	}
	return fmt.Errorf("store: connecting to %s: %w", s.url, err)
}

// parseURL maps a database URL to a driver name, which is also the dialect,
// and the DSN the driver expects.
func parseURL(raw string) (dialect, dsn string, err error) {
	scheme, rest, ok := strings.Cut(raw, ":")
	if !ok || scheme == "" {
		return "", "", fmt.Errorf("store: %s %q has no scheme: want postgres://…, postgresql://… or sqlite:<path>", URLEnv, RedactURL(raw))
	}
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		if !strings.HasPrefix(rest, "//") {
			return "", "", fmt.Errorf("store: %s %q: want postgres://host/database", URLEnv, RedactURL(raw))
		}
		return DialectPostgres, postgresDSN(raw), nil
	case "sqlite":
		rest = strings.TrimPrefix(rest, "//")
		if path, _, _ := strings.Cut(rest, "?"); path == "" {
			return "", "", fmt.Errorf("store: %s %q has no path: want sqlite:<path>", URLEnv, raw)
		}
		return DialectSQLite, sqliteDSN(rest), nil
	default:
		return "", "", fmt.Errorf("store: %s has unsupported scheme %q: want postgres://…, postgresql://… or sqlite:<path>", URLEnv, scheme)
	}
}

// postgresDSN turns on lib/pq's binary_parameters unless raw sets it. By
// default lib/pq sends a statement with arguments in two round trips
// (parse and describe, then bind and execute); with binary parameters it
// sends them in one. Handlers run several statements per message, so this
// roughly halves the database round trips on the workers' hot path
// (docs/benchmarks.md). The store never passes []byte to a column whose
// binary input format differs from its text format (JSON goes as text),
// which is what the option requires.
func postgresDSN(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil {
		return raw // lib/pq reports the error with its own message
	}
	q := u.Query()
	if q.Has("binary_parameters") {
		return raw
	}
	q.Set("binary_parameters", "yes")
	u.RawQuery = q.Encode()
	return u.String()
}

// sqliteDSN adds the store's connection settings to a SQLite path, keeping
// any the caller set.
func sqliteDSN(pathAndQuery string) string {
	path, query, _ := strings.Cut(pathAndQuery, "?")
	q, err := neturl.ParseQuery(query)
	if err != nil {
		// Let the driver report the malformed query.
		return pathAndQuery
	}
	defaults := map[string]string{
		"_busy_timeout": fmt.Sprint(SQLiteBusyTimeoutDefault.Milliseconds()),
		"_journal_mode": "WAL",
		"_foreign_keys": "1",
		// Take the write lock at BEGIN, where busy_timeout applies, rather
		// than at the first write, where a lock upgrade fails at once.
		"_txlock": "immediate",
		// One text format in UTC keeps comparisons on time columns
		// chronological and makes times read back as time.Time in UTC.
		"_time_format": "sqlite",
		"_timezone":    "UTC",
	}
	for k, v := range defaults {
		if !q.Has(k) {
			q.Set(k, v)
		}
	}
	return path + "?" + q.Encode()
}

var passwordPattern = regexp.MustCompile(`(?i)(://[^:/?#@\s]*:)[^@/?#\s]*@|(password=)[^&\s]*`)

// RedactURL returns url with its password, whether in the user info or in a
// password query parameter, replaced by "xxxxx", so that it can be logged.
func RedactURL(url string) string {
	u, err := neturl.Parse(url)
	if err != nil || u.Scheme == "" || u.Opaque != "" {
		return redactString(url)
	}
	if _, ok := u.User.Password(); ok {
		u.User = neturl.UserPassword(u.User.Username(), "xxxxx")
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// redactString hides passwords in text that may contain a URL, such as a
// driver's error message or a URL net/url cannot parse.
func redactString(s string) string {
	return passwordPattern.ReplaceAllStringFunc(s, func(m string) string {
		sub := passwordPattern.FindStringSubmatch(m)
		if sub[1] != "" {
			return sub[1] + "xxxxx@"
		}
		return sub[2] + "xxxxx"
	})
}

// Dialect reports which database the store talks to: DialectPostgres or
// DialectSQLite.
func (s *Store) Dialect() string { return s.dialect }

// Ping checks that the database answers, once and without retrying; /readyz
// uses it.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("store: pinging %s: %w", s.url, err)
	}
	return nil
}

// Close closes the connection pool. Queries in flight finish first.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: closing: %w", err)
	}
	return nil
}

// DB returns the underlying pool. It exists for tests and benchmarks that
// need to look at or set up rows directly; production code goes through the
// Store's methods so that SQL stays in this package.
func (s *Store) DB() *sqlx.DB { return s.db }

// Migrate applies the embedded schema for the store's dialect (package
// schema) up to the latest version and logs each migration it applied. It
// is a no-op on an up-to-date database. On PostgreSQL it holds a
// session-level advisory lock while it runs, so replicas starting together
// migrate one after the other and all succeed.
func (s *Store) Migrate(ctx context.Context) error {
	fsys, err := fs.Sub(schema.FS, s.dialect)
	if err != nil {
		return fmt.Errorf("store: migrations for %s: %w", s.dialect, err)
	}
	gooseDialect := goose.DialectSQLite3
	var opts []goose.ProviderOption
	if s.dialect == DialectPostgres {
		gooseDialect = goose.DialectPostgres
		// Poll for the lock every second, for up to ten minutes.
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 600))
		if err != nil {
			return fmt.Errorf("store: migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	// The provider does not own the pool: it must not be closed here.
	provider, err := goose.NewProvider(gooseDialect, s.db.DB, fsys, opts...)
	if err != nil {
		return fmt.Errorf("store: preparing migrations: %w", err)
	}
	results, err := provider.Up(ctx)
	for _, r := range results {
		if r.Error != nil {
			continue
		}
		s.log.WithFields(logrus.Fields{
			"version":     r.Source.Version,
			"migration":   r.Source.Path,
			"duration_ms": r.Duration.Milliseconds(),
		}).Info("migration applied")
	}
	if err != nil {
		return fmt.Errorf("store: migrating %s: %w", s.url, err)
	}
	version, err := provider.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("store: reading schema version: %w", err)
	}
	s.log.WithFields(logrus.Fields{
		"version": version,
		"applied": len(results),
	}).Info("schema up to date")
	return nil
}

// rebind turns a query written with ? placeholders into the dialect's form.
func (s *Store) rebind(query string) string { return s.db.Rebind(query) }

// ts is how every time goes into the database: UTC, at the microsecond
// precision both dialects keep.
func ts(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// fromNull converts a nullable time read from the database.
func fromNull(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
}

// orNow returns t, or the current time when the caller left t zero.
func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}
