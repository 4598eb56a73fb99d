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
		ctx := t.Context()
		deliver := func(consumer string, replay ...string) {
			t.Helper()
			m := &bus.Message{
				Subject: "levqor.stripe.invoice.paid", Header: nats.Header{bus.HeaderMsgID: {"evt_1"}},
				Stream: "STRIPE", Consumer: consumer, StreamSeq: 7, Deliveries: 1,
			}
			if len(replay) > 0 {
				// An operator's forced replay of evt_1 for one consumer.
				m.Header = nats.Header{bus.HeaderMsgID: {"replay:evt_1"}, bus.HeaderOriginalMsgID: {"evt_1"},
					bus.HeaderReplayFor: {replay[0]}, bus.HeaderReplayForce: {"true"}}
			}
			require.NoError(t, h(ctx, m))
		}

		deliver("billing-stripe")
		deliver("billing-stripe")
		require.Equal(t, 1, ran["billing-stripe"], "a redelivery changes nothing")

		deliver("billing-stripe", "billing-stripe")
		require.Equal(t, 2, ran["billing-stripe"], "the operator asked for a re-run")
		deliver("billing-stripe", "billing-stripe")
		require.Equal(t, 2, ran["billing-stripe"], "once: a redelivery of the replay is a duplicate")

		deliver("support-stripe", "billing-stripe")
		require.Equal(t, 1, ran["support-stripe"], "first delivery to another consumer")
		deliver("support-stripe", "billing-stripe")
		require.Equal(t, 1, ran["support-stripe"], "force is for the named consumer only")

		states, err := s.ConsumerStates(ctx, "evt_1")
		require.NoError(t, err)
		require.Len(t, states, 2)
	})
}
