package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	apicommand "github.com/levqor/levqor/pkg/command"
)

// errHelpShown means a command answered --help: RunWith reports success
// (exit 0), as for `levqor help`.
var errHelpShown = errors.New("help shown")

// envHelp describes the environment variables commands read, for their
// --help. Every name a command lists must be here (a test checks).
var envHelp = map[string]string{
	"WEBHOOK_SECRET":          "the webhook endpoint's signing secret (whsec_…), as creating or rotating the endpoint showed it",
	"LEVQOR_DATABASE_URL":     "the database (postgres://… or sqlite:…); default: dev mode's SQLite file under LEVQOR_DATA_DIR",
	"LEVQOR_DATA_DIR":         "dev mode's data directory, holding its database and secrets (default .levqor)",
	"LEVQOR_NATS_URL":         "the NATS server; default: dev mode's embedded server at LEVQOR_DEV_NATS_ADDR",
	"LEVQOR_DEV_NATS_ADDR":    "dev mode's embedded NATS address (default 127.0.0.1:4223)",
	"LEVQOR_SUBJECT_PREFIX":   "the subject prefix of this deployment (default levqor)",
	"LEVQOR_HTTP_ADDR":        "ingest's address, the default of --url (default 127.0.0.1:8080)",
	"LEVQOR_API_KEY":          "the API key, when --key is not given",
	"LEVQOR_ADMIN_TOKEN":      "dev mode's operator token, used when no key is given",
	"LEVQOR_CATALOG":          "the product catalog file (default: the shipped example)",
	"LEVQOR_SCHEDULE":         "job schedule overrides, e.g. billing.reconcile=off",
	"LEVQOR_CATCHUP_WINDOW":   "how far back missed slots are published (default 6h)",
	"LEVQOR_LOG_LEVEL":        "log level: debug, info, warn, error (default info)",
	"LEVQOR_LOG_FORMAT":       "log format: text or json",
	"LEVQOR_LAG_THRESHOLD":    "pending messages above which a consumer is lagging",
	"LEVQOR_STUCK_AGE":        "how long a message may stay unacknowledged before its consumer is stuck",
	"LEVQOR_STUCK_DELIVERIES": "deliveries after which a failing message makes its consumer stuck",
	"STRIPE_API_KEY":          "the Stripe secret key (sk_…)",
	"STRIPE_API_BASE":         "replaces https://api.stripe.com, e.g. stripe-mock at http://127.0.0.1:12111",
	"STRIPE_WEBHOOK_SECRET":   "the webhook signing secret(s), comma-separated; default: dev mode's, from LEVQOR_DATA_DIR",
	"USER":                    "who is acting, for the audit trail (the default of --actor)",
	"LEVQOR_WORKERS":          "the workers a process runs, comma-separated (default all)",
	"LEVQOR_ADMIN_ADDR":       "the workers' and scheduler's admin address: /healthz, /readyz, /metrics",
	"SENTRY_DSN":              "report error-level log entries and recovered panics to this Sentry-compatible endpoint, secrets redacted",
	"LEVQOR_*, STRIPE_*":      "every other setting: see the README's Configuration section",
	"LEVQOR_PUBLIC_URL":       "where people reach Levqor (https://…): the base of the console links printed and emailed; default http://127.0.0.1:8080",
	"LEVQOR_MASTER_KEYS":      "the master keys, comma-separated: they seal stored secrets and wrap accounts' data keys; the first seals, every one opens",
	"LEVQOR_BLOB_DIR":         "the workers' local blob store, where backups and self-backups are (dev mode: LEVQOR_DATA_DIR/blobs)",
	"LEVQOR_BLOB_S3_*":        "the S3-compatible blob store instead (LEVQOR_BLOB_S3_ENDPOINT, _BUCKET, _ACCESS_KEY, _SECRET_KEY, …)",
}

// Environment variables commands share.
var (
	envStore  = []string{"LEVQOR_DATABASE_URL", "LEVQOR_DATA_DIR"}
	envBus    = []string{"LEVQOR_NATS_URL", "LEVQOR_DEV_NATS_ADDR", "LEVQOR_SUBJECT_PREFIX"}
	envAPI    = []string{"LEVQOR_HTTP_ADDR", "LEVQOR_API_KEY", "LEVQOR_ADMIN_TOKEN", "LEVQOR_DATA_DIR"}
	envStripe = []string{"STRIPE_API_KEY", "STRIPE_API_BASE"}
	envOps    = envOf(envBus, envStore, []string{"LEVQOR_LAG_THRESHOLD", "LEVQOR_STUCK_AGE", "LEVQOR_STUCK_DELIVERIES"})
	// envProcess is what the long-running processes read: the main
	// addresses, then a pointer to the full list.
	envProcess = []string{"LEVQOR_DATABASE_URL", "LEVQOR_NATS_URL", "LEVQOR_DATA_DIR", "LEVQOR_HTTP_ADDR",
		"LEVQOR_ADMIN_ADDR", "LEVQOR_WORKERS", "STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET", "SENTRY_DSN", "LEVQOR_*, STRIPE_*"}
)

