package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/service"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/telemetry"
)

// Exit codes of the operator commands, on top of 0 (success), 1 (failure)
// and 2 (usage).
const (
	// ExitPartial means some items of a batch (replays, purges, published
	// events) succeeded and some failed: look at the output, fix, run
	// again.
	ExitPartial = 3
)

// ExitCode is the process exit code for a command's error: 0 for nil, 2
// for a usage error, the code an error carries (ExitPartial), else 1.
func ExitCode(err error) int {
	var coded interface{ ExitCode() int }
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrUsage):
		return 2
	case errors.As(err, &coded):
		return coded.ExitCode()
	default:
		return 1
	}
}

// exitError carries an exit code other than 1 to Main.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// ExitCode is the process exit code for the error.
func (e *exitError) ExitCode() int { return e.code }

// batchOutcome turns a batch's counts into the command's error: nil when
// nothing failed, ExitPartial when some items failed and some did not, a
// plain failure when every item failed.
func batchOutcome(what string, ok, failed int) error {
	switch {
	case failed == 0:
		return nil
	case ok > 0:
		return &exitError{code: ExitPartial, msg: fmt.Sprintf("%s: %d failed, %d succeeded", what, failed, ok)}
	default:
		return fmt.Errorf("%s: all %d failed", what, failed)
	}
}

// opsConnectTimeout bounds connecting to NATS and the database: an
// operator command fails fast rather than waiting for a server that is
// down.
const opsConnectTimeout = 15 * time.Second

// opsSession is what an operator command works with.
type opsSession struct {
	ops   *ops.Ops
	nc    *nats.Conn
	st    *store.Store
	actor string
}

func (s *opsSession) close() {
	if s.nc != nil {
		s.nc.Close()
	}
	if s.st != nil {
		_ = s.st.Close()
	}
}

// opsFlags are the flags every operator command shares.
type opsFlags struct {
	json  *bool
	actor *string
}

func addOpsFlags(fs *flag.FlagSet, opts Options, mutating bool) opsFlags {
	f := opsFlags{json: fs.Bool("json", false, "print JSON for scripts instead of tables")}
	if mutating {
		f.actor = fs.String("actor", defaultActor(opts), "who is acting, for the audit trail (default: $USER)")
	}
	return f
}

// addActorFlag adds --actor, who is acting, to a command that changes
// something an operator must be able to trace (`levqor audit`).
func addActorFlag(fs *cmdFlags, opts Options) *string {
	return fs.String("actor", defaultActor(opts), "who is acting, for the audit trail (default: $USER)")
}

// auditCLI records an operator action of a CLI tool in the audit trail of
// st (ops.Audit); warnings go to stderr.
func auditCLI(ctx context.Context, st *store.Store, stderr io.Writer, actor, action string, params, counts any, outcome string) error {
	log := logrus.New()
	log.Out = stderr
	log.Level = logrus.WarnLevel
	if counts == nil {
		counts = map[string]any{}
	}
	return ops.Audit(ctx, st, log, time.Now(), actor, action, params, counts, outcome)
}

