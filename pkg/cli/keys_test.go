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
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/store"
)

// TestKeysRotateSealsEveryDSNUnderTheNewKey: `levqor keys rotate` seals a
// DSN stored in clear under the first of LEVQOR_MASTER_KEYS, says so, and
// records itself in the audit trail; without the keys it says which
// variable is missing.
func TestKeysRotateSealsEveryDSNUnderTheNewKey(t *testing.T) {
	t.Parallel()
	u := "sqlite:" + filepath.Join(t.TempDir(), "levqor.db")
	st := migratedURL(t, u)
	ctx := t.Context()
	const acc, src = "acc_keysrotate00000000000000", "src_keysrotate00000000000000"
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.InsertAccount(ctx, store.Account{ID: acc, Name: "K", ContactEmail: "k@example.com", StripeCustomerID: "cus_k"}); err != nil {
			return err
		}
		_, err := tx.InsertSource(ctx, store.BackupSource{ID: src, AccountID: acc, Name: "db", Kind: "postgres", Schedule: "0 2 * * *", TimeZone: "UTC",
			Config: json.RawMessage(`{"dsn":"postgres://u:pw-in-clear@db:5432/app"}`)})
		return err
	}))
	run := func(env map[string]string) (string, error) {
		var out, errOut bytes.Buffer
		err := cli.RunWith(context.Background(), []string{"keys", "rotate"}, &out, &errOut, cli.Options{Getenv: getenv(env)})
		return out.String(), err
	}
	_, err := run(map[string]string{"LEVQOR_DATABASE_URL": u})
	require.ErrorContains(t, err, "LEVQOR_MASTER_KEYS")

	key := strings.Repeat("1c", 32)
	out, err := run(map[string]string{"LEVQOR_DATABASE_URL": u, "LEVQOR_MASTER_KEYS": key, "USER": "ana"})
	require.NoError(t, err)
	require.Contains(t, out, "0 sealed again under the first key, 1 sealed for the first time, 0 already under it")
	s, err := st.GetSource(ctx, src)
	require.NoError(t, err)
	require.NotContains(t, string(s.Config), "pw-in-clear")
	var cfg struct{ DSN string }
	require.NoError(t, json.Unmarshal(s.Config, &cfg))
	sealer, err := keys.ParseMasterKeys(key)
	require.NoError(t, err)
	dsn, err := sealer.Open(cfg.DSN)
	require.NoError(t, err)
	require.Equal(t, "postgres://u:pw-in-clear@db:5432/app", dsn)

	var n int
	require.NoError(t, st.DB().GetContext(ctx, &n, `SELECT count(*) FROM operator_audit WHERE action = 'keys.rotate' AND actor = 'ana'`))
	require.Equal(t, 1, n)
}
