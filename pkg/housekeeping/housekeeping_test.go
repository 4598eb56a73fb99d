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

func tick(t *testing.T, job string, slot time.Time) *bus.Message {
	t.Helper()
	b, err := json.Marshal(scheduler.Tick{Job: job, Slot: slot})
	require.NoError(t, err)
	return &bus.Message{Subject: "levqor.tick." + job, Data: b, Header: nats.Header{}, Consumer: housekeeping.ConsumerTick}
}

func TestPruneActsOnTheSlotAndIsIdempotent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		slot := time.Date(2026, 6, 1, 3, 17, 0, 0, time.UTC)
		old := slot.Add(-housekeeping.InboxRetentionDefault - time.Hour)
		recent := slot.Add(-time.Hour)
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			for id, at := range map[string]time.Time{"old": old, "recent": recent} {
				if _, err := tx.ClaimInbox(ctx, store.InboxEntry{Consumer: "c", MsgID: id, Subject: "s", ProcessedAt: at}); err != nil {
					return err
				}
			}
			return nil
		}))
		p := &housekeeping.Pruner{Store: st}
		m := tick(t, scheduler.JobHousekeepingPrune, slot)
		require.NoError(t, p.Handle(ctx, m))
		require.NoError(t, p.Handle(ctx, m), "a redelivered tick is harmless")

		err := st.InTx(ctx, func(tx *store.Tx) error {
			claimed, err := tx.ClaimInbox(ctx, store.InboxEntry{Consumer: "c", MsgID: "recent", Subject: "s"})
			require.NoError(t, err)
			require.False(t, claimed, "recent inbox rows are kept: they still deduplicate redeliveries")
			claimed, err = tx.ClaimInbox(ctx, store.InboxEntry{Consumer: "c", MsgID: "old", Subject: "s"})
			require.NoError(t, err)
			require.True(t, claimed, "rows past the retention were pruned")
			return nil
		})
		require.NoError(t, err)
	})
}

func TestMalformedTickIsPermanent(t *testing.T) {
	t.Parallel()
	p := &housekeeping.Pruner{Store: storetest.SQLite(t)}
	err := p.Handle(context.Background(), &bus.Message{Data: []byte(`{`), Header: nats.Header{}})
	require.True(t, bus.IsPermanent(err))
	err = p.Handle(context.Background(), tick(t, "housekeeping.unknown", time.Now()))
	require.True(t, bus.IsPermanent(err))
}
