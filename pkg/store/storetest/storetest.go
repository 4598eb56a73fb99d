// Package storetest gives tests a fresh, migrated store on each dialect, so
// that the code that owns state is tested against the real databases: SQLite
// in a temporary file and PostgreSQL on the server named by
// TEST_DATABASE_URL.
//
// Every helper creates its own database and removes it in t.Cleanup, so
// tests using them can run in parallel.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/lib/pq" // registers the "postgres" driver
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/store"
)

// DatabaseURLEnv names the PostgreSQL server the helpers create their
// databases on, e.g. postgres://root@127.0.0.1:5432/test?sslmode=disable.
// The role needs CREATEDB. The database in the URL is only used to connect.
const DatabaseURLEnv = "TEST_DATABASE_URL"

// RequirePostgresEnv, when set to 1, turns the skip of PostgreSQL tests for
// want of DatabaseURLEnv into a failure, so that CI cannot go green without
// having run them.
const RequirePostgresEnv = "LEVQOR_TEST_REQUIRE_POSTGRES"

// setupTimeout bounds creating, migrating and dropping a test database.
const setupTimeout = time.Minute

// Each runs fn as two subtests, "SQLite" and "Postgres", each with a fresh
// migrated store. The Postgres subtest is skipped, or fails, as Postgres
// describes. The subtests run one after the other; call t.Parallel in the
// enclosing test to overlap tests.
func Each(t *testing.T, fn func(t *testing.T, s *store.Store)) {
	t.Helper()
	t.Run("SQLite", func(t *testing.T) {
		fn(t, SQLite(t))
	})
	t.Run("Postgres", func(t *testing.T) {
		fn(t, Postgres(t))
	})
}

// SQLite returns a migrated store on a fresh database file in t.TempDir(),
// closed in t.Cleanup.
func SQLite(t testing.TB) *store.Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "levqor.db")
	return openMigrated(t, "sqlite:"+path)
}

// Postgres returns a migrated store on a fresh PostgreSQL database (see
// PostgresURL), closed in t.Cleanup before the database is dropped.
func Postgres(t testing.TB) *store.Store {
	t.Helper()
	return openMigrated(t, PostgresURL(t))
}

// PostgresURL creates an empty database named levqor_t_<random> on the
// server named by TEST_DATABASE_URL and returns its URL, for tests that open
// and migrate the store themselves. The database is dropped, with any
// sessions still connected, in t.Cleanup.
//
// Without TEST_DATABASE_URL the test is skipped, or fails if
// LEVQOR_TEST_REQUIRE_POSTGRES=1.
func PostgresURL(t testing.TB) string {
	t.Helper()
	adminURL := os.Getenv(DatabaseURLEnv)
	if adminURL == "" {
		msg := fmt.Sprintf("PostgreSQL tests need %s, e.g. %s='postgres://root@127.0.0.1:5432/test?sslmode=disable'",
			DatabaseURLEnv, DatabaseURLEnv)
		if os.Getenv(RequirePostgresEnv) == "1" {
			t.Fatalf("%s, and %s=1 requires them", msg, RequirePostgresEnv)
		}
		t.Skip(msg)
	}
	u, err := url.Parse(adminURL)
	require.NoError(t, err, "parsing %s", DatabaseURLEnv)

	name := "levqor_t_" + randomHex(t, 8)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	admin, err := sql.Open("postgres", adminURL)
	require.NoError(t, err)
	defer admin.Close()
	// The name is generated, so quoting it is enough.
	_, err = admin.ExecContext(ctx, `CREATE DATABASE "`+name+`"`)
	require.NoError(t, err, "creating test database on %s", store.RedactURL(adminURL))

	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		admin, err := sql.Open("postgres", adminURL)
		if err != nil {
			t.Errorf("dropping test database %s: %v", name, err)
			return
		}
		defer admin.Close()
		if _, err := admin.ExecContext(ctx, `DROP DATABASE IF EXISTS "`+name+`" WITH (FORCE)`); err != nil {
			t.Errorf("dropping test database %s: %v", name, err)
		}
	})

	u.Path = "/" + name
	return u.String()
}

func openMigrated(t testing.TB, dbURL string) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	s, err := store.Open(ctx, dbURL, Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("closing store: %v", err)
		}
	})
	require.NoError(t, s.Migrate(ctx))
	return s
}

// Logger returns a logger that writes warnings and errors to the test's
// output, where they appear next to the failure they explain.
func Logger(t testing.TB) logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(t.Output())
	l.SetLevel(logrus.WarnLevel)
	return l
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}
