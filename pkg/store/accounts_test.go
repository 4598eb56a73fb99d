package store_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func insertAccount(t *testing.T, s *store.Store, a store.Account) bool {
	t.Helper()
	var inserted bool
	require.NoError(t, s.InTx(t.Context(), func(tx *store.Tx) error {
		var err error
		inserted, err = tx.InsertAccount(t.Context(), a)
		return err
	}))
	return inserted
}

func TestAccounts(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		a := store.Account{ID: "acc_one", Name: "Ada Ltd", ContactEmail: "ops@ada.example", StripeCustomerID: "cus_1", CreatedAt: base}
		require.True(t, insertAccount(t, s, a))

		t.Run("ReadsBackWithDefaults", func(t *testing.T) {
			got, err := s.GetAccount(ctx, "acc_one")
			require.NoError(t, err)
			require.Equal(t, "Ada Ltd", got.Name)
			require.Equal(t, "ops@ada.example", got.ContactEmail)
			require.Equal(t, "cus_1", got.StripeCustomerID)
			require.Nil(t, got.Tier, "no tier until billing sets one")
			require.Equal(t, store.AccountStatusActive, got.Status)
			require.JSONEq(t, `{}`, string(got.Entitlements))
			require.Equal(t, base.UTC().Truncate(time.Microsecond), got.CreatedAt)
			require.Equal(t, got.CreatedAt, got.UpdatedAt)
		})

		t.Run("SecondInsertKeepsTheFirst", func(t *testing.T) {
			b := a
			b.Name = "Other"
			require.False(t, insertAccount(t, s, b))
			got, err := s.GetAccount(ctx, "acc_one")
			require.NoError(t, err)
			require.Equal(t, "Ada Ltd", got.Name)
		})

		t.Run("UnknownIsNotFound", func(t *testing.T) {
			_, err := s.GetAccount(ctx, "acc_missing")
			require.ErrorIs(t, err, store.ErrNotFound)
		})

		t.Run("UpdateChangesOnlyWhatIsGiven", func(t *testing.T) {
			email := "billing@ada.example"
			var got *store.Account
			require.NoError(t, s.InTx(ctx, func(tx *store.Tx) error {
				var err error
				got, err = tx.UpdateAccount(ctx, store.AccountChanges{ID: "acc_one", ContactEmail: &email, UpdatedAt: base.Add(time.Hour)})
				return err
			}))
			require.Equal(t, "Ada Ltd", got.Name)
			require.Equal(t, email, got.ContactEmail)
			require.True(t, got.UpdatedAt.After(got.CreatedAt))
			err := s.InTx(ctx, func(tx *store.Tx) error {
				_, err := tx.UpdateAccount(ctx, store.AccountChanges{ID: "acc_missing", ContactEmail: &email})
				return err
			})
			require.ErrorIs(t, err, store.ErrNotFound)
		})

		t.Run("EntitlementsAndTierRoundTrip", func(t *testing.T) {
			tier := "dfy_pro"
			require.True(t, insertAccount(t, s, store.Account{
				ID: "acc_tiered", Name: "T", ContactEmail: "t@example.com", StripeCustomerID: "cus_t",
				Tier: &tier, Entitlements: json.RawMessage(`{"retention_days": 90}`), CreatedAt: base,
			}))
			got, err := s.GetAccount(ctx, "acc_tiered")
			require.NoError(t, err)
			require.Equal(t, "dfy_pro", *got.Tier)
			require.JSONEq(t, `{"retention_days": 90}`, string(got.Entitlements))
		})
	})
}

func TestListAccountsPagesNewestFirstWithoutGapsOrRepeats(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		var want []string
		for i := 0; i < 7; i++ {
			// Two accounts share each creation time, so the id must break
			// the tie.
			at := base.Add(time.Duration(i/2) * time.Second)
			id := fmt.Sprintf("acc_%02d", i)
			insertAccount(t, s, store.Account{ID: id, Name: id, ContactEmail: id + "@example.com", StripeCustomerID: "cus_" + id, CreatedAt: at})
			want = append([]string{id}, want...)
		}
		var got []string
		var after *store.AccountCursor
		pages := 0
		for {
			page, err := s.ListAccounts(ctx, store.ListAccountsParams{Limit: 3, After: after})
			require.NoError(t, err)
			pages++
			for _, a := range page {
				got = append(got, a.ID)
			}
			if len(page) < 3 {
				break
			}
			last := page[len(page)-1]
			after = &store.AccountCursor{CreatedAt: last.CreatedAt, ID: last.ID}
		}
		require.Equal(t, want, got)
		require.Equal(t, 3, pages)
		_, err := s.ListAccounts(ctx, store.ListAccountsParams{})
		require.Error(t, err, "a limit is required")
	})
}
