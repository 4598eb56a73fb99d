package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	_ "github.com/lib/pq" // registers the "postgres" driver
	"github.com/stretchr/testify/require"
)

// Environment of the PostgreSQL tests, shared with pkg/store/storetest.
const (
	databaseURLEnv     = "TEST_DATABASE_URL"
	requirePostgresEnv = "LEVQOR_TEST_REQUIRE_POSTGRES"
)

// postgresAdmin returns the URL of the test server, skipping the test
// when no server is configured or reachable, or failing it if
// LEVQOR_TEST_REQUIRE_POSTGRES=1.
func postgresAdmin(t *testing.T) string {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv(requirePostgresEnv) == "1" {
			t.Fatalf("%s, and %s=1 requires the PostgreSQL tests", msg, requirePostgresEnv)
		}
		t.Skip(msg)
	}
	admin := os.Getenv(databaseURLEnv)
	if admin == "" {
		skip("PostgreSQL tests need %s, e.g. postgres://root@127.0.0.1:5432/test?sslmode=disable", databaseURLEnv)
	}
	for _, bin := range []string{PgDumpPath, PgRestorePath, PsqlPath} {
		if _, err := exec.LookPath(bin); err != nil {
			skip("PostgreSQL tests need %s: %v", bin, err)
		}
	}
	db, err := sql.Open("postgres", admin)
	require.NoError(t, err)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		skip("PostgreSQL at %s is unreachable: %v", databaseURLEnv, err)
	}
	return admin
}

