package ops_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func TestWaitHandledSaysHowEachConsumerDid(t *testing.T) {
	t.Parallel()
	b := setup(t, storetest.SQLite(t), ops.Settings{})
	b.workers[billingC].broken.Store(true)
	subject := b.nats.Topo.Subject(bus.Stripe, "invoice.paid")

	t.Run("NoConsumerYet", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := ops.WaitHandled(ctx, b.nats.JS, b.nats.Topo, bus.Ticks, b.nats.Topo.Subject(bus.Ticks, "nobody.reads"), 1)
		require.ErrorIs(t, err, ops.ErrNoConsumer)
	})

	b.run(billingC, supportC)
	seq := b.publish("invoice.paid", "evt_wait", `{"id":"evt_wait","poison":true}`)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	got, err := ops.WaitHandled(ctx, b.nats.JS, b.nats.Topo, bus.Stripe, subject, seq)
	require.NoError(t, err)
	require.Len(t, got, 2)
	byName := map[string]ops.Handling{}
	for _, h := range got {
		byName[h.Consumer] = h
	}
	require.Equal(t, ops.HandlingDeadLettered, byName[billingC].State, "the broken consumer dead-lettered it")
	require.Contains(t, byName[billingC].Reason, "amount_due is missing")
	require.NotZero(t, byName[billingC].DLQSeq)
	require.Equal(t, ops.HandlingDone, byName[supportC].State)

	// A later message the consumers never settle keeps the wait going
	// until the deadline, and says who is pending.
	b.workers[billingC].transient.Store(true)
	seq = b.publish("invoice.paid", "evt_wait_2", `{"id":"evt_wait_2"}`)
	short, cancelShort := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancelShort()
	got, err = ops.WaitHandled(short, b.nats.JS, b.nats.Topo, bus.Stripe, subject, seq)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	for _, h := range got {
		if h.Consumer == billingC {
			require.Equal(t, ops.HandlingPending, h.State)
		}
	}
}
