package bus_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/keys"
)

// TestARouterWithTheBusKeyTakesOnlyProvedTicks: a tick a publisher with
// the key sent is handled; one without its proof, or proved with another
// key, is dead-lettered unhandled, saying why, and the dead letter itself
// carries the router's proof.
func TestARouterWithTheBusKeyTakesOnlyProvedTicks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key, err := keys.ParseBusKey(strings.Repeat("ab", 32))
	require.NoError(t, err)
	other, err := keys.ParseBusKey(strings.Repeat("ef", 32))
	require.NoError(t, err)
	b.cfg.BusKey = key
	b.spec = bus.ConsumerSpec{Name: "test-tick", Kind: bus.Ticks, Filter: "test.>"}
	var handled atomic.Int32
	b.run(t, func(ctx context.Context, m *bus.Message) error {
		handled.Add(1)
		return nil
	})
	subject := b.env.Topo.Subject(bus.Ticks, "test.job")
	publish := func(pub *bus.Publisher, id string) {
		_, err := pub.Publish(context.Background(), subject, id, nats.Header{}, []byte(`{"job":"test.job"}`))
		require.NoError(t, err)
	}
	publish(bus.NewPublisher(b.env.JS, b.env.Topo, bus.WithBusKey(key)), "proved")
	require.Eventually(t, func() bool { return handled.Load() == 1 }, 10*time.Second, 10*time.Millisecond)

	publish(b.pub, "unproved")
	publish(bus.NewPublisher(b.env.JS, b.env.Topo, bus.WithBusKey(other)), "other-key")
	require.Eventually(t, func() bool { return b.env.StreamMsgs(t, bus.DLQ) == 2 }, 10*time.Second, 10*time.Millisecond)
	require.EqualValues(t, 1, handled.Load(), "neither was handled")
	for _, m := range b.env.Messages(t, bus.DLQ) {
		require.Contains(t, m.Header.Get(bus.HeaderDlqReason), "no valid proof that a Levqor process published it")
		require.NoError(t, key.CheckMessage(m.Header.Get(keys.HeaderBusProof), m.Data), "the dead letter is the router's, proved")
	}
}
