package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/people"
	"github.com/levqor/levqor/pkg/store"
)

func init() {
	registerGroup("user", "create | invite | list | disable the people who sign in to the console (writes the database directly)", userUsage,
		map[string]commandFunc{"create": runUserCreate, "invite": runUserInvite, "list": runUserList, "disable": runUserDisable})
}

const (
	userCreateUsage  = "user create --email <email> --role owner|member --account <acc_…> [--name <name>] [--json]   (password on standard input)\nuser create --email <email> --role operator [--name <name>] [--json]"
	userInviteUsage  = "user invite --email <email> --role owner|member --account <acc_…> [--json]"
	userListUsage    = "user list [--account <acc_…> | --operators] [--json]"
	userDisableUsage = "user disable <email | usr_…> [--json]"
	userUsage        = userCreateUsage + "\n" + userInviteUsage + "\n" + userListUsage + "\n" + userDisableUsage
)

// ConsolePath is where ingest and dev mode serve the console.
const ConsolePath = "/app/"

const userCreateAbout = "Creates a user who signs in to the console at LEVQOR_PUBLIC_URL/app/ with email and password. " +
	"The password is read from standard input (its first line), never from an argument, so that it stays out of the shell's history and the process list: " +
	"`levqor user create --email ada@example.com --role operator < password-file`, or type it at the prompt. " +
	"It needs at least 12 characters. Audited."

func runUserCreate(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("user create", userCreateUsage, stdout, envOf(envStore, []string{"USER"})...).describe(userCreateAbout)
	actor := addActorFlag(fs, opts)
	email := fs.String("email", "", "the user's email, with which they sign in")
	name := fs.String("name", "", "the user's name, as the console shows it")
	role := fs.String("role", "", "owner or member of --account, or operator (staff: every account)")
	account := fs.String("account", "", "the account an owner or member belongs to (acc_…)")
	asJSON := fs.Bool("json", false, "print the new user as JSON")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	if *email == "" || *role == "" {
		return usageError("user create needs --email and --role")
	}
	in := opts.Stdin
	if in == nil {
		in = os.Stdin
		if fi, err := os.Stdin.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(stderr, "Password (at least 12 characters; it is echoed, prefer `< file`): ")
		}
	}
	password, err := readPassword(in)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, apikeyTimeout)
	defer cancel()
	st, p, err := openPeople(ctx, stderr, opts)
	if err != nil {
		return err
	}
	defer st.Close()
	u, err := p.CreateUser(ctx, people.NewUser{Email: *email, Name: *name, Role: *role, AccountID: *account, Password: password})
	if err != nil {
		return userFlagError(err)
	}
	if err := auditCLI(ctx, st, stderr, *actor, ops.ActionUserCreate,
		map[string]any{"user_id": u.ID, "role": u.Role, "account_id": u.AccountID}, nil, store.AuditOutcomeOK); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, u)
	}
	fmt.Fprintf(stdout, "Created %s %s (%s).\nSign in at %s\n", roleText(u), u.Email, u.ID, consoleURL(opts, "signin"))
	return nil
}

// readPassword reads the first line of in, without its line ending.
func readPassword(in io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(in, people.PasswordMaxBytes+2)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password from standard input: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("password: none on standard input (its first line is the password)")
	}
	if err := people.CheckPasswordPolicy(line); err != nil {
		return "", err
	}
	return line, nil
}

func runUserInvite(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("user invite", userInviteUsage, stdout, envOf(envStore, []string{"LEVQOR_PUBLIC_URL", "USER"})...).
		describe("Makes an invitation link for a person to join an account; it works once, for 7 days. Send the link to them: they choose their name and password on it. Audited.")
	actor := addActorFlag(fs, opts)
	email := fs.String("email", "", "the invited person's email")
	role := fs.String("role", "", "owner or member")
	account := fs.String("account", "", "the account they join (acc_…)")
	asJSON := fs.Bool("json", false, "print the invitation as JSON")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	if *email == "" || *role == "" || *account == "" {
		return usageError("user invite needs --email, --role and --account")
	}
	if *role == store.RoleOperator {
		return usageError("--role: operators are created with `levqor user create`, not invited")
	}
	ctx, cancel := context.WithTimeout(ctx, apikeyTimeout)
	defer cancel()
	st, p, err := openPeople(ctx, stderr, opts)
	if err != nil {
		return err
	}
	defer st.Close()
	secret, l, err := p.Invite(ctx, *email, *role, *account, "cli:"+*actor)
	if err != nil {
		return userFlagError(err)
	}
	if err := auditCLI(ctx, st, stderr, *actor, ops.ActionUserInvite,
		map[string]any{"role": l.Role, "account_id": l.AccountID}, nil, store.AuditOutcomeOK); err != nil {
		return err
	}
	link := consoleURL(opts, "invite/"+url.PathEscape(secret))
	if *asJSON {
		return printJSON(stdout, map[string]any{"email": l.Email, "role": l.Role, "account_id": l.AccountID, "link": link, "expires_at": l.ExpiresAt})
	}
	fmt.Fprintf(stdout, "Invitation for %s (%s of %s), valid until %s:\n\n  %s\n\nIt works once; send it to them.\n",
		l.Email, l.Role, l.AccountID, l.ExpiresAt.Format(time.RFC3339), link)
	return nil
}

