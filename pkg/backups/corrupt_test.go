package backups_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/retention"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// A corrupt snapshot never counts as the newest good one: the newest
// snapshot verification has not condemned is protected instead.
func TestSweepNeverCountsACorruptSnapshotAsTheNewestGood(t *testing.T) {
	t.Parallel()
	b := setup(t, storetest.SQLite(t), starter)
	src := b.source(t, &retention.Policy{KeepDaily: 1})
	ids := b.daily(t, src, 4, day(20)) // 17, 18, 19, 20 October
	newest, older := ids[3], ids[2]
	require.NoError(t, b.st.InTx(t.Context(), func(tx *store.Tx) error {
		_, err := tx.SetSnapshotIntegrity(t.Context(), newest, store.SnapshotCorrupt, "its blob's SHA-256 differs", time.Now())
		return err
	}))

	// keep_daily 1 keeps the newest snapshot, which is corrupt: without
	// the guard every good snapshot would go.
	res := b.sweep(t, src, day(21))
	require.Equal(t, store.SnapshotActive, b.state(t, newest), "the policy keeps the corrupt snapshot")
	require.Equal(t, store.SnapshotActive, b.state(t, older), "the newest good snapshot is kept")
	require.Equal(t, store.SnapshotTrash, b.state(t, ids[0]))
	require.Equal(t, store.SnapshotTrash, b.state(t, ids[1]))
	var reasons []string
	for _, e := range res.Snapshots {
		if e.ID == older {
			reasons = e.Reasons
		}
	}
	require.Contains(t, reasons, backups.ReasonNewestGood)
}