// envOf joins groups of variable names, without repeats.
func envOf(groups ...[]string) []string {
	var out []string
	for _, g := range groups {
		for _, name := range g {
			if !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	return out
}

// cmdFlags is one command's flags and the help --help prints: its
// synopsis, its flags with their defaults, and the environment variables
// it reads. Every command parses through it, so every command answers
// --help the same way (usage on standard output, exit 0) and every bad flag
// is a usage error (exit 2).
type cmdFlags struct {
	*flag.FlagSet
	synopsis string
	about    string
	env      []string
	stdout   io.Writer
}

// describe sets the paragraph --help prints under the usage.
func (f *cmdFlags) describe(about string) *cmdFlags {
	f.about = about
	return f
}

// newFlags returns the flags of `levqor <name>`; synopsis is its usage
// line(s) without the leading "levqor ".
func newFlags(name, synopsis string, stdout io.Writer, env ...string) *cmdFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, help is printed by parse
	fs.Usage = func() {}
	return &cmdFlags{FlagSet: fs, synopsis: synopsis, env: env, stdout: stdout}
}

// parse parses flags given before, between or after the positional
// arguments, and returns the positional ones. -h or --help prints the help
// and returns errHelpShown.
func (f *cmdFlags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.FlagSet.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				f.printHelp()
				return nil, errHelpShown
			}
			return nil, usageError("%s: %v (see `levqor %s --help`)", f.Name(), err, f.Name())
		}
		args = f.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "help" && len(pos) == 0 && len(args) == 1 {
			f.printHelp()
			return nil, errHelpShown
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// parseNone parses args, which must hold flags only.
func (f *cmdFlags) parseNone(args []string) error {
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("%s takes no arguments, got %q (see `levqor %s --help`)", f.Name(), pos, f.Name())
	}
	return nil
}

// parseID parses args holding exactly one id of prefix ("src_") and
// flags; what names the id ("source"). A malformed id is a usage error
// that says it is malformed.
func (f *cmdFlags) parseID(args []string, prefix, what string) (string, error) {
	pos, err := f.parse(args)
	if err != nil {
		return "", err
	}
	switch {
	case len(pos) == 0:
		return "", usageError("%s: give the %s id (%s…)", f.Name(), what, prefix)
	case len(pos) > 1:
		return "", usageError("%s: one %s, got %q", f.Name(), what, pos)
	case !apicommand.ValidID(pos[0], prefix):
		return "", usageError("%s: %q is not a well-formed %s id: want %s followed by 26 letters and digits", f.Name(), pos[0], what, prefix)
	}
	return pos[0], nil
}

// printHelp writes the usage, the flags and the environment variables.
func (f *cmdFlags) printHelp() {
	w := f.stdout
	fmt.Fprintln(w, "Usage:")
	for _, line := range strings.Split(f.synopsis, "\n") {
		fmt.Fprintf(w, "  levqor %s\n", line)
	}
	if f.about != "" {
		fmt.Fprintf(w, "\n%s\n", f.about)
	}
	hasFlags := false
	f.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprintln(w, "\nFlags:")
		f.SetOutput(w)
		f.PrintDefaults()
		f.SetOutput(io.Discard)
	}
	printEnv(w, f.env)
}

// printEnv writes the environment section of a help text.
func printEnv(w io.Writer, env []string) {
	if len(env) == 0 {
		fmt.Fprintln(w, "\nEnvironment: none")
		return
	}
	fmt.Fprintln(w, "\nEnvironment:")
	width := 0
	for _, name := range env {
		width = max(width, len(name))
	}
	for _, name := range env {
		fmt.Fprintf(w, "  %-*s  %s\n", width, name, envHelp[name])
	}
}

// group is a command made of subcommands, such as `levqor apikey create`.
type group struct {
	name  string
	usage string
	subs  map[string]commandFunc
}

// run dispatches args to a subcommand. No arguments is a usage error;
// -h, --help or help prints the group's usage (exit 0); an unknown
// subcommand is a usage error listing the known ones.
func (g group) run(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	if len(args) == 0 {
		return usageError("%s needs a subcommand:\n%s", g.name, g.usageText())
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(stdout, "Usage:\n%s\nRun `levqor %s <subcommand> --help` for one subcommand's flags and environment.\n", g.usageText(), g.name)
		return errHelpShown
	}
	sub, ok := g.subs[args[0]]
	if !ok {
		return usageError("unknown %s subcommand %q; subcommands: %s", g.name, args[0], strings.Join(g.names(), ", "))
	}
	return sub(ctx, args[1:], stdout, stderr, opts)
}

func (g group) usageText() string {
	var b strings.Builder
	for _, line := range strings.Split(g.usage, "\n") {
		fmt.Fprintf(&b, "  levqor %s\n", line)
	}
	return b.String()
}

func (g group) names() []string {
	names := make([]string, 0, len(g.subs))
	for n := range g.subs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// registerGroup registers a command made of subcommands; usage has one
// line per subcommand, without "levqor ".
func registerGroup(name, help, usage string, subs map[string]commandFunc) {
	g := group{name: name, usage: usage, subs: subs}
	register(name, help, g.run)
	groups[name] = g
}

// groups holds the registered commands made of subcommands, for
// CommandLines.
var groups = map[string]group{}

// CommandLines lists every command and subcommand as the words that run
// it, e.g. ["apikey", "create"], ["status"], ["dev"]: what a test walks
// to check that every one answers --help and refuses a bad flag alike.
func CommandLines() [][]string {
	var out [][]string
	for name := range commands {
		if g, ok := groups[name]; ok {
			for _, sub := range g.names() {
				out = append(out, []string{name, sub})
			}
			continue
		}
		out = append(out, []string{name})
	}
	slices.SortFunc(out, func(a, b []string) int { return strings.Compare(strings.Join(a, " "), strings.Join(b, " ")) })
	return out
}