// newDatabase creates an empty database on the server and returns its
// URL; it is dropped in t.Cleanup.
func newDatabase(t *testing.T, admin string) string {
	t.Helper()
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "levqor_arc_" + hex.EncodeToString(rnd[:])
	db, err := sql.Open("postgres", admin)
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(`CREATE DATABASE "` + name + `"`)
	require.NoError(t, err)
	t.Cleanup(func() {
		db, err := sql.Open("postgres", admin)
		if err != nil {
			t.Errorf("dropping %s: %v", name, err)
			return
		}
		defer db.Close()
		if _, err := db.Exec(`DROP DATABASE IF EXISTS "` + name + `" WITH (FORCE)`); err != nil {
			t.Errorf("dropping %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	require.NoError(t, err)
	u.Path = "/" + name
	return u.String()
}

func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// fillSQL creates objects of many sorts and a few thousand rows of many
// column types, NULLs and non-ASCII text included.
const fillSQL = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE accounts (
	id bigserial PRIMARY KEY,
	name text NOT NULL UNIQUE,
	balance numeric(12,2),
	active boolean NOT NULL,
	created_at timestamptz NOT NULL,
	tags text[],
	profile jsonb,
	avatar bytea,
	mood mood,
	uid uuid,
	ratio double precision
);
INSERT INTO accounts (name, balance, active, created_at, tags, profile, avatar, mood, uid, ratio)
SELECT 'name-' || i || ' ünïcødé ''quoted'' "dq" \ backslash',
       CASE WHEN i % 7 = 0 THEN NULL ELSE i * 1.25 END,
       i % 2 = 0,
       '2024-01-01 00:00:00+00'::timestamptz + i * interval '1 minute 1.5 second',
       ARRAY['t' || i, 'x y'],
       jsonb_build_object('i', i, 'nested', jsonb_build_object('k', repeat('v', i % 10))),
       decode(md5(i::text), 'hex'),
       (ARRAY['sad', 'ok', 'happy'])[i % 3 + 1]::mood,
       md5(i::text)::uuid,
       i / 3.0
FROM generate_series(1, 3000) AS i;
CREATE TABLE events (
	id serial PRIMARY KEY,
	account_id bigint REFERENCES accounts (id),
	payload text,
	at timestamp
);
INSERT INTO events (account_id, payload, at)
SELECT (i % 3000) + 1, repeat(md5(i::text), 1 + i % 5), '2020-02-29 12:00'::timestamp + i * interval '1 hour'
FROM generate_series(1, 5000) AS i;
CREATE INDEX events_account ON events (account_id);
CREATE VIEW active_accounts AS SELECT id, name FROM accounts WHERE active;
CREATE FUNCTION add_one(int) RETURNS int LANGUAGE sql AS 'SELECT $1 + 1';
CREATE SCHEMA extra;
CREATE TABLE extra.notes (k text PRIMARY KEY, v text);
INSERT INTO extra.notes VALUES ('newline', E'line 1\nline 2'), ('tab', E'a\tb'), ('empty', '');
`

// contentsSQL describes a database's data: row counts and digests of
// every table, the sequences' positions and the other objects' behaviour.
var contentsSQL = []string{
	`SELECT count(*)::text || ' ' || md5(string_agg(t::text, E'\n' ORDER BY id)) FROM accounts t`,
	`SELECT count(*)::text || ' ' || md5(string_agg(t::text, E'\n' ORDER BY id)) FROM events t`,
	`SELECT count(*)::text || ' ' || md5(string_agg(t::text, E'\n' ORDER BY k)) FROM extra.notes t`,
	`SELECT last_value::text FROM accounts_id_seq`,
	`SELECT last_value::text FROM events_id_seq`,
	`SELECT count(*)::text FROM active_accounts`,
	`SELECT add_one(41)::text`,
	`SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum`,
	`SELECT indexdef FROM pg_indexes WHERE indexname = 'events_account'`,
}

func contents(t *testing.T, dsn string) []string {
	t.Helper()
	db := openDB(t, dsn)
	var out []string
	for _, q := range contentsSQL {
		var s string
		require.NoError(t, db.QueryRow(q).Scan(&s), q)
		out = append(out, s)
	}
	return out
}

func TestPostgresRoundTrip(t *testing.T) {
	t.Parallel()
	admin := postgresAdmin(t)
	src := newDatabase(t, admin)
	_, err := openDB(t, src).Exec(fillSQL)
	require.NoError(t, err)
	want := contents(t, src)
	require.True(t, strings.HasPrefix(want[0], "3000 "), want[0])

	var buf bytes.Buffer
	var last int64
	m, err := WritePostgres(testCtx(t), &buf, src, func(done int64) { last = done })
	require.NoError(t, err)
	archive := buf.Bytes()
	require.Equal(t, KindPostgres, m.Kind)
	require.Greater(t, m.DumpSize, int64(100<<10))
	require.Equal(t, m.DumpSize, m.SourceBytes)
	require.Equal(t, m.DumpSize, last)
	require.Len(t, m.DumpSHA256, 64)
	require.Less(t, int64(len(archive)), m.DumpSize, "compressed")

	t.Run("Verify", func(t *testing.T) {
		vm, stats, err := Verify(testCtx(t), bytes.NewReader(archive))
		require.NoError(t, err)
		require.Equal(t, m, vm)
		require.Equal(t, Stats{Files: 1, Bytes: m.DumpSize}, stats)
	})

	t.Run("RestoreIntoFreshDatabase", func(t *testing.T) {
		dst := newDatabase(t, admin)
		stats, err := RestorePostgres(testCtx(t), bytes.NewReader(archive), dst, RestoreOptions{TempDir: t.TempDir()})
		require.NoError(t, err)
		require.Equal(t, m.DumpSize, stats.Bytes)
		require.Equal(t, want, contents(t, dst))

		t.Run("NonEmptyRefused", func(t *testing.T) {
			_, err := RestorePostgres(testCtx(t), bytes.NewReader(archive), dst, RestoreOptions{})
			require.ErrorIs(t, err, ErrTargetNotEmpty)
		})

		t.Run("Overwrite", func(t *testing.T) {
			db := openDB(t, dst)
			_, err := db.Exec(`DELETE FROM events WHERE id % 2 = 0; UPDATE accounts SET balance = 0; CREATE TABLE bystander (x int)`)
			require.NoError(t, err)
			require.NotEqual(t, want, contents(t, dst))
			_, err = RestorePostgres(testCtx(t), bytes.NewReader(archive), dst, RestoreOptions{Overwrite: true})
			require.NoError(t, err)
			require.Equal(t, want, contents(t, dst))
			var n int
			require.NoError(t, db.QueryRow(`SELECT count(*) FROM bystander`).Scan(&n), "objects outside the dump are kept")
		})
	})

	t.Run("CorruptArchiveChangesNothing", func(t *testing.T) {
		dst := newDatabase(t, admin)
		bad := bytes.Clone(archive)
		bad[len(bad)/2] ^= 0x10
		_, err := RestorePostgres(testCtx(t), bytes.NewReader(bad), dst, RestoreOptions{TempDir: t.TempDir()})
		require.ErrorIs(t, err, ErrCorrupt)
		conn, err := parseDSN(dst)
		require.NoError(t, err)
		n, err := countUserObjects(testCtx(t), conn)
		require.NoError(t, err)
		require.Zero(t, n, "pg_restore never ran")
	})

	t.Run("DumpMismatchIsCaught", func(t *testing.T) {
		// Intact stream, dump bytes that do not match the dump's sum.
		c := newCrafter(t, KindPostgres)
		require.NoError(t, c.sw.data([]byte("PGDMP not what was summed")))
		require.NoError(t, c.sw.record(recSum, make([]byte, 32)))
		require.NoError(t, c.sw.finish(trailer{Files: 1, SourceBytes: 25}))
		dst := newDatabase(t, admin)
		spool := t.TempDir()
		_, err := RestorePostgres(testCtx(t), bytes.NewReader(c.buf.Bytes()), dst, RestoreOptions{TempDir: spool})
		require.ErrorIs(t, err, ErrCorrupt)
		require.Empty(t, listAll(t, spool), "the spooled dump is removed")
	})

	t.Run("CancelKillsPgDump", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		w := &countingWriter{}
		start := time.Now()
		_, err := WritePostgres(ctx, w, src, func(int64) { cancel() })
		require.ErrorIs(t, err, context.Canceled)
		require.Less(t, time.Since(start), 20*time.Second)
	})
}

func TestPostgresErrorsHideThePassword(t *testing.T) {
	t.Parallel()
	admin := postgresAdmin(t)
	const password = "s3cr3t-Pässwörd"
	u, err := url.Parse(admin)
	require.NoError(t, err)
	u.User = url.UserPassword("levqor_no_such_role", password)
	u.Path = "/levqor_no_such_database"
	q := u.Query()
	q.Set("connect_timeout", "5")
	u.RawQuery = q.Encode()

	dsns := map[string]string{
		"URL":          u.String(),
		"URLParameter": "postgres://" + u.Host + "/levqor_no_such_database?sslmode=disable&password=" + url.QueryEscape(password),
		"Keywords":     "host=" + u.Hostname() + " port=" + u.Port() + " dbname=levqor_no_such_database sslmode=disable password='" + password + "'",
		"Refused":      "postgres://someone:" + url.PathEscape(password) + "@127.0.0.1:1/db?sslmode=disable",
	}
	for name, dsn := range dsns {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			_, err := WritePostgres(testCtx(t), &buf, dsn, nil)
			require.Error(t, err)
			require.NotContains(t, err.Error(), password)
			require.NotContains(t, err.Error(), url.PathEscape(password))
			require.NotContains(t, err.Error(), url.QueryEscape(password))
			require.Contains(t, err.Error(), "pg_dump")
			_, _, verr := Verify(testCtx(t), bytes.NewReader(buf.Bytes()))
			require.ErrorIs(t, verr, ErrCorrupt, "what a failed dump wrote is not a valid archive")

			// A valid archive, so that the restore gets as far as the
			// database.
			_, err = RestorePostgres(testCtx(t), bytes.NewReader(newCrafter(t, KindPostgres).dump([]byte("PGDMP"))), dsn, RestoreOptions{})
			require.Error(t, err)
			require.Contains(t, err.Error(), "inspecting database")
			require.NotContains(t, err.Error(), password)
		})
	}
}

// Not parallel: it changes a package variable.
func TestMissingPgDump(t *testing.T) {
	old := PgDumpPath
	PgDumpPath = "/nonexistent/pg_dump"
	t.Cleanup(func() { PgDumpPath = old })
	_, err := WritePostgres(testCtx(t), &bytes.Buffer{}, "dbname=x", nil)
	require.ErrorContains(t, err, "finding pg_dump")
}

func TestParseDSN(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, dsn, arg, password string
	}{
		{"URL", "postgres://bob:p%40ss%2Fw@db.example:5432/app?sslmode=require", "postgres://bob@db.example:5432/app?sslmode=require", "p@ss/w"},
		{"URLNoPassword", "postgresql://bob@db/app", "postgresql://bob@db/app", ""},
		{"URLPasswordParameter", "postgres://db/app?password=a%26b&sslmode=disable", "postgres://db/app?sslmode=disable", "a&b"},
		{"URLPlusIsLiteral", "postgres://u:a+b@db/app", "postgres://u@db/app", "a+b"},
		{"URLAtInPassword", "postgres://u:p@ss@db/app", "postgres://u@db/app", "p@ss"},
		{"URLNoPath", "postgres://u:pw@db", "postgres://u@db", "pw"},
		{"KeywordsSpaced", "host=db  dbname = app password = pw user=u", "host='db' dbname='app' user='u'", "pw"},
		{"KeywordsQuoted", `host=db password='sp ace \'q\' \\b' dbname=app`, `host='db' dbname='app'`, `sp ace 'q' \b`},
		{"KeywordsBare", `password=bare dbname=app`, `dbname='app'`, "bare"},
		{"Name", "appdb", "appdb", ""},
	}
	t.Run("SSLPasswordIsMasked", func(t *testing.T) {
		for _, dsn := range []string{
			"postgres://u:pw@db/app?sslkey=/k&sslpassword=keyphrase%21",
			"host=db sslkey=/k sslpassword='keyphrase!' password=pw",
		} {
			c, err := parseDSN(dsn)
			require.NoError(t, err)
			require.Contains(t, c.arg, "sslpassword", "libpq still needs it")
			require.NotContains(t, c.display, "keyphrase")
			require.Equal(t, "pw", c.password)
			require.Equal(t, "error for xxxxx and xxxxx", c.redact("error for keyphrase! and pw"))
		}
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseDSN(tc.dsn)
			require.NoError(t, err)
			require.Equal(t, tc.arg, c.arg)
			require.Equal(t, tc.password, c.password)
			if tc.password != "" {
				require.NotContains(t, c.display, tc.password)
			}
		})
	}
	for _, bad := range []string{"", "  ", "host=db password='unterminated secret", "postgres://u:%zz@db/x", "=x",
		"password=secret", "host=db password='secret''s' x"} {
		_, err := parseDSN(bad)
		require.Error(t, err, "%q", bad)
		require.NotContains(t, err.Error(), "secret")
		require.NotContains(t, err.Error(), "%zz")
	}
}

// TestToolsGetACleanEnvironment: pg_dump and pg_restore see the DSN's
// password and nothing of the worker's environment: not Levqor's
// secrets, not libpq's variables, files or services that would change a
// customer's connection.
func TestToolsGetACleanEnvironment(t *testing.T) {
	t.Setenv("LEVQOR_BUS_KEY", "worker-secret")
	t.Setenv("PGHOST", "levqor-internal-db")
	t.Setenv("PGPASSWORD", "the-workers-own")
	c, err := parseDSN("postgres://app:s3cret@db.example:5432/shop")
	require.NoError(t, err)
	env := strings.Join(c.env(), "\n")
	require.NotContains(t, env, "worker-secret")
	require.NotContains(t, env, "levqor-internal-db")
	require.NotContains(t, env, "the-workers-own")
	require.Contains(t, env, "PGPASSWORD=s3cret")
	for _, v := range []string{"PGPASSFILE=" + os.DevNull, "PGSERVICEFILE=" + os.DevNull, "HOME=" + os.DevNull} {
		require.Contains(t, env, v)
	}
}
