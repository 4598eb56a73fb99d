package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/cli"
	"github.com/levqor/levqor/pkg/people"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// user runs `levqor user args…` with stdin.
func user(t *testing.T, env map[string]string, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := cli.RunWith(context.Background(), append([]string{"user"}, args...), &out, &errOut,
		cli.Options{Getenv: getenv(env), Stdin: strings.NewReader(stdin)})
	return out.String(), err
}

func TestUserCommands(t *testing.T) {
	t.Parallel()
	u := "sqlite:" + filepath.Join(t.TempDir(), "levqor.db")
	st := migratedURL(t, u)
	ctx := t.Context()
	const acc = "acc_cliaccount000000000000000"
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.InsertAccount(ctx, store.Account{ID: acc, Name: "CLI", ContactEmail: "cli@example.com", StripeCustomerID: "cus_cli"})
		return err
	}))
	env := map[string]string{"LEVQOR_DATABASE_URL": u, "LEVQOR_PUBLIC_URL": "https://levqor.example.com"}
	p, err := people.New(people.Config{Store: st, Logger: storetest.Logger(t)})
	require.NoError(t, err)

	out, err := user(t, env, "staff passphrase 1\n", "create", "--email", "Ops@Example.com", "--name", "Ops", "--role", "operator")
	require.NoError(t, err)
	require.Contains(t, out, "Created operator ops@example.com")
	require.Contains(t, out, "https://levqor.example.com/app/signin")
	_, op, err := p.SignIn(ctx, "ops@example.com", "staff passphrase 1", "10.0.0.1", "")
	require.NoError(t, err, "the password read from standard input signs in")
	require.Equal(t, store.RoleOperator, op.Role)

	out, err = user(t, env, "owner passphrase\r\n", "create", "--email", "owner@example.com", "--role", "owner", "--account", acc, "--json")
	require.NoError(t, err)
	var created store.User
	require.NoError(t, json.Unmarshal([]byte(out), &created))
	require.Equal(t, acc, created.AccountID)
	require.NotContains(t, out, "argon2", "the hash is never printed")

	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"", []string{"create", "--email", "a@example.com", "--role", "operator"}, "password: none on standard input"},
		{"short\n", []string{"create", "--email", "a@example.com", "--role", "operator"}, "at least 12 characters"},
		{"a passphrase ok\n", []string{"create", "--email", "nope", "--role", "operator"}, "--email: not an email address"},
		{"a passphrase ok\n", []string{"create", "--email", "owner@example.com", "--role", "owner", "--account", acc}, "--email: a user with this email exists already"},
		{"a passphrase ok\n", []string{"create", "--email", "b@example.com", "--role", "member", "--account", "acc_nope"}, "--account: no such account"},
		{"a passphrase ok\n", []string{"create", "--email", "b@example.com", "--role", "admin"}, "--role: one of owner, member, operator"},
		{"", []string{"create", "--email", "b@example.com", "--role", "member", "--password", "x"}, "flag provided but not defined: -password"},
		{"", []string{"invite", "--email", "b@example.com", "--role", "operator", "--account", acc}, "operators are created"},
		{"", []string{"disable", "nobody@example.com"}, "no user nobody@example.com"},
	} {
		_, err := user(t, env, tc.stdin, tc.args...)
		require.ErrorContains(t, err, tc.want, "%v", tc.args)
	}

	out, err = user(t, env, "", "invite", "--email", "member@example.com", "--role", "member", "--account", acc)
	require.NoError(t, err)
	require.Contains(t, out, "https://levqor.example.com/app/invite/")
	link := strings.Fields(out[strings.Index(out, "https://"):])[0]
	secret := link[strings.LastIndex(link, "/")+1:]
	m, err := p.AcceptInvitation(ctx, secret, "Member", "member passphrase")
	require.NoError(t, err)
	require.Equal(t, store.RoleMember, m.Role)

	out, err = user(t, env, "", "list", "--account", acc)
	require.NoError(t, err)
	require.Contains(t, out, "owner@example.com")
	require.Contains(t, out, "member@example.com")
	require.NotContains(t, out, "ops@example.com")

	sess, _, err := p.SignIn(ctx, "member@example.com", "member passphrase", "10.0.0.2", "")
	require.NoError(t, err)
	out, err = user(t, env, "", "disable", "member@example.com")
	require.NoError(t, err)
	require.Contains(t, out, "Disabled member@example.com")
	_, _, err = p.Session(ctx, sess)
	require.ErrorIs(t, err, people.ErrNoSession, "disabling ends the user's sessions")
	out, err = user(t, env, "", "list")
	require.NoError(t, err)
	require.Regexp(t, `member@example.com .*disabled `, out)

	audit, err := st.ListAudit(ctx, store.ListAuditParams{Limit: 10})
	require.NoError(t, err)
	var actions []string
	for _, a := range audit {
		actions = append(actions, a.Action)
	}
	require.Subset(t, actions, []string{"user.create", "user.invite", "user.disable"})
}
