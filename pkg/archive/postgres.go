package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The PostgreSQL client programs the postgres archives run: names looked
// up in PATH, or paths. Set them once at start-up (before any backup or
// restore runs) to use another installation, e.g. the client matching a
// newer server's major version.
var (
	// PgDumpPath is the pg_dump that WritePostgres runs.
	PgDumpPath = "pg_dump"
	// PgRestorePath is the pg_restore that RestorePostgres runs.
	PgRestorePath = "pg_restore"
	// PsqlPath is the psql that RestorePostgres runs to check that the
	// target database is empty.
	PsqlPath = "psql"
)

// toolWaitDelay bounds how long a killed client program may hold its
// output pipes open.
const toolWaitDelay = 10 * time.Second

// stderrKeep is how much of a client program's standard error an error
// message quotes (its end, where the reason is).
const stderrKeep = 4 << 10

// WritePostgres runs pg_dump --format=custom (uncompressed: the archive
// compresses) against the database dsn names and streams the dump,
// zstd-compressed and checksummed, to w. dsn is a libpq connection string,
// URL (postgres://…) or key=value form; its password is handed to pg_dump
// through PGPASSWORD, never on the command line, and never appears in an
// error (an sslpassword stays in the connection string, the only place
// libpq reads it, but is masked in errors too). Cancelling ctx kills
// pg_dump. On any error w holds an incomplete
// stream that Verify rejects; the caller discards it.
func WritePostgres(ctx context.Context, w io.Writer, dsn string, p Progress) (Manifest, error) {
	created := time.Now().UTC()
	var sw *streamWriter
	size, sum, err := dumpPostgres(ctx, dsn, p, func() error {
		var err error
		sw, err = newStreamWriter(w, KindPostgres, created)
		return err
	}, func(b []byte) error { return sw.data(b) })
	if err != nil {
		return Manifest{}, err
	}
	if err := sw.record(recSum, sum); err != nil {
		return Manifest{}, err
	}
	if err := sw.finish(trailer{Files: 1, SourceBytes: size}); err != nil {
		return Manifest{}, err
	}
	return Manifest{
		Kind:        KindPostgres,
		DumpSHA256:  hex.EncodeToString(sum),
		DumpSize:    size,
		SourceBytes: size,
		CreatedAt:   created,
	}, nil
}

// DumpPostgres runs pg_dump --format=custom --compress=0 against the
// database dsn names, as WritePostgres does, and writes the dump itself
// to w as it comes, for a store that compresses and checks it on its own
// (the backup repository). It returns the dump's size and SHA-256; an
// error means w holds an incomplete dump, to be discarded.
func DumpPostgres(ctx context.Context, w io.Writer, dsn string, p Progress) (int64, []byte, error) {
	return dumpPostgres(ctx, dsn, p, func() error { return nil }, func(b []byte) error {
		_, err := w.Write(b)
		return err
	})
}

// dumpPostgres runs pg_dump and hands its output, in pieces, to data
// (after start, once pg_dump runs); the dump is complete only if pg_dump
// exits cleanly.
func dumpPostgres(ctx context.Context, dsn string, p Progress, start func() error, data func([]byte) error) (int64, []byte, error) {
	conn, err := parseDSN(dsn)
	if err != nil {
		return 0, nil, err
	}
	bin, err := exec.LookPath(PgDumpPath)
	if err != nil {
		return 0, nil, fmt.Errorf("archive: finding pg_dump: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(runCtx, bin, "--format=custom", "--compress=0", "--no-password", "--dbname="+conn.arg)
	cmd.Env = conn.env()
	cmd.WaitDelay = toolWaitDelay
	stderr := &tailBuffer{max: stderrKeep}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, nil, fmt.Errorf("archive: starting pg_dump: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("archive: starting pg_dump: %w", err)
	}

	progress := newProgressTracker(p)
	h := sha256.New()
	var size int64
	copyErr := func() error {
		if err := start(); err != nil {
			return err
		}
		buf := make([]byte, writeChunk)
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			n, rerr := io.ReadFull(out, buf)
			if n > 0 {
				h.Write(buf[:n])
				if err := data(buf[:n]); err != nil {
					return err
				}
				size += int64(n)
				progress.add(int64(n))
			}
			if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
				break
			}
			if rerr != nil {
				return fmt.Errorf("archive: reading pg_dump output: %w", rerr)
			}
		}
		// The dump is complete only if pg_dump says so.
		if err := cmd.Wait(); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("archive: pg_dump of %s failed: %v: %s", conn.display, err, conn.redact(stderr.String()))
		}
		if size == 0 {
			return fmt.Errorf("archive: pg_dump of %s wrote nothing", conn.display)
		}
		return nil
	}()
	if copyErr != nil {
		cancel()
		_ = cmd.Wait()
		return 0, nil, copyErr
	}
	progress.finish()
	return size, h.Sum(nil), nil
}

