package backups

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/levqor/levqor/pkg/archive"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/store"
)

// Kinds of source that Levqor backs up itself, by a run. Every other kind
// is a record-only catalog entry whose snapshots an external agent
// records.
const (
	// KindDirectory is a directory tree on the worker's host: files,
	// permissions and modification times.
	KindDirectory = archive.KindDirectory
	// KindPostgres is a PostgreSQL database, dumped with pg_dump in its
	// custom format.
	KindPostgres = archive.KindPostgres
)

// RunnableKinds lists the kinds a run can back up.
var RunnableKinds = []string{KindDirectory, KindPostgres}

// Runnable reports whether sources of kind can be backed up by runs.
func Runnable(kind string) bool { return slices.Contains(RunnableKinds, kind) }

// Runs reports whether src is backed up by runs: a runnable kind with a
// config. A postgres source created without one stays a record-only
// catalog entry, as before runs existed, until an operator gives it one.
func Runs(src *store.BackupSource) bool { return Runnable(src.Kind) && len(src.Config) > 0 }

// PathsVariable names the allow-list of directories that directory
// sources and restores may use.
const PathsVariable = "LEVQOR_BACKUP_PATHS"

// SourceConfig is the settings of a runnable source: Path for a directory
// source, DSN for a postgres one. The DSN is a secret: it is stored, and
// shown only through Redacted.
type SourceConfig struct {
	// Path is the absolute path of the directory to back up; it must lie
	// under LEVQOR_BACKUP_PATHS.
	Path string `json:"path,omitempty"`
	// DSN is the connection string of the database to back up,
	// postgres://user:password@host:port/db?sslmode=….
	DSN string `json:"dsn,omitempty"`
}

// ParseConfig reads and checks the config of a source of kind: required
// for a runnable kind, refused for any other. Errors are 422
// *command.Errors naming the field ("config.path").
func ParseConfig(kind string, raw json.RawMessage, roots []string, protected ...string) (SourceConfig, error) {
	var c SourceConfig
	if !Runnable(kind) {
		if !isNull(raw) {
			return c, invalid("config", fmt.Sprintf("kind %s is a record-only catalog entry and takes no config; runnable kinds are %s", kind, strings.Join(RunnableKinds, " and ")))
		}
		return c, nil
	}
	if isNull(raw) {
		if kind == KindPostgres {
			return c, nil // a record-only catalog entry: an agent records its snapshots
		}
		return c, invalid("config", configHint(kind))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, invalid("config", "config must be an object: "+configHint(kind))
	}
	c.Path, c.DSN = strings.TrimSpace(c.Path), strings.TrimSpace(c.DSN)
	switch kind {
	case KindDirectory:
		if c.DSN != "" {
			return c, invalid("config.dsn", "a directory source takes config.path, not config.dsn")
		}
		if c.Path == "" {
			return c, invalid("config.path", configHint(kind))
		}
		clean, err := CheckPath("config.path", c.Path, roots, protected...)
		if err != nil {
			return c, err
		}
		c.Path = clean
	case KindPostgres:
		if c.Path != "" {
			return c, invalid("config.path", "a postgres source takes config.dsn, not config.path")
		}
		if keys.IsSealed(c.DSN) {
			// Sealed by the API once it had validated the DSN (the API
			// refuses a sealed DSN from a client); opened, and so
			// authenticated, where it is used.
			break
		}
		if err := ValidateDSN("config.dsn", c.DSN); err != nil {
			return c, err
		}
	}
	return c, nil
}

func configHint(kind string) string {
	if kind == KindDirectory {
		return `a directory source needs config.path: the absolute path of the directory to back up, e.g. {"path": "/srv/data"}`
	}
	return `a postgres source needs config.dsn: the connection string of the database, e.g. {"dsn": "postgres://backup:secret@db:5432/app?sslmode=require"}`
}

// SourceConfigOf decodes the stored config of src.
func SourceConfigOf(src *store.BackupSource) (SourceConfig, error) {
	var c SourceConfig
	if len(src.Config) == 0 {
		return c, fmt.Errorf("source %s (%s) has no config", src.ID, src.Kind)
	}
	if err := json.Unmarshal(src.Config, &c); err != nil {
		return c, fmt.Errorf("source %s: stored config: %w", src.ID, err)
	}
	return c, nil
}

// Redacted is the config as the API shows it: the DSN's password, and any
// password parameter, replaced by ***.
func (c SourceConfig) Redacted() SourceConfig {
	if c.DSN != "" {
		c.DSN = RedactDSN(c.DSN)
	}
	return c
}

// Redacted is a placeholder for secrets in what Levqor shows.
const Redacted = "***"

