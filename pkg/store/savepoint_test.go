package store_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func TestSavepointUndoesOnePartOfATransaction(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		claim := func(tx *store.Tx, id string) {
			t.Helper()
			claimed, err := tx.ClaimInbox(ctx, store.InboxEntry{Consumer: "c", MsgID: id, Subject: "s", StreamSeq: 1, ProcessedAt: time.Now()})
			require.NoError(t, err)
			require.True(t, claimed)
		}
		require.NoError(t, s.InTx(ctx, func(tx *store.Tx) error {
			require.NoError(t, tx.Savepoint(ctx, "m1"))
			claim(tx, "kept-1")
			require.NoError(t, tx.Release(ctx, "m1"))

			require.NoError(t, tx.Savepoint(ctx, "m2"))
			claim(tx, "undone")
			// A failing statement: on PostgreSQL it aborts the transaction
			// until the rollback to the savepoint.
			_, err := tx.ClaimInbox(ctx, store.InboxEntry{Consumer: "c"})
			require.Error(t, err)
			require.NoError(t, tx.RollbackTo(ctx, "m2"))
			require.NoError(t, tx.Release(ctx, "m2"))

			require.NoError(t, tx.Savepoint(ctx, "m3"))
			claim(tx, "kept-2")
			return tx.Release(ctx, "m3")
		}))
		for id, want := range map[string]int{"kept-1": 1, "undone": 0, "kept-2": 1} {
			states, err := s.ConsumerStates(ctx, id)
			require.NoError(t, err)
			require.Len(t, states, want, "inbox row %s", id)
		}
	})
}

func TestSavepointWorkIsLostWhenTheTransactionRollsBack(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		boom := errors.New("commit refused")
		err := s.InTx(ctx, func(tx *store.Tx) error {
			require.NoError(t, tx.Savepoint(ctx, "m1"))
			_, err := tx.ClaimInbox(ctx, store.InboxEntry{Consumer: "c", MsgID: "released", Subject: "s"})
			require.NoError(t, err)
			require.NoError(t, tx.Release(ctx, "m1"))
			return boom
		})
		require.ErrorIs(t, err, boom)
		states, err := s.ConsumerStates(ctx, "released")
		require.NoError(t, err)
		require.Empty(t, states, "a released savepoint commits only with its transaction")
	})
}

func TestSavepointRejectsNamesThatAreNotIdentifiers(t *testing.T) {
	t.Parallel()
	s := storetest.SQLite(t)
	ctx := t.Context()
	require.NoError(t, s.InTx(ctx, func(tx *store.Tx) error {
		for _, name := range []string{"", "1a", "a b", "a; DROP TABLE inbox", "a-b"} {
			err := tx.Savepoint(ctx, name)
			require.ErrorContains(t, err, "savepoint name", "name %q", name)
			require.ErrorContains(t, tx.RollbackTo(ctx, name), "savepoint name")
			require.ErrorContains(t, tx.Release(ctx, name), "savepoint name")
		}
		return nil
	}))
}