// RestorePostgres restores a postgres archive from r into the existing
// database targetDSN names. It first spools the dump to a temporary file
// in opts.TempDir (on disk, never in memory), checking its SHA-256 and the
// stream's structure, and only then runs pg_restore --no-owner
// --no-privileges --single-transaction, so a damaged archive changes
// nothing and a failing restore is rolled back whole.
//
// A database that already holds tables, sequences, views, functions,
// types or schemas of its own is refused with ErrTargetNotEmpty unless
// opts.Overwrite is set; then pg_restore drops the archived objects before
// recreating them (--clean --if-exists) and leaves other objects alone.
// The DSN's password is handled as in WritePostgres.
func RestorePostgres(ctx context.Context, r io.Reader, targetDSN string, opts RestoreOptions) (Stats, error) {
	conn, err := parseDSN(targetDSN)
	if err != nil {
		return Stats{}, err
	}
	sr, err := openStream(ctx, r, opts.Progress)
	if err != nil {
		return Stats{}, err
	}
	defer sr.close()
	if sr.kind != KindPostgres {
		return Stats{}, fmt.Errorf("%w: a %s archive cannot be restored into a database", ErrKindMismatch, sr.kind)
	}
	return restoreDump(ctx, conn, sr, opts, func(err error) error {
		if sr.failedErr != nil {
			// Already told apart: damage, the source's error or ctx.
			return err
		}
		return fmt.Errorf("archive: spooling the dump: %w", err)
	}, sr.finish)
}

// RestorePostgresDump restores a dump as DumpPostgres wrote it, read from
// r, into the existing database targetDSN names, as RestorePostgres does:
// spooled to disk first, restored in one transaction, and a database
// that holds objects refused unless opts.Overwrite is set. An error
// reading r is returned as it is (wrapped), so the caller tells damage
// from other failures.
func RestorePostgresDump(ctx context.Context, r io.Reader, targetDSN string, opts RestoreOptions) (Stats, error) {
	conn, err := parseDSN(targetDSN)
	if err != nil {
		return Stats{}, err
	}
	return restoreDump(ctx, conn, r, opts, func(err error) error {
		return fmt.Errorf("archive: reading the dump: %w", err)
	}, func() error { return nil })
}

