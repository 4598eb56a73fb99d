// Package cli is the `levqor` command: dev mode, the production processes,
// migrations and operator tools. Run is callable from tests with its own
// arguments and output streams.
package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/service"
	"github.com/levqor/levqor/pkg/telemetry"
)

// ErrUsage marks a command line that could not be understood; the command
// exits with status 2 on it.
var ErrUsage = errors.New("usage")

// usageError wraps msg so errors.Is(err, ErrUsage) holds.
func usageError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

const usage = `levqor — Levqor's event backbone

Usage:
  levqor dev                          run everything locally (embedded NATS + SQLite)
  levqor ingest | workers | scheduler run one production process (see README for env)
  levqor migrate                      apply database migrations and exit
  levqor webhook send <type> [flags]  sign and send a test Stripe event
  levqor webhook types                list the event types webhook send knows
  levqor probe <url>                  exit 0 if url answers 2xx (container healthchecks)

Configuration comes from LEVQOR_* and STRIPE_* environment variables.
Every command answers --help with its usage, flags and the variables it
reads. Exit codes: 0 done, 1 failed, 2 usage error, 3 found something wrong
(status, stuck) or some items of a batch failed.
`

// Options are the process-wide inputs of Run.
type Options struct {
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
	// DevReady is passed to dev mode (tests).
	DevReady func(service.DevInfo)
	// Stdin is what commands read for a "-" file argument; nil means
	// os.Stdin.
	Stdin io.Reader
}

// Run executes the command line args (without the program name).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return RunWith(ctx, args, stdout, stderr, Options{})
}

// RunWith is Run with options.
func RunWith(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	err := runWith(ctx, args, stdout, stderr, opts)
	if errors.Is(err, errHelpShown) {
		return nil
	}
	return err
}

func runWith(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, usageText())
		if len(args) == 0 {
			return usageError("no command given")
		}
		return nil
	}
	cmd, rest := args[0], args[1:]
	if c, ok := commands[cmd]; ok {
		return c.run(ctx, rest, stdout, stderr, opts)
	}
	fmt.Fprint(stderr, usageText())
	return usageError("unknown command %q", cmd)
}

// commandFunc runs one top-level command with the arguments after its name.
type commandFunc func(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error

type command struct {
	run  commandFunc
	help string
	// core commands are in the usage's first lines, not under "More
	// commands".
	core bool
}

// commands holds the operator and tool commands; each lives in its own
// file and registers itself from init, so adding one touches no other file.
var commands = map[string]command{}

// register adds a top-level command; help is its line in `levqor help`.
func register(name, help string, run commandFunc) {
	if _, dup := commands[name]; dup {
		panic("cli: command registered twice: " + name)
	}
	commands[name] = command{run: run, help: help}
}

func init() {
	for _, name := range []string{"dev", "ingest", "workers", "scheduler", "migrate"} {
		commands[name] = command{run: processCommand(name), core: true}
	}
	registerGroup("webhook", "", "webhook send <event type> [flags]\nwebhook types\nwebhook listen [flags]", map[string]commandFunc{
		"send": runWebhookSend, "types": runWebhookTypes, "listen": runWebhookListen,
	})
	commands["webhook"] = command{run: commands["webhook"].run, core: true}
	commands["probe"] = command{run: runProbe, core: true}
}

// usageText is the usage with every registered command listed.
func usageText() string {
	names := make([]string, 0, len(commands))
	for n, c := range commands {
		if !c.core {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(usage)
	if len(names) > 0 {
		b.WriteString("\nMore commands:\n")
		for _, n := range names {
			fmt.Fprintf(&b, "  levqor %-28s %s\n", n, commands[n].help)
		}
	}
	return b.String()
}

// processSynopsis is each process command's usage line.
var processSynopsis = map[string]string{
	"dev":       "dev [--workers w,…]    run everything locally (embedded NATS + SQLite)",
	"ingest":    "ingest                 run the ingest process",
	"workers":   "workers [--workers w,…] run the workers process",
	"scheduler": "scheduler              run the scheduler process",
	"migrate":   "migrate                apply database migrations and exit",
}

// processCommand runs one of the processes (or migrate) until ctx ends.
func processCommand(cmd string) commandFunc {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
		return runProcess(ctx, cmd, args, stdout, stderr, opts)
	}
}

func runProcess(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer, opts Options) error {
	f := newFlags(cmd, processSynopsis[cmd], stdout, envProcess...)
	var workers *string
	if cmd == "dev" || cmd == "workers" {
		workers = f.String("workers", "", "workers to run, comma-separated: "+strings.Join(service.Workers, ",")+" (default LEVQOR_WORKERS or all)")
	}
	if err := f.parseNone(args); err != nil {
		return err
	}
	cfg, err := config.FromEnv(opts.Getenv)
	if err != nil {
		return err
	}
	if workers != nil && *workers != "" {
		cfg.Workers = strings.Split(*workers, ",")
	}
	format := cfg.LogFormat
	if cmd != "dev" && opts.Getenv("LEVQOR_LOG_FORMAT") == "" {
		format = "json" // production processes log JSON unless told otherwise
	}
	log, err := telemetry.NewLogger(stderr, format, cfg.LogLevel)
	if err != nil {
		return err
	}
	v := Version()
	flush, err := telemetry.ReportErrors(log, cfg.SentryDSN, cfg.SentryEnvironment, "levqor@"+cmp.Or(v.Commit, v.Module))
	if err != nil {
		return err
	}
	defer flush()
	stopTracing, err := telemetry.StartTracing(ctx, "levqor-"+cmd, opts.Getenv)
	if err != nil {
		return err
	}
	defer func() {
		if err := stopTracing(context.WithoutCancel(ctx)); err != nil {
			log.WithError(err).Warn("tracing: flushing the last spans failed")
		}
	}()
	l := log.WithField("process", cmd)
	switch cmd {
	case "dev":
		return service.RunDev(ctx, cfg, l, stdout, service.DevOptions{Ready: opts.DevReady})
	case "ingest":
		return service.RunIngest(ctx, cfg, l)
	case "workers":
		return service.RunWorkers(ctx, cfg, l)
	case "scheduler":
		return service.RunScheduler(ctx, cfg, l)
	default:
		if err := service.Migrate(ctx, cfg, l); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "migrations applied")
		return nil
	}
}

// Main is what cmd/* mains call: it runs args under a signal-aware context
// and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := Run(ctx, args, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "levqor:", err)
	}
	return ExitCode(err)
}
