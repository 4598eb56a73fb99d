package auth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

const devToken = "lvq_dev_0123456789abcdef0123456789abcdef"

type fixture struct {
	st      *store.Store
	authz   *auth.Authorizer
	opKey   string
	accKey  string
	accKeyI string
}

func setup(t *testing.T, st *store.Store, dev string) *fixture {
	t.Helper()
	ctx := t.Context()
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.InsertAccount(ctx, store.Account{ID: "acc_a", Name: "A", ContactEmail: "a@example.com", StripeCustomerID: "cus_a"})
		return err
	}))
	authz, err := auth.New(st, auth.Config{DevOperatorToken: dev, Logger: storetest.Logger(t)})
	require.NoError(t, err)
	op, err := auth.GenerateKey()
	require.NoError(t, err)
	require.NoError(t, st.CreateAPIKey(ctx, store.APIKey{ID: op.ID, Hash: op.Hash, Prefix: op.Prefix, Operator: true}))
	acc, err := auth.GenerateKey()
	require.NoError(t, err)
	require.NoError(t, st.CreateAPIKey(ctx, store.APIKey{ID: acc.ID, Hash: acc.Hash, Prefix: acc.Prefix, AccountID: "acc_a"}))
	return &fixture{st: st, authz: authz, opKey: op.Secret, accKey: acc.Secret, accKeyI: acc.ID}
}

func TestGeneratedKeys(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		k, err := auth.GenerateKey()
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(k.Secret, "lvq_"))
		require.Len(t, k.Secret, 56)
		require.True(t, auth.LooksLikeKey(k.Secret))
		require.True(t, strings.HasPrefix(k.Secret, k.Prefix))
		require.Less(t, len(k.Prefix), 16, "the listed prefix reveals only a little of the key")
		require.Equal(t, auth.HashKey(k.Secret), k.Hash)
		require.Len(t, k.Hash, 64, "hex SHA-256")
		require.NotContains(t, k.Hash, k.Secret[4:])
		require.True(t, strings.HasPrefix(k.ID, "key_"))
		require.False(t, seen[k.Secret], "keys never repeat")
		seen[k.Secret] = true
	}
	require.False(t, auth.LooksLikeKey("lvq_short"))
	require.False(t, auth.LooksLikeKey(strings.Repeat("x", 56)))
	require.False(t, auth.LooksLikeKey("lvq_"+strings.Repeat("1", 52)), "1 is not base32")
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		f := setup(t, st, devToken)
		ctx := t.Context()

		p, err := f.authz.Authenticate(ctx, "Bearer "+f.accKey)
		require.NoError(t, err)
		require.Equal(t, auth.Principal{AccountID: "acc_a", KeyID: f.accKeyI}, p)
		require.True(t, p.Sees("acc_a"))
		require.False(t, p.Sees("acc_b"), "an account key sees only its account")
		require.False(t, p.Sees(""), "nor what no account owns")

		p, err = f.authz.Authenticate(ctx, "bearer "+f.opKey)
		require.NoError(t, err, "the scheme is case-insensitive")
		require.True(t, p.Operator)
		require.True(t, p.Sees("acc_b") && p.Sees(""), "operators see everything")

		p, err = f.authz.Authenticate(ctx, "Bearer "+devToken)
		require.NoError(t, err)
		require.Equal(t, auth.Principal{Operator: true, KeyID: auth.DevKeyID}, p)

		for name, header := range map[string]string{
			"Missing": "", "Basic": "Basic " + f.opKey, "EmptyBearer": "Bearer ",
		} {
			_, err := f.authz.Authenticate(ctx, header)
			require.ErrorIs(t, err, auth.ErrNoCredentials, name)
		}
		unknown, err := auth.GenerateKey()
		require.NoError(t, err)
		for name, header := range map[string]string{
			"Garbage": "Bearer nonsense", "Unknown": "Bearer " + unknown.Secret,
			"Truncated": "Bearer " + f.accKey[:len(f.accKey)-1], "Hash": "Bearer " + auth.HashKey(f.accKey),
		} {
			_, err := f.authz.Authenticate(ctx, header)
			require.ErrorIs(t, err, auth.ErrInvalidKey, name)
		}

		keys, err := st.ListAPIKeys(ctx, store.ListAPIKeysParams{AccountID: "acc_a"})
		require.NoError(t, err)
		require.NotNil(t, keys[0].LastUsedAt, "use is recorded")
		require.WithinDuration(t, time.Now(), *keys[0].LastUsedAt, time.Minute)

		_, err = st.RevokeAPIKey(ctx, f.accKeyI, time.Time{})
		require.NoError(t, err)
		_, err = f.authz.Authenticate(ctx, "Bearer "+f.accKey)
		require.ErrorIs(t, err, auth.ErrInvalidKey, "revocation is effective with the next request")
	})
}