// restoreDump spools the dump r yields to a temporary file, has finish
// check it, and runs pg_restore on it; readErr words an error reading r.
func restoreDump(ctx context.Context, conn pgConn, r io.Reader, opts RestoreOptions, readErr func(error) error, finish func() error) (Stats, error) {
	restoreBin, err := exec.LookPath(PgRestorePath)
	if err != nil {
		return Stats{}, fmt.Errorf("archive: finding pg_restore: %w", err)
	}
	if !opts.Overwrite {
		n, err := countUserObjects(ctx, conn)
		if err != nil {
			return Stats{}, err
		}
		if n > 0 {
			return Stats{}, fmt.Errorf("%w: database %s holds %d objects", ErrTargetNotEmpty, conn.display, n)
		}
	}

	tmp, err := os.CreateTemp(opts.TempDir, "levqor-restore-*.dump")
	if err != nil {
		return Stats{}, fmt.Errorf("archive: spooling the dump: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	size, err := io.CopyBuffer(tmp, r, make([]byte, writeChunk))
	if err != nil {
		return Stats{}, readErr(err)
	}
	if err := finish(); err != nil {
		return Stats{}, err
	}
	if err := tmp.Close(); err != nil {
		return Stats{}, fmt.Errorf("archive: spooling the dump: %w", err)
	}

	args := []string{"--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error", "--no-password",
		"--dbname=" + conn.arg}
	if opts.Overwrite {
		args = append(args, "--clean", "--if-exists")
	}
	args = append(args, tmp.Name())
	if _, err := runTool(ctx, restoreBin, args, conn); err != nil {
		return Stats{}, fmt.Errorf("archive: pg_restore into %s failed: %w", conn.display, err)
	}
	return Stats{Files: 1, Bytes: size}, nil
}

// userObjectsSQL counts what a database holds beyond what CREATE DATABASE
// gives it: relations, functions and types in non-system schemas, and
// schemas other than public.
const userObjectsSQL = `SELECT
 (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%')
 + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%')
 + (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
     AND t.typrelid = 0 AND t.typelem = 0)
 + (SELECT count(*) FROM pg_namespace
   WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'public') AND nspname NOT LIKE 'pg\_%')`

func countUserObjects(ctx context.Context, conn pgConn) (int64, error) {
	bin, err := exec.LookPath(PsqlPath)
	if err != nil {
		return 0, fmt.Errorf("archive: finding psql: %w", err)
	}
	out, err := runTool(ctx, bin, []string{"-X", "-A", "-t", "-q", "--no-password", "-v", "ON_ERROR_STOP=1",
		"--dbname=" + conn.arg, "-c", userObjectsSQL}, conn)
	if err != nil {
		return 0, fmt.Errorf("archive: inspecting database %s: %w", conn.display, err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("archive: inspecting database %s: unexpected answer %q", conn.display, conn.redact(out))
	}
	return n, nil
}

// runTool runs a client program to completion and returns its standard
// output (expected small). Its error quotes the end of the program's
// standard error, with the password removed.
func runTool(ctx context.Context, bin string, args []string, conn pgConn) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = conn.env()
	cmd.WaitDelay = toolWaitDelay
	stdout := &tailBuffer{max: stderrKeep}
	stderr := &tailBuffer{max: stderrKeep}
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("%v: %s", err, conn.redact(strings.TrimSpace(stderr.String())))
	}
	return stdout.String(), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	b := t.buf
	if len(b) > t.max {
		b = b[len(b)-t.max:]
	}
	return string(bytes.TrimSpace(b))
}

// pgConn is a connection string split for safe use: arg has no password
// and goes on the command line; the password goes in the environment.
type pgConn struct {
	arg      string
	password string
	// display names the database in messages: arg with the value of
	// sslpassword (a client key's passphrase, which libpq takes from the
	// connection string only) masked.
	display string
	// secrets are the values no message may show: the password and any
	// sslpassword.
	secrets []string
}

// env is the whole environment of pg_dump, pg_restore and psql: the
// worker's own is not passed on. It holds Levqor's secrets (which the
// tools have no business reading), and libpq's PG* variables, a
// ~/.pgpass, a pg_service.conf or a PGSYSCONFDIR would add to, or
// redirect, a customer's connection. The connection is the DSN and
// nothing else.
func (c pgConn) env() []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"LC_ALL=C",
		"TZ=UTC",
		"HOME=" + os.DevNull,
		"PGPASSFILE=" + os.DevNull,
		"PGSERVICEFILE=" + os.DevNull,
		"PGSYSCONFDIR=" + os.DevNull,
	}
	if c.password != "" {
		env = append(env, "PGPASSWORD="+c.password)
	}
	return env
}

// redact removes the password, in any form it may have been written in,
// from a program's message.
func (c pgConn) redact(s string) string {
	for _, secret := range c.secrets {
		if secret == "" {
			continue
		}
		for _, form := range []string{secret, url.PathEscape(secret), url.QueryEscape(secret)} {
			s = strings.ReplaceAll(s, form, "xxxxx")
		}
	}
	return s
}

// parseDSN takes the password out of a libpq connection string: a URL
// (postgres:// or postgresql://, password in the user info or the password
// parameter), key=value pairs, or a bare database name. Its errors never
// quote the string.
func parseDSN(dsn string) (pgConn, error) {
	if strings.TrimSpace(dsn) == "" {
		return pgConn{}, errors.New("archive: a PostgreSQL connection string is required")
	}
	var c pgConn
	var err error
	switch {
	case strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://"):
		c, err = parseURLDSN(dsn)
	case strings.Contains(dsn, "="):
		c, err = parseKeywordDSN(dsn)
	default:
		c = pgConn{arg: dsn}
	}
	if err != nil {
		return pgConn{}, fmt.Errorf("archive: invalid PostgreSQL connection string: %w", err)
	}
	if c.display == "" {
		c.display = c.arg
	}
	if c.password != "" {
		c.secrets = append(c.secrets, c.password)
	}
	return c, nil
}

