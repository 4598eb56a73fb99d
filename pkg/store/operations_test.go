package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func TestListFailures(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		fail := func(consumer, msgID string, seq uint64, deliveries int, dead bool, at time.Time) {
			require.NoError(t, s.RecordFailure(ctx, store.Failure{
				Consumer: consumer, MsgID: msgID, Subject: "levqor.stripe.invoice.paid", Stream: "STRIPE",
				StreamSeq: seq, Deliveries: deliveries, Error: msgID + " broke", DeadLettered: dead, At: at,
			}))
		}
		fail("billing-stripe", "evt_failing", 3, 4, false, base)
		fail("billing-stripe", "evt_failing", 3, 5, false, base.Add(2*time.Minute)) // latest attempt wins
		fail("billing-stripe", "evt_dead", 4, 5, true, base.Add(time.Minute))
		fail("billing-stripe", "evt_recovered", 5, 2, false, base.Add(3*time.Minute))
		fail("support-stripe", "evt_failing", 3, 1, false, base.Add(4*time.Minute))
		require.True(t, claim(t, s, store.InboxEntry{Consumer: "billing-stripe", MsgID: "evt_recovered", Subject: "s"}))
		// Another consumer processing the message does not resolve it here.
		require.True(t, claim(t, s, store.InboxEntry{Consumer: "billing-stripe", MsgID: "evt_other", Subject: "s"}))

		open, err := s.ListFailures(ctx, store.ListFailuresParams{Consumer: "billing-stripe"})
		require.NoError(t, err)
		require.Len(t, open, 1, "only the failure that still needs attention")
		f := open[0]
		require.Equal(t, "evt_failing", f.MsgID)
		require.Equal(t, 5, f.Deliveries)
		require.Equal(t, "evt_failing broke", f.Error)
		require.EqualValues(t, 3, f.StreamSeq)
		require.Equal(t, "STRIPE", f.Stream)
		require.Equal(t, base.UTC().Truncate(time.Microsecond), f.FirstFailedAt)
		require.Equal(t, base.Add(2*time.Minute).UTC().Truncate(time.Microsecond), f.At)
		require.False(t, f.Processed)
		require.False(t, f.DeadLettered)

		everything, err := s.ListFailures(ctx, store.ListFailuresParams{IncludeDeadLettered: true, IncludeProcessed: true})
		require.NoError(t, err)
		var got []string
		for _, f := range everything {
			got = append(got, fmt.Sprintf("%s/%s processed=%v dead=%v", f.Consumer, f.MsgID, f.Processed, f.DeadLettered))
		}
		require.Equal(t, []string{
			"support-stripe/evt_failing processed=false dead=false",
			"billing-stripe/evt_recovered processed=true dead=false",
			"billing-stripe/evt_failing processed=false dead=false",
			"billing-stripe/evt_dead processed=false dead=true",
		}, got, "most recent first")

		limited, err := s.ListFailures(ctx, store.ListFailuresParams{Limit: 1})
		require.NoError(t, err)
		require.Len(t, limited, 1)
		require.Equal(t, "support-stripe", limited[0].Consumer)
	})
}

func TestProcessedMsgIDsAndKnownStripeEvents(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		// More ids than one IN list holds, to cross a chunk boundary.
		var ids []string
		for i := range 1200 {
			ids = append(ids, fmt.Sprintf("evt_%04d", i))
		}
		require.NoError(t, s.InTx(ctx, func(tx *store.Tx) error {
			for _, i := range []int{0, 499, 500, 1199} {
				if _, err := tx.ClaimInbox(ctx, store.InboxEntry{Consumer: "billing-stripe", MsgID: ids[i], Subject: "s"}); err != nil {
					return err
				}
				if _, err := tx.InsertStripeEvent(ctx, store.StripeEvent{ID: ids[i], Type: "invoice.paid", Payload: []byte(`{}`)}); err != nil {
					return err
				}
			}
			_, err := tx.ClaimInbox(ctx, store.InboxEntry{Consumer: "support-stripe", MsgID: ids[1], Subject: "s"})
			return err
		}))
		want := map[string]bool{ids[0]: true, ids[499]: true, ids[500]: true, ids[1199]: true}

		processed, err := s.ProcessedMsgIDs(ctx, "billing-stripe", ids)
		require.NoError(t, err)
		require.Equal(t, want, processed, "another consumer's inbox does not count")

		known, err := s.KnownStripeEventIDs(ctx, ids)
		require.NoError(t, err)
		require.Equal(t, want, known)

		none, err := s.KnownStripeEventIDs(ctx, nil)
		require.NoError(t, err)
		require.Empty(t, none)
	})
}
