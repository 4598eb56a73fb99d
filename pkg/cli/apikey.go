package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/store"
)

func init() {
	registerGroup("apikey", "create | list | revoke API keys (writes the database directly)", apikeyUsage, map[string]commandFunc{
		"create": runAPIKeyCreate, "list": runAPIKeyList, "revoke": runAPIKeyRevoke,
	})
}

// apikeyTimeout bounds reaching the database.
const apikeyTimeout = 30 * time.Second

const (
	apikeyCreateUsage = "apikey create --account <acc_…> | --operator [--name <label>] [-q | --json]"
	apikeyListUsage   = "apikey list [--account <acc_…> | --operator] [--all] [--json]"
	apikeyRevokeUsage = "apikey revoke <key_…> [--json]"
	apikeyUsage       = apikeyCreateUsage + "\n" + apikeyListUsage + "\n" + apikeyRevokeUsage
)

// openKeyStore opens the database the keys live in: LEVQOR_DATABASE_URL,
// or dev mode's SQLite file under LEVQOR_DATA_DIR. It does not migrate: a
// database without the API tables is reported, not changed.
func openKeyStore(ctx context.Context, stderr io.Writer, opts Options) (*store.Store, error) {
	cfg, err := config.FromEnv(opts.Getenv)
	if err != nil {
		return nil, err
	}
	u := cfg.DatabaseURL
	if u == "" {
		path := filepath.Join(cfg.DataDir, "levqor.db")
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("no database: set LEVQOR_DATABASE_URL, or start `levqor dev` once so that %s exists (LEVQOR_DATA_DIR)", path)
		}
		u = "sqlite:" + path
	}
	log := logrus.New()
	log.Out = stderr
	log.Level = logrus.WarnLevel
	st, err := store.Open(ctx, u, log)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// schemaHint explains a missing table, the sign of an unmigrated database.
func schemaHint(err error) error {
	msg := err.Error()
	if strings.Contains(msg, "no such table") || strings.Contains(msg, "does not exist") {
		return fmt.Errorf("%w (is the database migrated? run `levqor migrate`)", err)
	}
	return err
}

func runAPIKeyCreate(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("apikey create", apikeyCreateUsage, stdout, envOf(envStore, []string{"USER"})...)
	actor := addActorFlag(fs, opts)
	account := fs.String("account", "", "the account the key belongs to (acc_…)")
	operator := fs.Bool("operator", false, "an operator key: sees every account and may use /admin")
	name := fs.String("name", "", "a label for listings, e.g. who or what uses the key")
	quiet := fs.Bool("q", false, "print only the key (for scripts: KEY=$(levqor apikey create … -q))")
	asJSON := fs.Bool("json", false, "print the new key as JSON")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	if *operator == (*account != "") {
		return usageError("apikey create needs exactly one of --account <acc_…> or --operator")
	}
	if len(*name) > 200 {
		return usageError("--name is longer than 200 characters")
	}
	ctx, cancel := context.WithTimeout(ctx, apikeyTimeout)
	defer cancel()
	st, err := openKeyStore(ctx, stderr, opts)
	if err != nil {
		return err
	}
	defer st.Close()
	k, err := auth.GenerateKey()
	if err != nil {
		return err
	}
	rec := store.APIKey{ID: k.ID, Hash: k.Hash, Prefix: k.Prefix, Name: *name, Operator: *operator, AccountID: *account}
	if err := st.CreateAPIKey(ctx, rec); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("--account %s: no such account (create it with POST /v1/accounts first)", *account)
		}
		return schemaHint(err)
	}
	if err := auditCLI(ctx, st, stderr, *actor, ops.ActionAPIKeyCreate,
		map[string]any{"key_id": k.ID, "operator": *operator, "account_id": *account, "name": *name}, nil, store.AuditOutcomeOK); err != nil {
		return err
	}
	scope := "operator"
	if !*operator {
		scope = "account " + *account
	}
	switch {
	case *quiet:
		fmt.Fprintln(stdout, k.Secret)
	case *asJSON:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{
			"id": k.ID, "key": k.Secret, "prefix": k.Prefix, "name": *name,
			"operator": *operator, "account_id": *account,
		})
	default:
		fmt.Fprintf(stdout, "Created %s key %s", scope, k.ID)
		if *name != "" {
			fmt.Fprintf(stdout, " (%s)", *name)
		}
		fmt.Fprintf(stdout, ".\n\n  %s\n\nIt is shown only this once; Levqor keeps only its hash.\nSend it as: Authorization: Bearer <key>\n", k.Secret)
	}
	return nil
}

func runAPIKeyList(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("apikey list", apikeyListUsage, stdout, envStore...)
	account := fs.String("account", "", "only this account's keys")
	operator := fs.Bool("operator", false, "only operator keys")
	all := fs.Bool("all", false, "include revoked keys")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	if *operator && *account != "" {
		return usageError("apikey list takes --account or --operator, not both")
	}
	ctx, cancel := context.WithTimeout(ctx, apikeyTimeout)
	defer cancel()
	st, err := openKeyStore(ctx, stderr, opts)
	if err != nil {
		return err
	}
	defer st.Close()
	keys, err := st.ListAPIKeys(ctx, store.ListAPIKeysParams{AccountID: *account, OperatorOnly: *operator, IncludeRevoked: *all})
	if err != nil {
		return schemaHint(err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(keys)
	}
	if len(keys) == 0 {
		fmt.Fprintln(stdout, "no API keys")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPREFIX\tSCOPE\tNAME\tCREATED\tLAST USED\tSTATUS")
	for _, k := range keys {
		scope := "operator"
		if !k.Operator {
			scope = k.AccountID
		}
		status := "active"
		if k.RevokedAt != nil {
			status = "revoked " + k.RevokedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s…\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Prefix, scope, dash(k.Name),
			k.CreatedAt.Format(time.RFC3339), timeOrDash(k.LastUsedAt), status)
	}
	return tw.Flush()
}

func runAPIKeyRevoke(ctx context.Context, args []string, stdout, stderr io.Writer, opts Options) error {
	fs := newFlags("apikey revoke", apikeyRevokeUsage, stdout, envOf(envStore, []string{"USER"})...)
	actor := addActorFlag(fs, opts)
	asJSON := fs.Bool("json", false, "print the revoked key as JSON")
	id, err := fs.parseID(args, "key_", "API key (from `levqor apikey list`, not the key itself)")
	if err != nil {
		return err
	}
	args = []string{id}
	ctx, cancel := context.WithTimeout(ctx, apikeyTimeout)
	defer cancel()
	st, err := openKeyStore(ctx, stderr, opts)
	if err != nil {
		return err
	}
	defer st.Close()
	k, err := st.RevokeAPIKey(ctx, args[0], time.Time{})
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no API key %s", args[0])
	}
	if err != nil {
		return schemaHint(err)
	}
	if err := auditCLI(ctx, st, stderr, *actor, ops.ActionAPIKeyRevoke,
		map[string]any{"key_id": k.ID, "operator": k.Operator, "account_id": k.AccountID}, nil, store.AuditOutcomeOK); err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, k)
	}
	fmt.Fprintf(stdout, "Revoked %s (%s…) at %s; requests with it are refused from now on.\n", k.ID, k.Prefix, k.RevokedAt.Format(time.RFC3339))
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}