func TestDevTokenOnlyWhenConfigured(t *testing.T) {
	t.Parallel()
	f := setup(t, storetest.SQLite(t), "")
	_, err := f.authz.Authenticate(t.Context(), "Bearer "+devToken)
	require.ErrorIs(t, err, auth.ErrInvalidKey, "production has no dev token")
}

func TestRequire(t *testing.T) {
	t.Parallel()
	f := setup(t, storetest.SQLite(t), "")
	reached := func(w http.ResponseWriter, r *http.Request) {
		p, ok := auth.FromContext(r.Context())
		require.True(t, ok)
		_ = json.NewEncoder(w).Encode(p)
	}
	do := func(scope auth.Scope, key string) (*httptest.ResponseRecorder, map[string]map[string]string) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/x", nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		f.authz.Require(scope, http.HandlerFunc(reached)).ServeHTTP(rec, req)
		var body map[string]map[string]string
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		return rec, body
	}

	t.Run("NoKeyIs401", func(t *testing.T) {
		rec, body := do(auth.AnyKey, "")
		require.Equal(t, http.StatusUnauthorized, rec.Code)
		require.Equal(t, "unauthenticated", body["error"]["code"])
		require.Contains(t, rec.Header().Get("WWW-Authenticate"), "Bearer")
	})
	t.Run("BadKeyIs401", func(t *testing.T) {
		rec, _ := do(auth.AnyKey, "lvq_nope")
		require.Equal(t, http.StatusUnauthorized, rec.Code)
		require.Contains(t, rec.Header().Get("WWW-Authenticate"), "invalid_token")
	})
	t.Run("AccountKeyOnOperatorRouteIs403", func(t *testing.T) {
		rec, body := do(auth.OperatorOnly, f.accKey)
		require.Equal(t, http.StatusForbidden, rec.Code)
		require.Equal(t, "forbidden", body["error"]["code"])
	})
	t.Run("OperatorKeyOnOperatorRoute", func(t *testing.T) {
		rec, _ := do(auth.OperatorOnly, f.opKey)
		require.Equal(t, http.StatusOK, rec.Code)
		require.Contains(t, rec.Body.String(), `"Operator":true`)
	})
	t.Run("AccountKeyOnAnyKeyRoute", func(t *testing.T) {
		rec, _ := do(auth.AnyKey, f.accKey)
		require.Equal(t, http.StatusOK, rec.Code)
		require.Contains(t, rec.Body.String(), `"AccountID":"acc_a"`)
	})
	t.Run("DatabaseDownIs503", func(t *testing.T) {
		st := storetest.SQLite(t)
		authz, err := auth.New(st, auth.Config{Logger: storetest.Logger(t)})
		require.NoError(t, err)
		require.NoError(t, st.Close())
		k, err := auth.GenerateKey()
		require.NoError(t, err)
		_, err = authz.Authenticate(context.Background(), "Bearer "+k.Secret)
		require.Error(t, err)
		require.NotErrorIs(t, err, auth.ErrInvalidKey, "an outage is not the caller's fault")
	})
}
