package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/cli"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// apikey runs `levqor apikey args…` against the database at dbURL.
func apikey(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := cli.RunWith(context.Background(), append([]string{"apikey"}, args...), &out, &errOut, cli.Options{Getenv: getenv(env)})
	return out.String(), err
}

func migratedURL(t *testing.T, dbURL string) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), dbURL, storetest.Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	require.NoError(t, st.Migrate(t.Context()))
	return st
}

func TestAPIKeyCommands(t *testing.T) {
	t.Parallel()
	for name, dbURL := range map[string]func(t *testing.T) string{
		"SQLite":   func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "levqor.db") },
		"Postgres": func(t *testing.T) string { return storetest.PostgresURL(t) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			u := dbURL(t)
			st := migratedURL(t, u)
			ctx := t.Context()
			const acc = "acc_cliaccount000000000000000"
			require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
				_, err := tx.InsertAccount(ctx, store.Account{ID: acc, Name: "CLI", ContactEmail: "cli@example.com", StripeCustomerID: "cus_cli"})
				return err
			}))
			env := map[string]string{"LEVQOR_DATABASE_URL": u}
			authz, err := auth.New(st, auth.Config{Logger: storetest.Logger(t)})
			require.NoError(t, err)

			// An account key, printed once, works for that account.
			out, err := apikey(t, env, "create", "--account", acc, "--name", "ci deploys")
			require.NoError(t, err)
			require.Contains(t, out, "shown only this once")
			secret := strings.TrimSpace(strings.Split(strings.Split(out, "\n\n")[1], "\n")[0])
			require.True(t, auth.LooksLikeKey(secret), out)
			p, err := authz.Authenticate(ctx, "Bearer "+secret)
			require.NoError(t, err)
			require.Equal(t, acc, p.AccountID)
			require.False(t, p.Operator)

			// An operator key, quietly, for scripts.
			opOut, err := apikey(t, env, "create", "--operator", "-q")
			require.NoError(t, err)
			op := strings.TrimSpace(opOut)
			require.True(t, auth.LooksLikeKey(op), opOut)
			p, err = authz.Authenticate(ctx, "Bearer "+op)
			require.NoError(t, err)
			require.True(t, p.Operator)

			// Listing never shows a key again.
			list, err := apikey(t, env, "list")
			require.NoError(t, err)
			require.Contains(t, list, "ci deploys")
			require.Contains(t, list, "operator")
			require.Contains(t, list, secret[:12])
			require.NotContains(t, list, secret)
			require.NotContains(t, list, op)
			var keys []map[string]any
			js, err := apikey(t, env, "list", "--account", acc, "--json")
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal([]byte(js), &keys))
			require.Len(t, keys, 1)
			require.NotContains(t, js, secret)
			id := keys[0]["id"].(string)

			// Revoked: refused at once.
			out, err = apikey(t, env, "revoke", id)
			require.NoError(t, err)
			require.Contains(t, out, "Revoked "+id)
			_, err = authz.Authenticate(ctx, "Bearer "+secret)
			require.ErrorIs(t, err, auth.ErrInvalidKey)
			list, err = apikey(t, env, "list", "--account", acc)
			require.NoError(t, err)
			require.Equal(t, "no API keys\n", list)
			list, err = apikey(t, env, "list", "--account", acc, "--all")
			require.NoError(t, err)
			require.Contains(t, list, "revoked")

			_, err = apikey(t, env, "create", "--account", "acc_nobody")
			require.ErrorContains(t, err, "no such account")
			for _, action := range []string{ops.ActionAPIKeyCreate, ops.ActionAPIKeyRevoke} {
				trail, err := st.ListAudit(ctx, store.ListAuditParams{Action: action, Limit: 10})
				require.NoError(t, err)
				require.NotEmpty(t, trail, "%s is in the audit trail", action)
				require.NotContains(t, string(trail[0].Params), "lvq_", "the trail names the key id, never the key")
			}
			_, err = apikey(t, env, "revoke", "key_aaaaaaaaaaaaaaaaaaaaaaaaaa")
			require.ErrorContains(t, err, "no API key key_aaaaaaaaaaaaaaaaaaaaaaaaaa")
			_, err = apikey(t, env, "revoke", "key_unknown")
			require.ErrorContains(t, err, "is not a well-formed API key")
		})
	}
}

func TestAPIKeyUsage(t *testing.T) {
	t.Parallel()
	env := map[string]string{"LEVQOR_DATA_DIR": t.TempDir()}
	for name, args := range map[string][]string{
		"NoSubcommand":   {},
		"Unknown":        {"rotate"},
		"NeitherScope":   {"create"},
		"BothScopes":     {"create", "--operator", "--account", "acc_x"},
		"RevokeTheKey":   {"revoke", "lvq_thesecretitself"},
		"RevokeTwo":      {"revoke", "key_a", "key_b"},
		"ListBothScopes": {"list", "--operator", "--account", "acc_x"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := apikey(t, env, args...)
			require.True(t, errors.Is(err, cli.ErrUsage), "%v", err)
		})
	}
	_, err := apikey(t, env, "list")
	require.ErrorContains(t, err, "levqor dev", "without a database the error says how to get one")
}
