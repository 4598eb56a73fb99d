package bus_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
)

// TestADeadReplayIsTheDLQConsumersToHandle: a replay meant for one
// consumer that dead-letters must not stay addressed to that consumer, or
// the DLQ's own consumers would skip it (and a dead command would never
// be marked failed).
func TestADeadReplayIsTheDLQConsumersToHandle(t *testing.T) {
	t.Parallel()
	m := &bus.Message{Subject: "levqor.cmd.billing.checkout", Stream: "COMMANDS", Consumer: "billing-cmd", StreamSeq: 9, Deliveries: 5,
		Header: nats.Header{bus.HeaderMsgID: {"replay:DLQ:3"}, bus.HeaderOriginalMsgID: {"cmd_1"}, bus.HeaderReplayOf: {"3"},
			bus.HeaderReplayFor: {"billing-cmd"}, bus.HeaderReplayForce: {"true"}, bus.HeaderCorrelationID: {"corr"}}}
	h := bus.DeadLetterHeaders(m, "failed again", time.Now())
	require.Empty(t, h.Get(bus.HeaderReplayFor))
	require.Empty(t, h.Get(bus.HeaderReplayForce))
	require.Equal(t, "billing-cmd", h.Get(bus.HeaderDlqConsumer))
	require.Equal(t, "cmd_1", h.Get(bus.HeaderOriginalMsgID))
	require.Equal(t, "corr", h.Get(bus.HeaderCorrelationID))
	dead := &bus.Message{Header: h, Consumer: "billing-dlq"}
	require.False(t, dead.ForOtherConsumer(), "the DLQ consumer runs it")
}
