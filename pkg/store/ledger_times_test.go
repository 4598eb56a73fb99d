package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func TestStripeEventsRecordedAt(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		var ids []string
		require.NoError(t, s.InTx(ctx, func(tx *store.Tx) error {
			for i := 0; i < 1200; i++ {
				id := fmt.Sprintf("evt_t%d", i)
				ids = append(ids, id)
				if _, err := tx.InsertStripeEvent(ctx, store.StripeEvent{ID: id, Type: "invoice.paid", Created: at, ReceivedAt: at, RecordedAt: at.Add(time.Duration(i) * time.Millisecond), Payload: []byte(`{}`)}); err != nil {
					return err
				}
			}
			return nil
		}))
		got, err := s.StripeEventsRecordedAt(ctx, append(ids, "evt_absent"))
		require.NoError(t, err)
		require.Len(t, got, 1200, "every recorded id across batches, and no absent one")
		require.Equal(t, at.Add(1199*time.Millisecond), got["evt_t1199"])
	})
}
