package backups_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// TestRotatingTheMasterKeyResealsEverySourcesDSN: with a new master key
// put first, ResealSources seals every DSN under it (one sealed under the
// old key, one stored in clear before sealing began), after which the
// new key alone opens them all; a directory source is left alone, and a
// second run changes nothing.
func TestRotatingTheMasterKeyResealsEverySourcesDSN(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, starter)
		ctx := t.Context()
		oldKey, newKey := strings.Repeat("0a", 32), strings.Repeat("0b", 32)
		old, err := keys.ParseMasterKeys(oldKey)
		require.NoError(t, err)
		const dsn = "postgres://backup:s3cret@db.example:5432/app?sslmode=require"
		sealedOld, err := old.Seal(dsn, backups.RedactDSN(dsn))
		require.NoError(t, err)
		configs := map[string]string{
			b.source(t, nil): `{"dsn":` + quote(sealedOld) + `}`,
			b.source(t, nil): `{"dsn":` + quote(dsn) + `}`,
			b.source(t, nil): `{"path":"/srv/data"}`,
		}
		for id, c := range configs {
			require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error { return tx.SetSourceConfig(ctx, id, json.RawMessage(c), time.Time{}) }))
		}

		rotated, err := keys.ParseMasterKeys(newKey + "," + oldKey)
		require.NoError(t, err)
		rep, err := b.w.ResealSources(ctx, rotated)
		require.NoError(t, err)
		require.Equal(t, backups.ResealReport{Resealed: 1, Sealed: 1}, rep)

		onlyNew, err := keys.ParseMasterKeys(newKey)
		require.NoError(t, err)
		for id, c := range configs {
			src, err := st.GetSource(ctx, id)
			require.NoError(t, err)
			var cfg backups.SourceConfig
			require.NoError(t, json.Unmarshal(src.Config, &cfg))
			if strings.Contains(c, "path") {
				require.JSONEq(t, c, string(src.Config), "a directory source is left alone")
				continue
			}
			require.True(t, keys.IsSealed(cfg.DSN))
			require.NotContains(t, string(src.Config), "s3cret")
			got, err := onlyNew.Open(cfg.DSN)
			require.NoError(t, err, "the new key alone opens it")
			require.Equal(t, dsn, got)
		}

		again, err := b.w.ResealSources(ctx, rotated)
		require.NoError(t, err)
		require.Equal(t, backups.ResealReport{Current: 2}, again)
	})
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
