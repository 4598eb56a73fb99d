package bus_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
)

// TestRouterRecordsTheFailedMessagesAccount: the failure record names the
// account of the message (its Levqor-Account header), so that dead letters
// piling up for one account can be told apart from the platform's.
func TestRouterRecordsTheFailedMessagesAccount(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.run(t, func(ctx context.Context, m *bus.Message) error {
		return bus.Permanentf("unknown source")
	})
	h := nats.Header{}
	h.Set(bus.HeaderAccount, "acc_1")
	_, err := b.pub.Publish(context.Background(), b.env.Topo.Subject(bus.Commands, "test.do"), "with-account", h, []byte("{}"))
	require.NoError(t, err)
	b.publish(t, "without-account", "{}")
	b.settled(t)

	byMsg := map[string]bus.Failure{}
	for _, f := range b.fail.all() {
		byMsg[f.MsgID] = f
	}
	require.Len(t, byMsg, 2)
	require.Equal(t, "acc_1", byMsg["with-account"].AccountID)
	require.True(t, byMsg["with-account"].DeadLettered)
	require.Empty(t, byMsg["without-account"].AccountID)
}
