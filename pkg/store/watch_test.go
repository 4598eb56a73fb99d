package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func advance(t *testing.T, s *store.Store, job string, slot time.Time) bool {
	t.Helper()
	var moved bool
	require.NoError(t, s.InTx(t.Context(), func(tx *store.Tx) error {
		var err error
		moved, err = tx.AdvanceTickWatermark(t.Context(), store.AdvanceTickWatermarkParams{Job: job, Slot: slot})
		return err
	}))
	return moved
}

func TestTickWatermark(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		slot := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
		require.True(t, advance(t, s, "a.job", slot), "the first slot moves it")
		require.False(t, advance(t, s, "a.job", slot), "the same slot again is stale")
		require.False(t, advance(t, s, "a.job", slot.Add(-time.Minute)), "an older slot is stale")
		require.True(t, advance(t, s, "a.job", slot.Add(time.Second)), "a newer slot moves it")
		require.True(t, advance(t, s, "b.job", slot), "jobs are independent")
		require.False(t, advance(t, s, "a.job", slot.In(time.FixedZone("X", 3600)).Add(time.Second)), "compared as instants, whatever the zone")

		// A rolled-back advance leaves the watermark behind.
		boom := errors.New("boom")
		err := s.InTx(t.Context(), func(tx *store.Tx) error {
			moved, err := tx.AdvanceTickWatermark(t.Context(), store.AdvanceTickWatermarkParams{Job: "a.job", Slot: slot.Add(time.Hour)})
			require.NoError(t, err)
			require.True(t, moved)
			return boom
		})
		require.ErrorIs(t, err, boom)
		require.True(t, advance(t, s, "a.job", slot.Add(time.Hour)), "the rolled-back slot can be acted on again")

		err = s.InTx(t.Context(), func(tx *store.Tx) error {
			_, err := tx.AdvanceTickWatermark(t.Context(), store.AdvanceTickWatermarkParams{Job: "a.job"})
			return err
		})
		require.ErrorContains(t, err, "job and slot are required")
	})
}

func TestTickWatermarkSerialisesConcurrentSlots(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		slot := time.Date(2026, 6, 1, 10, 1, 0, 0, time.UTC)
		advanced := make(chan struct{})
		release := make(chan struct{})
		first := make(chan error, 1)
		go func() {
			first <- s.InTx(ctx, func(tx *store.Tx) error {
				if _, err := tx.AdvanceTickWatermark(ctx, store.AdvanceTickWatermarkParams{Job: "w", Slot: slot}); err != nil {
					return err
				}
				close(advanced)
				<-release
				return tx.SaveWatchState(ctx, store.WatchState{Consumer: "c", DLQMessages: 5, Slot: slot})
			})
		}()
		<-advanced
		second := make(chan map[string]store.WatchState, 1)
		go func() {
			_ = s.InTx(ctx, func(tx *store.Tx) error {
				moved, err := tx.AdvanceTickWatermark(ctx, store.AdvanceTickWatermarkParams{Job: "w", Slot: slot.Add(time.Minute)})
				if err != nil || !moved {
					second <- nil
					return err
				}
				states, err := tx.WatchStates(ctx)
				second <- states
				return err
			})
		}()
		select {
		case <-second:
			t.Fatal("the later slot went ahead while the earlier one was uncommitted")
		case <-time.After(200 * time.Millisecond):
		}
		close(release)
		require.NoError(t, <-first)
		select {
		case states := <-second:
			require.NotNil(t, states, "the later slot moved the watermark")
			require.EqualValues(t, 5, states["c"].DLQMessages, "and saw what the earlier slot committed")
		case <-time.After(10 * time.Second):
			t.Fatal("the later slot never ran")
		}
	})
}

func TestWatchStates(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		slot := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
		require.NoError(t, s.InTx(ctx, func(tx *store.Tx) error {
			states, err := tx.WatchStates(ctx)
			require.NoError(t, err)
			require.Empty(t, states)
			require.NoError(t, tx.SaveWatchState(ctx, store.WatchState{Consumer: "billing-stripe", Stream: "STRIPE", DLQMessages: 2, Slot: slot}))
			require.NoError(t, tx.SaveWatchState(ctx, store.WatchState{Consumer: "gone-cmd", DLQMessages: 1, Stuck: true, Slot: slot, UpdatedAt: base}))
			return tx.SaveWatchState(ctx, store.WatchState{Consumer: "billing-stripe", Stream: "STRIPE", DLQMessages: 3, Stuck: true, Slot: slot.Add(time.Minute)})
		}))
		require.NoError(t, s.InTx(ctx, func(tx *store.Tx) error {
			states, err := tx.WatchStates(ctx)
			require.NoError(t, err)
			require.Len(t, states, 2)
			b := states["billing-stripe"]
			require.Equal(t, "STRIPE", b.Stream)
			require.EqualValues(t, 3, b.DLQMessages, "the newer state replaced the older")
			require.True(t, b.Stuck)
			require.Equal(t, slot.Add(time.Minute), b.Slot)
			require.Equal(t, time.UTC, b.Slot.Location())
			g := states["gone-cmd"]
			require.Empty(t, g.Stream)
			require.Equal(t, base.UTC().Truncate(time.Microsecond), g.UpdatedAt)
			return nil
		}))
		err := s.InTx(ctx, func(tx *store.Tx) error {
			return tx.SaveWatchState(ctx, store.WatchState{Consumer: "x", Slot: slot, DLQMessages: -1})
		})
		require.ErrorContains(t, err, "negative")
	})
}
