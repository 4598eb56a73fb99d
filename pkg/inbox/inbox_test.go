package inbox_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/inbox"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func TestHandlerRunsOncePerConsumerUnlessForced(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ran := map[string]int{}
		h := inbox.Handler(s, func(ctx context.Context, tx *store.Tx, m *bus.Message) error {
			ran[m.Consumer]++
			return nil
		})
		msg := func(consumer string) *bus.Message {
			return &bus.Message{
				Subject: "levqor.stripe.invoice.paid", Header: nats.Header{bus.HeaderMsgID: {"evt_1"}},
				Stream: "STRIPE", Consumer: consumer, StreamSeq: 7, Deliveries: 1,
			}
		}
		deliver := func(ctx context.Context, consumer string) inbox.Outcome {
			var o inbox.Outcome
			require.NoError(t, h(inbox.WithOutcome(ctx, &o), msg(consumer)))
			return o
		}
		ctx := t.Context()

		require.Equal(t, inbox.Outcome{}, deliver(ctx, "billing-stripe"))
		require.Equal(t, inbox.Outcome{Duplicate: true}, deliver(ctx, "billing-stripe"))
		require.Equal(t, 1, ran["billing-stripe"], "a redelivery changes nothing")

		forced := inbox.WithForce(ctx, "billing-stripe")
		require.Equal(t, inbox.Outcome{Duplicate: true, Forced: true}, deliver(forced, "billing-stripe"))
		require.Equal(t, 2, ran["billing-stripe"], "the operator asked for a re-run")

		require.Equal(t, inbox.Outcome{}, deliver(forced, "support-stripe"), "first delivery to another consumer")
		require.Equal(t, inbox.Outcome{Duplicate: true}, deliver(forced, "support-stripe"), "force is for the named consumer only")
		require.Equal(t, 1, ran["support-stripe"])

		states, err := s.ConsumerStates(ctx, "evt_1")
		require.NoError(t, err)
		require.Len(t, states, 2)
	})
}
