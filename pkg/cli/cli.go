// Package cli is the `levqor` command: dev mode, the production processes,
// migrations and operator tools. Run is callable from tests with its own
// arguments and output streams.
package cli

import (
	"context"
	"errors"
	"flag"
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
	switch cmd {
	case "dev", "ingest", "workers", "scheduler", "migrate":
		return runProcess(ctx, cmd, rest, stdout, stderr, opts)
	case "webhook":
		return runWebhook(ctx, rest, stdout, stderr, opts)
	case "probe":
		return runProbe(ctx, rest, stdout)
	}
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

// usageText is the usage with every registered command listed.
func usageText() string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
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

func runProcess(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	workers := fs.String("workers", "", "workers to run, comma-separated: "+strings.Join(service.Workers, ",")+" (default LEVQOR_WORKERS or all)")
	if err := fs.Parse(args); err != nil {
		return usageError("%v", err)
	}
	if fs.NArg() > 0 {
		return usageError("%s takes no arguments, got %q", cmd, fs.Args())
	}
	cfg, err := config.FromEnv(opts.Getenv)
	if err != nil {
		return err
	}
	if *workers != "" {
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
