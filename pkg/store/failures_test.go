package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// TestFailureAccountDeadLetters: dead letters are counted per (account,
// consumer) in a half-open window; failures still being retried, failures
// of messages without an account and those outside the window are not.
func TestFailureAccountDeadLetters(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		t0 := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
		n := 0
		fail := func(consumer, account string, dead bool, at time.Time) {
			t.Helper()
			n++
			require.NoError(t, s.RecordFailure(ctx, store.Failure{
				Consumer: consumer, MsgID: fmt.Sprintf("msg_%d", n), Subject: "levqor.cmd.backup.run", Stream: "COMMANDS",
				StreamSeq: uint64(n), Deliveries: 5, AccountID: account, Error: "boom", DeadLettered: dead, At: at,
			}))
		}
		fail("retention-cmd", "acc_a", true, t0)                      // on the lower bound: the previous window's
		fail("retention-cmd", "acc_a", true, t0.Add(time.Second))     // in
		fail("retention-cmd", "acc_a", true, t0.Add(time.Minute))     // in, on the upper bound
		fail("retention-cmd", "acc_a", false, t0.Add(30*time.Second)) // still retried
		fail("retention-cmd", "acc_a", true, t0.Add(2*time.Minute))   // the next window's
		fail("billing-cmd", "acc_a", true, t0.Add(10*time.Second))
		fail("retention-cmd", "acc_b", true, t0.Add(20*time.Second))
		fail("retention-cmd", "", true, t0.Add(20*time.Second)) // the platform's, not an account's

		var got []store.AccountDeadLetters
		require.NoError(t, s.InTx(ctx, func(tx *store.Tx) error {
			var err error
			got, err = tx.AccountDeadLetters(ctx, t0, t0.Add(time.Minute))
			return err
		}))
		require.Equal(t, []store.AccountDeadLetters{
			{AccountID: "acc_a", Consumer: "billing-cmd", DeadLettered: 1},
			{AccountID: "acc_a", Consumer: "retention-cmd", DeadLettered: 2},
			{AccountID: "acc_b", Consumer: "retention-cmd", DeadLettered: 1},
		}, got)

		t.Run("ReplayedAndDeadAgainMovesWindow", func(t *testing.T) {
			// msg_2 fails again later: it counts where its latest failure is.
			require.NoError(t, s.RecordFailure(ctx, store.Failure{
				Consumer: "retention-cmd", MsgID: "msg_2", Subject: "levqor.cmd.backup.run", AccountID: "acc_a",
				Error: "boom again", DeadLettered: true, At: t0.Add(90 * time.Second),
			}))
			require.NoError(t, s.InTx(ctx, func(tx *store.Tx) error {
				next, err := tx.AccountDeadLetters(ctx, t0.Add(time.Minute), t0.Add(2*time.Minute))
				require.NoError(t, err)
				require.Equal(t, []store.AccountDeadLetters{{AccountID: "acc_a", Consumer: "retention-cmd", DeadLettered: 2}}, next)
				return nil
			}))
		})
		t.Run("EmptyWindowIsAnError", func(t *testing.T) {
			err := s.InTx(ctx, func(tx *store.Tx) error {
				_, err := tx.AccountDeadLetters(ctx, t0, t0)
				return err
			})
			require.ErrorContains(t, err, "since")
		})
	})
}