// RedactDSN returns dsn with its password (in the user info) and every
// parameter that can carry a secret (password, sslpassword, any name with
// "pass", "secret" or "token" in it) replaced by ***. A DSN that does not
// parse is replaced whole.
func RedactDSN(dsn string) string {
	if keys.IsSealed(dsn) {
		if shown := keys.Shown(dsn); shown != "" {
			return shown
		}
		return Redacted
	}
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return Redacted
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Redacted)
		}
	}
	q := u.Query()
	changed := false
	for k := range q {
		if secretParam(k) {
			q.Set(k, Redacted)
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return strings.Replace(u.String(), url.QueryEscape(Redacted), Redacted, -1)
}

// secretParam reports whether a connection parameter's value may be a
// secret.
func secretParam(name string) bool {
	n := strings.ToLower(name)
	return strings.Contains(n, "pass") || strings.Contains(n, "secret") || strings.Contains(n, "token")
}

// DSNParams are the parameters a source's DSN may carry after the URL's
// own user, password, host, port and database: TLS, and nothing that
// makes libpq read other files (passfile, service, servicefile), run
// options on the server (options) or change where it connects (host,
// hostaddr, port in the query). The TLS file parameters name files on the
// worker: only operators create runnable sources and set their config.
var DSNParams = []string{"sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "connect_timeout", "application_name"}

// ValidateDSN checks a PostgreSQL connection string: a postgres:// or
// postgresql:// URL naming a TCP host and a database, whose query holds
// only DSNParams. The message never repeats the DSN.
func ValidateDSN(field, dsn string) error {
	if dsn == "" {
		return invalid(field, field+" is required: postgres://user:password@host:5432/database")
	}
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return invalid(field, field+" must be a URL postgres://user:password@host:5432/database (key=value strings are not accepted)")
	}
	if u.Host == "" || strings.Trim(u.Path, "/") == "" {
		return invalid(field, field+" must name a host and a database: postgres://user:password@host:5432/database")
	}
	if strings.Contains(u.Host, ",") {
		return invalid(field, field+" must name one host (a list of hosts is not accepted)")
	}
	if strings.Contains(dsn, "#") {
		// libpq reads past a '#', which url.Parse takes for a fragment
		// and does not check: parameters could hide behind it.
		return invalid(field, field+" must not contain '#' (percent-encode it as %23 in a password)")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return invalid(field, field+" has a malformed query string")
	}
	for k := range q {
		if !slices.Contains(DSNParams, k) {
			return invalid(field, fmt.Sprintf("%s: the parameter %q is not accepted (allowed: %s)", field, k, strings.Join(DSNParams, ", ")))
		}
	}
	return nil
}

// scrub removes a DSN, and its password, from text bound for logs, run
// rows and command outcomes.
func scrub(text, dsn string) string {
	if dsn == "" {
		return text
	}
	text = strings.ReplaceAll(text, dsn, RedactDSN(dsn))
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && len(pw) >= 3 {
			text = strings.ReplaceAll(text, pw, Redacted)
		}
	}
	return text
}

// CheckPath checks that p is an absolute path under one of roots (the
// LEVQOR_BACKUP_PATHS allow-list) once cleaned and with its symbolic links
// resolved, as far as it exists: a link inside a root that points outside
// it does not pass; nor does a path that lies in, or holds, one of
// protected (Levqor's own data and blob directories). It returns the
// cleaned path. Errors are 422 *command.Errors naming field.
func CheckPath(field, p string, roots []string, protected ...string) (string, error) {
	if len(roots) == 0 {
		return "", invalid(field, fmt.Sprintf("directory backups and restores are disabled on this deployment: set %s to the comma-separated absolute directories they may use", PathsVariable))
	}
	if !filepath.IsAbs(p) {
		return "", invalid(field, field+" must be an absolute path")
	}
	if strings.ContainsRune(p, 0) {
		return "", invalid(field, field+" must not contain NUL")
	}
	clean := filepath.Clean(p)
	resolved, err := resolve(clean)
	if err != nil {
		return "", invalid(field, fmt.Sprintf("%s cannot be resolved: %v", field, errors.Unwrap(err)))
	}
	for _, root := range roots {
		r, err := resolve(filepath.Clean(root))
		if err != nil {
			continue
		}
		if within(resolved, r) {
			for _, own := range protected {
				if own == "" {
					continue
				}
				o, err := resolve(filepath.Clean(own))
				if err != nil {
					continue
				}
				if within(resolved, o) || within(o, resolved) {
					return "", invalid(field, fmt.Sprintf("%s overlaps Levqor's own data (%s): backing it up, or restoring into it, would read or overwrite Levqor's database, keys or backups", clean, own))
				}
			}
			return clean, nil
		}
	}
	return "", invalid(field, fmt.Sprintf("%s is not under %s (%s)", clean, PathsVariable, strings.Join(roots, ", ")))
}

// within reports whether path p is dir or lies under it (both resolved).
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, string(filepath.Separator))+string(filepath.Separator))
}

// resolve evaluates the symbolic links of the longest existing prefix of
// p and appends the rest.
func resolve(p string) (string, error) {
	rest := ""
	cur := p
	for {
		r, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(r, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// DevPaths is the allow-list dev mode uses when LEVQOR_BACKUP_PATHS is
// unset: the working directory and the OS temporary directory.
func DevPaths() []string {
	var out []string
	if wd, err := os.Getwd(); err == nil {
		out = append(out, wd)
	}
	return append(out, os.TempDir())
}

func forbidden(field, msg string) error {
	return command.Fail(http.StatusForbidden, "forbidden", field, msg)
}
