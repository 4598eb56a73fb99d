package store_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		insertAccount(t, s, store.Account{ID: "acc_a", Name: "A", ContactEmail: "a@example.com", StripeCustomerID: "cus_a"})
		op := store.APIKey{ID: "key_op", Hash: "hash-op", Prefix: "lvq_op", Name: "ops", Operator: true, CreatedAt: base}
		acc := store.APIKey{ID: "key_acc", Hash: "hash-acc", Prefix: "lvq_ac", Name: "ci", AccountID: "acc_a", CreatedAt: base.Add(time.Second)}
		require.NoError(t, s.CreateAPIKey(ctx, op))
		require.NoError(t, s.CreateAPIKey(ctx, acc))

		t.Run("FoundByHash", func(t *testing.T) {
			k, err := s.ActiveAPIKeyByHash(ctx, "hash-acc")
			require.NoError(t, err)
			require.Equal(t, "key_acc", k.ID)
			require.Equal(t, "acc_a", k.AccountID)
			require.False(t, k.Operator)
			k, err = s.ActiveAPIKeyByHash(ctx, "hash-op")
			require.NoError(t, err)
			require.True(t, k.Operator)
			require.Empty(t, k.AccountID)
			_, err = s.ActiveAPIKeyByHash(ctx, "hash-unknown")
			require.ErrorIs(t, err, store.ErrNotFound)
		})

		t.Run("RefusesInconsistentScopes", func(t *testing.T) {
			err := s.CreateAPIKey(ctx, store.APIKey{ID: "key_x", Hash: "h1", Prefix: "p", Operator: true, AccountID: "acc_a"})
			require.Error(t, err)
			err = s.CreateAPIKey(ctx, store.APIKey{ID: "key_y", Hash: "h2", Prefix: "p"})
			require.Error(t, err)
			err = s.CreateAPIKey(ctx, store.APIKey{ID: "key_z", Hash: "h3", Prefix: "p", AccountID: "acc_nope"})
			require.ErrorIs(t, err, store.ErrNotFound, "an account key needs an existing account")
			err = s.CreateAPIKey(ctx, store.APIKey{ID: "key_dup", Hash: "hash-op", Prefix: "p", Operator: true})
			require.Error(t, err, "hashes are unique")
		})

		t.Run("ListFilters", func(t *testing.T) {
			all, err := s.ListAPIKeys(ctx, store.ListAPIKeysParams{})
			require.NoError(t, err)
			require.Len(t, all, 2)
			require.Equal(t, "key_op", all[0].ID, "oldest first")
			mine, err := s.ListAPIKeys(ctx, store.ListAPIKeysParams{AccountID: "acc_a"})
			require.NoError(t, err)
			require.Len(t, mine, 1)
			require.Equal(t, "key_acc", mine[0].ID)
			ops, err := s.ListAPIKeys(ctx, store.ListAPIKeysParams{OperatorOnly: true})
			require.NoError(t, err)
			require.Len(t, ops, 1)
			require.Equal(t, "key_op", ops[0].ID)
		})

		t.Run("TouchRecordsLastUse", func(t *testing.T) {
			require.NoError(t, s.TouchAPIKey(ctx, "key_acc", base.Add(time.Minute)))
			k, err := s.ActiveAPIKeyByHash(ctx, "hash-acc")
			require.NoError(t, err)
			require.NotNil(t, k.LastUsedAt)
			require.Equal(t, base.Add(time.Minute).UTC().Truncate(time.Microsecond), *k.LastUsedAt)
		})

		t.Run("RevokedKeyIsNotFoundAtOnce", func(t *testing.T) {
			k, err := s.RevokeAPIKey(ctx, "key_acc", base.Add(time.Hour))
			require.NoError(t, err)
			require.NotNil(t, k.RevokedAt)
			_, err = s.ActiveAPIKeyByHash(ctx, "hash-acc")
			require.ErrorIs(t, err, store.ErrNotFound)
			again, err := s.RevokeAPIKey(ctx, "key_acc", base.Add(2*time.Hour))
			require.NoError(t, err)
			require.Equal(t, *k.RevokedAt, *again.RevokedAt, "the first revocation time is kept")
			_, err = s.RevokeAPIKey(ctx, "key_nope", time.Time{})
			require.ErrorIs(t, err, store.ErrNotFound)

			active, err := s.ListAPIKeys(ctx, store.ListAPIKeysParams{AccountID: "acc_a"})
			require.NoError(t, err)
			require.Empty(t, active)
			withRevoked, err := s.ListAPIKeys(ctx, store.ListAPIKeysParams{AccountID: "acc_a", IncludeRevoked: true})
			require.NoError(t, err)
			require.Len(t, withRevoked, 1)
		})
	})
}