// defaultActor is the operator's login: $USER, $LOGNAME, or the account
// the command runs as.
func defaultActor(opts Options) string {
	for _, k := range []string{"USER", "LOGNAME"} {
		if v := strings.TrimSpace(opts.Getenv(k)); v != "" {
			return v
		}
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "unknown"
}

// openOps connects to NATS (LEVQOR_NATS_URL, by default dev mode's
// embedded server at LEVQOR_DEV_NATS_ADDR) and the database
// (LEVQOR_DATABASE_URL, by default dev mode's SQLite file under
// LEVQOR_DATA_DIR), without migrating it.
func openOps(ctx context.Context, opts Options, stderr io.Writer, actor string) (*opsSession, error) {
	cfg, err := config.FromEnv(opts.Getenv)
	if err != nil {
		return nil, err
	}
	th, err := ops.ThresholdsFromEnv(opts.Getenv)
	if err != nil {
		return nil, err
	}
	if err := cfg.Topology.Validate(); err != nil {
		return nil, fmt.Errorf("LEVQOR_SUBJECT_PREFIX/LEVQOR_STREAM_REPLICAS: %w", err)
	}
	level := cfg.LogLevel
	log, err := telemetry.NewLogger(stderr, cfg.LogFormat, level)
	if err != nil {
		return nil, err
	}
	l := log.WithField("process", "levqor-cli")

	natsURL, natsOpts := cliNATS(cfg, opts)
	dbURL := cfg.DatabaseURL
	if dbURL == "" {
		path := filepath.Join(cfg.DataDir, "levqor.db")
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no database at %s: start `levqor dev` here, or set LEVQOR_DATABASE_URL (and LEVQOR_NATS_URL)", path)
		}
		dbURL = "sqlite:" + path
		if cfg.BusKey == "" {
			cfg.BusKey = devBusKey(opts)
		}
	}

	s := &opsSession{actor: actor}
	nc, err := nats.Connect(natsURL, append([]nats.Option{nats.Name("levqor-cli"), nats.Timeout(5 * time.Second)}, natsOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s (LEVQOR_NATS_URL): %w", natsURL, err)
	}
	s.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, opsConnectTimeout)
	defer cancel()
	st, err := store.Open(cctx, dbURL, quiet(log))
	if err != nil {
		s.close()
		return nil, fmt.Errorf("opening database (LEVQOR_DATABASE_URL): %w", err)
	}
	s.st = st
	// This connection is the operator's already (cliNATS): the tools
	// must not open a second one.
	cfg.NATSOperatorCreds, cfg.NATSOperatorUser, cfg.NATSOperatorPassword = "", "", ""
	env := &service.Env{Cfg: cfg, Log: l, Reg: prometheus.NewRegistry(), NC: nc, JS: js, Store: st}
	o, err := env.Ops(th)
	if err != nil {
		s.close()
		return nil, err
	}
	s.ops = o
	return s, nil
}

// quiet is log without its info lines: the store's connection chatter is
// not for an operator's terminal.
func quiet(log *logrus.Logger) logrus.FieldLogger {
	if log.IsLevelEnabled(logrus.InfoLevel) {
		q := logrus.New()
		q.Out, q.Formatter, q.Level = log.Out, log.Formatter, logrus.WarnLevel
		return q
	}
	return log
}

// timeFlag parses a time flag's value; empty gives the zero time.
func timeFlag(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := ops.ParseTime(v, time.Now())
	if err != nil {
		return time.Time{}, usageError("--%s: %v", name, err)
	}
	return t, nil
}

// opsError makes an ops error a command error: bad input is a usage error
// naming the flag.
func opsError(err error) error {
	var inv *ops.InvalidError
	if errors.As(err, &inv) {
		return usageError("--%s: %s", strings.ReplaceAll(inv.Field, "_", "-"), inv.Message)
	}
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// age writes a duration for people: 42s, 7m12s, 3h5m, 2d4h.
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		d = d.Round(time.Hour)
		return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

// stamp writes a time as RFC 3339 in UTC, to the second.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// ago writes when t was, as an age.
func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return age(time.Since(t)) + " ago"
}

// oneLine shortens s to one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	r := []rune(s)
	if len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// elide shortens s to one line of at most n runes by cutting its middle:
// a wrapped error starts with what failed and ends with why.
func elide(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	head := n / 3
	tail := n - head - 1
	return string(r[:head]) + "…" + string(r[len(r)-tail:])
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// progressBar draws a progress bar on w when w is a terminal, and returns
// nil (no progress reports) otherwise, so pipes and logs stay clean.
func progressBar(w io.Writer, label string) (ops.Progress, func()) {
	f, ok := w.(*os.File)
	if !ok {
		return nil, func() {}
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil, func() {}
	}
	var mu sync.Mutex
	var last time.Time
	drawn := false
	const width = 30
	draw := func(done, total int) {
		mu.Lock()
		defer mu.Unlock()
		if done < total && time.Since(last) < 100*time.Millisecond {
			return
		}
		last = time.Now()
		filled := width
		if total > 0 {
			filled = done * width / total
		}
		fmt.Fprintf(f, "\r%s [%s%s] %d/%d", label, strings.Repeat("=", filled), strings.Repeat(" ", width-filled), done, total)
		drawn = true
	}
	finish := func() {
		mu.Lock()
		defer mu.Unlock()
		if drawn {
			fmt.Fprintln(f)
		}
	}
	return draw, finish
}