func parseURLDSN(dsn string) (pgConn, error) {
	i := strings.Index(dsn, "://") + 3
	scheme, rest := dsn[:i], dsn[i:]
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	var c pgConn
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		user := authority[:at]
		if colon := strings.IndexByte(user, ':'); colon >= 0 {
			pw, err := url.PathUnescape(user[colon+1:])
			if err != nil {
				return pgConn{}, errors.New("bad percent-encoding in the password")
			}
			c.password, user = pw, user[:colon]
		}
		authority = user + "@" + authority[at+1:]
	}
	shown := tail
	if q := strings.IndexByte(tail, '?'); q >= 0 {
		var kept, keptShown []string
		for _, kv := range strings.Split(tail[q+1:], "&") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "password":
				pw, err := url.PathUnescape(v)
				if err != nil {
					return pgConn{}, errors.New("bad percent-encoding in the password parameter")
				}
				c.password = pw
			case "sslpassword":
				if pw, err := url.PathUnescape(v); err == nil {
					c.secrets = append(c.secrets, pw)
				}
				c.secrets = append(c.secrets, v)
				kept = append(kept, kv)
				keptShown = append(keptShown, "sslpassword=xxxxx")
			default:
				kept = append(kept, kv)
				keptShown = append(keptShown, kv)
			}
		}
		tail, shown = tail[:q], tail[:q]
		if len(kept) > 0 {
			tail += "?" + strings.Join(kept, "&")
			shown += "?" + strings.Join(keptShown, "&")
		}
	}
	c.arg = scheme + authority + tail
	c.display = scheme + authority + shown
	return c, nil
}

// parseKeywordDSN handles libpq's key = value form: values bare or in
// single quotes, with backslash escaping a quote or a backslash.
func parseKeywordDSN(dsn string) (pgConn, error) {
	var c pgConn
	var parts, shown []string
	s := dsn
	for {
		s = strings.TrimLeft(s, " \t\n\r\f\v")
		if s == "" {
			break
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return pgConn{}, errors.New("expected key=value")
		}
		key := strings.TrimRight(s[:eq], " \t\n\r\f\v")
		if key == "" || strings.ContainsAny(key, " \t\n\r\f\v'\\") {
			return pgConn{}, errors.New("bad key")
		}
		s = strings.TrimLeft(s[eq+1:], " \t\n\r\f\v")
		var val strings.Builder
		if strings.HasPrefix(s, "'") {
			s = s[1:]
			closed := false
			for len(s) > 0 {
				ch := s[0]
				s = s[1:]
				if ch == '\\' && len(s) > 0 {
					val.WriteByte(s[0])
					s = s[1:]
					continue
				}
				if ch == '\'' {
					closed = true
					break
				}
				val.WriteByte(ch)
			}
			if !closed {
				return pgConn{}, errors.New("unterminated quoted value")
			}
		} else {
			for len(s) > 0 && !strings.ContainsRune(" \t\n\r\f\v", rune(s[0])) {
				ch := s[0]
				s = s[1:]
				if ch == '\\' && len(s) > 0 {
					ch = s[0]
					s = s[1:]
				}
				val.WriteByte(ch)
			}
		}
		if key == "password" {
			c.password = val.String()
			continue
		}
		quoted := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(val.String())
		parts = append(parts, key+"='"+quoted+"'")
		if key == "sslpassword" {
			c.secrets = append(c.secrets, val.String())
			shown = append(shown, key+"=xxxxx")
		} else {
			shown = append(shown, key+"='"+quoted+"'")
		}
	}
	if len(parts) == 0 {
		return pgConn{}, errors.New("no connection parameters besides the password")
	}
	c.arg = strings.Join(parts, " ")
	c.display = strings.Join(shown, " ")
	return c, nil
}
