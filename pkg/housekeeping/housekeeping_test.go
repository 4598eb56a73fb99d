package housekeeping_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/housekeeping"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// tick is a tick as the router hands it to the housekeeping consumer.
func tick(t *testing.T, job string, slot time.Time) *bus.Message {
	t.Helper()
	b, err := json.Marshal(scheduler.Tick{Job: job, Slot: slot})
	require.NoError(t, err)
	id := scheduler.MsgID(job, slot)
	return &bus.Message{
		Subject:  "levqor.tick." + job,
		Data:     b,
		Header:   nats.Header{bus.HeaderMsgID: {id}, bus.HeaderCorrelationID: {id}},
		Consumer: housekeeping.ConsumerTick,
		Stream:   "TICKS",
	}
}

func TestRetentionsFollowTheStreams(t *testing.T) {
	t.Parallel()
	topo := bus.Topology{}.WithDefaults()
	require.Equal(t, 66*24*time.Hour, housekeeping.InboxRetention(topo),
		"35 days of STRIPE, 30 in the DLQ before a replay, and a day's margin")
	require.Equal(t, 14*24*time.Hour, housekeeping.OutboxRetention(topo), "as long as EVENTS keeps the events")
	topo.Streams[bus.Stripe] = bus.StreamSettings{MaxAge: 90 * 24 * time.Hour, Duplicates: time.Hour}
	require.Equal(t, 121*24*time.Hour, housekeeping.InboxRetention(topo))
}

func TestPruneActsOnTheSlotAndIsIdempotent(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		topo := bus.Topology{}.WithDefaults()
		// Far from now, so that only acting on the slot can give the
		// result below.
		slot := time.Date(2031, 6, 1, 3, 17, 0, 0, time.UTC)
		inRet, outRet := housekeeping.InboxRetention(topo), housekeeping.OutboxRetention(topo)
		var ids []int64
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			for id, at := range map[string]time.Time{"old": slot.Add(-inRet - time.Hour), "recent": slot.Add(-inRet + time.Hour)} {
				if _, err := tx.ClaimInbox(ctx, store.InboxEntry{Consumer: "c", MsgID: id, Subject: "s", ProcessedAt: at}); err != nil {
					return err
				}
			}
			for i := 0; i < 3; i++ {
				id, err := tx.EnqueueOutbox(ctx, store.OutboxMessage{Subject: "levqor.event.x", Payload: []byte("{}")})
				if err != nil {
					return err
				}
				ids = append(ids, id)
			}
			return nil
		}))
		require.NoError(t, st.MarkOutboxPublished(ctx, ids[:1], slot.Add(-outRet-time.Hour)))
		require.NoError(t, st.MarkOutboxPublished(ctx, ids[1:2], slot.Add(-outRet+time.Hour)))
		// ids[2] stays unpublished, however old.
		for id, at := range map[string]time.Time{"cmd_old": slot.Add(-inRet - time.Hour), "cmd_recent": slot.Add(-inRet + time.Hour)} {
			_, _, err := st.CreateCommand(ctx, store.Command{ID: id, Scope: "operator", Domain: "accounts", Action: "create", RequestHash: "h", CreatedAt: at})
			require.NoError(t, err)
			require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
				return tx.CompleteCommand(ctx, store.CommandOutcome{ID: id, Status: store.CommandSucceeded, HTTPStatus: 200, Result: []byte(`{}`), At: at})
			}))
		}

		p := &housekeeping.Pruner{Store: st, Topology: topo}
		m := tick(t, scheduler.JobHousekeepingPrune, slot)
		require.NoError(t, p.Handle(ctx, m))
		require.NoError(t, p.Handle(ctx, m), "a redelivered tick is harmless")

		err := st.InTx(ctx, func(tx *store.Tx) error {
			claimed, err := tx.ClaimInbox(ctx, store.InboxEntry{Consumer: "c", MsgID: "recent", Subject: "s"})
			require.NoError(t, err)
			require.False(t, claimed, "recent inbox rows are kept: they still deduplicate redeliveries and replays")
			claimed, err = tx.ClaimInbox(ctx, store.InboxEntry{Consumer: "c", MsgID: "old", Subject: "s"})
			require.NoError(t, err)
			require.True(t, claimed, "rows past the retention were pruned")
			return nil
		})
		require.NoError(t, err)
		var left []int64
		require.NoError(t, st.DB().SelectContext(ctx, &left, `SELECT id FROM outbox ORDER BY id`))
		require.Equal(t, ids[1:], left, "only the outbox row published before the retention is gone")
		_, err = st.GetCommand(ctx, "cmd_old")
		require.ErrorIs(t, err, store.ErrNotFound, "a command finished before the inbox retention is pruned")
		_, err = st.GetCommand(ctx, "cmd_recent")
		require.NoError(t, err, "a recent command keeps its status and result")
	})
}

func TestMalformedTickIsPermanent(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	h := housekeeping.Dispatch(&housekeeping.Pruner{Store: st}, &housekeeping.Watcher{Store: st})
	err := h(context.Background(), &bus.Message{Data: []byte(`{`), Header: nats.Header{}})
	require.True(t, bus.IsPermanent(err))
	err = h(context.Background(), tick(t, "housekeeping.unknown", time.Now()))
	require.True(t, bus.IsPermanent(err))
	require.ErrorContains(t, err, "housekeeping.unknown")
}