func runUserList(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("user list", userListUsage, stdout, envStore...)
	account := fs.String("account", "", "only this account's users")
	operators := fs.Bool("operators", false, "only operators")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	if *operators && *account != "" {
		return usageError("user list takes --account or --operators, not both")
	}
	ctx, cancel := context.WithTimeout(ctx, apikeyTimeout)
	defer cancel()
	st, err := openKeyStore(ctx, stderr, opts)
	if err != nil {
		return err
	}
	defer st.Close()
	users, err := st.ListUsers(ctx, *account, *operators)
	if err != nil {
		return schemaHint(err)
	}
	if *asJSON {
		return printJSON(stdout, users)
	}
	if len(users) == 0 {
		fmt.Fprintln(stdout, "no users")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEMAIL\tNAME\tROLE\tACCOUNT\tLAST SIGN-IN\tSTATUS")
	for _, u := range users {
		status := "active"
		if u.DisabledAt != nil {
			status = "disabled " + u.DisabledAt.Format(time.RFC3339)
		} else if u.LockedUntil != nil && u.LockedUntil.After(time.Now()) {
			status = "locked until " + u.LockedUntil.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", u.ID, u.Email, dash(u.Name), u.Role, dash(u.AccountID), timeOrDash(u.LastSigninAt), status)
	}
	return tw.Flush()
}

func runUserDisable(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("user disable", userDisableUsage, stdout, envOf(envStore, []string{"USER"})...).
		describe("Disables a user: they cannot sign in, and every session of theirs ends at once. Audited.")
	actor := addActorFlag(fs, opts)
	asJSON := fs.Bool("json", false, "print the user as JSON")
	rest, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usageError("user disable takes one email or user id (usr_…)")
	}
	ctx, cancel := context.WithTimeout(ctx, apikeyTimeout)
	defer cancel()
	st, err := openKeyStore(ctx, stderr, opts)
	if err != nil {
		return err
	}
	defer st.Close()
	var u *store.User
	if strings.HasPrefix(rest[0], "usr_") {
		u, err = st.UserByID(ctx, rest[0])
	} else {
		u, err = st.UserByEmail(ctx, rest[0])
	}
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no user %s (see `levqor user list`)", rest[0])
	}
	if err != nil {
		return schemaHint(err)
	}
	if u, err = st.DisableUser(ctx, u.ID, time.Time{}); err != nil {
		return err
	}
	if err := auditCLI(ctx, st, stderr, *actor, ops.ActionUserDisable, map[string]any{"user_id": u.ID}, nil, store.AuditOutcomeOK); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, u)
	}
	fmt.Fprintf(stdout, "Disabled %s (%s): they cannot sign in, and their sessions have ended.\n", u.Email, u.ID)
	return nil
}

// openPeople opens the store (openKeyStore) and People on it.
func openPeople(ctx context.Context, stderr io.Writer, opts Options) (*store.Store, *people.People, error) {
	st, err := openKeyStore(ctx, stderr, opts)
	if err != nil {
		return nil, nil, err
	}
	log := logrus.New()
	log.Out = stderr
	log.Level = logrus.WarnLevel
	p, err := people.New(people.Config{Store: st, Logger: log})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, p, nil
}

// userFlagError names the flag of a field error.
func userFlagError(err error) error {
	var fe *people.FieldError
	if errors.As(err, &fe) {
		return fmt.Errorf("--%s: %s", fe.Field, fe.Message)
	}
	return schemaHint(err)
}

func roleText(u *store.User) string {
	if u.Role == store.RoleOperator {
		return "operator"
	}
	return u.Role + " of " + u.AccountID
}

// consoleURL is the console's page at path under LEVQOR_PUBLIC_URL, or
// under dev mode's default address when it is not set.
func consoleURL(opts Options, path string) string {
	base := "http://127.0.0.1:8080"
	if cfg, err := config.FromEnv(opts.Getenv); err == nil && cfg.PublicURL != "" {
		base = cfg.PublicURL
	}
	return strings.TrimRight(base, "/") + ConsolePath + path
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
