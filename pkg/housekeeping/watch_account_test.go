package housekeeping_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// accountEvent is a per-account ops.dlq_growing in the outbox.
type accountEvent struct {
	header string
	body   events.DLQGrowing
}

// accountEvents returns the outbox's ops.dlq_growing events that name an
// account, oldest first, and how many events the outbox holds in all.
func accountEvents(t *testing.T, st *store.Store) ([]accountEvent, int) {
	t.Helper()
	msgs, err := st.UnpublishedOutbox(context.Background(), 1000)
	require.NoError(t, err)
	var out []accountEvent
	for _, m := range msgs {
		if m.Subject != "levqor.event.ops.dlq_growing" {
			continue
		}
		var body events.DLQGrowing
		require.NoError(t, json.Unmarshal(m.Payload, &body))
		if body.AccountID == "" {
			continue
		}
		out = append(out, accountEvent{header: m.Headers[bus.HeaderAccount], body: body})
	}
	return out, len(msgs)
}

// TestWatchDeadLettersPerAccount: an account whose messages a consumer
// dead-lettered at least the threshold of times since the previous watch
// gets one ops.dlq_growing naming it; below the threshold, or counted in an
// earlier watch already, nothing is raised.
func TestWatchDeadLettersPerAccount(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		e := newWatchEnv(t, st)
		ctx := context.Background()
		slot := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
		n := 0
		fail := func(consumer, account string, dead bool, at time.Time) {
			t.Helper()
			n++
			require.NoError(t, st.RecordFailure(ctx, store.Failure{
				Consumer: consumer, MsgID: fmt.Sprintf("cmd_%d", n), Subject: "levqor.cmd.test.do", Stream: "COMMANDS",
				StreamSeq: uint64(n), Deliveries: 5, AccountID: account, Error: "permanent: unknown source", DeadLettered: dead, At: at,
			}))
		}
		for i := 0; i < 3; i++ {
			fail("test-cmd", "acc_a", true, slot.Add(-10*time.Minute))
		}
		fail("test-cmd", "acc_b", true, slot.Add(-5*time.Minute)) // two: below the threshold
		fail("test-cmd", "acc_b", true, slot.Add(-5*time.Minute))
		fail("test-cmd", "acc_b", false, slot.Add(-5*time.Minute)) // still being retried
		fail("test-cmd", "acc_c", true, slot.Add(-2*time.Hour))    // before the first watch's hour
		fail("test-cmd", "acc_c", true, slot.Add(-2*time.Hour))
		fail("test-cmd", "acc_c", true, slot.Add(-2*time.Hour))
		for i := 0; i < 3; i++ {
			fail("test-cmd", "", true, slot.Add(-time.Minute)) // the platform's: no account
		}

		first := tick(t, scheduler.JobHousekeepingWatch, slot)
		e.watch(t, first)
		evs, total := accountEvents(t, st)
		require.Len(t, evs, 1, "only acc_a reached the threshold in the hour before the first watch")
		require.Equal(t, 1, total, "and the DLQ stream itself did not grow")
		require.Equal(t, "acc_a", evs[0].header, "the Levqor-Account header names the account")
		require.Equal(t, "acc_a", evs[0].body.AccountID)
		require.Equal(t, "test-cmd", evs[0].body.Consumer)
		require.Equal(t, "COMMANDS", evs[0].body.Stream)
		require.Equal(t, 3, evs[0].body.DeadLettered)
		require.True(t, slot.Equal(evs[0].body.Slot))
		require.Nil(t, evs[0].body.PreviousSlot, "no watch before this one")

		t.Run("RedeliveredTickHasOneEffect", func(t *testing.T) {
			e.watch(t, first)
			evs, _ := accountEvents(t, st)
			require.Len(t, evs, 1)
		})
		t.Run("NextWindowCountsOnlyNewDeadLetters", func(t *testing.T) {
			next := slot.Add(time.Minute)
			fail("test-cmd", "acc_b", true, slot.Add(20*time.Second)) // acc_b: 1 new, 2 counted before
			for i := 0; i < 3; i++ {
				fail("test-cmd", "acc_d", true, slot.Add(30*time.Second))
			}
			fail("test-cmd", "acc_a", true, next.Add(time.Second)) // after the slot: the next window's
			e.watch(t, tick(t, scheduler.JobHousekeepingWatch, next))
			evs, _ := accountEvents(t, st)
			require.Len(t, evs, 2, "acc_a's dead letters were counted by the previous watch; acc_b is below the threshold: %+v", evs)
			require.Equal(t, "acc_d", evs[1].body.AccountID)
			require.Equal(t, "acc_d", evs[1].header)
			require.Equal(t, 3, evs[1].body.DeadLettered)
			require.NotNil(t, evs[1].body.PreviousSlot)
			require.True(t, slot.Equal(*evs[1].body.PreviousSlot), "the window starts at the previous watch's slot")
		})
		t.Run("ThresholdIsConfigurable", func(t *testing.T) {
			e.w.DLQAccountThreshold = 1
			t.Cleanup(func() { e.w.DLQAccountThreshold = 0 })
			e.watch(t, tick(t, scheduler.JobHousekeepingWatch, slot.Add(2*time.Minute)))
			evs, _ := accountEvents(t, st)
			require.Len(t, evs, 3, "acc_a's single dead letter after the last slot now reaches the threshold")
			require.Equal(t, "acc_a", evs[2].body.AccountID)
			require.Equal(t, 1, evs[2].body.DeadLettered)
		})
	})
}
