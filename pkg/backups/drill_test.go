package backups_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// entitleDrills gives the runner's account a tier with restore drills.
func (r *runner) entitleDrills(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	ent := pro
	ent.RestoreDrills = true
	raw, err := json.Marshal(ent)
	require.NoError(t, err)
	require.NoError(t, r.st.InTx(ctx, func(tx *store.Tx) error {
		return tx.SetAccountBilling(ctx, store.AccountBilling{ID: r.acc, Tier: &ent.Tier, Status: "active", Entitlements: raw})
	}))
}

// TestRestoreDrillsProveWhatTheyCanAndReportWhatTheyCannot: entitled
// accounts only; a good snapshot passes, with what it restored; one
// drill per source and slot, then one per DrillEvery; a corrupt blob
// fails the drill, which raises backup.drill_failed.
func TestRestoreDrillsProveWhatTheyCanAndReportWhatTheyCannot(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	r := startRunner(t, st, func(s *backups.Settings) { s.DrillEvery = 24 * time.Hour })
	ctx := t.Context()
	dir := filepath.Join(r.root, "site")
	tree(t, dir)
	src := r.directorySource(t, "site", dir)
	run, c := r.backup(t, src)
	require.Equal(t, store.CommandSucceeded, c.Status, "%+v", c.Error)
	manifest, ok := backups.SummaryOf(run.Snapshot)
	require.True(t, ok)

	slot := time.Now().UTC().Truncate(time.Second)
	sum, err := r.w.RestoreDrills(ctx, slot)
	require.NoError(t, err)
	require.Equal(t, backups.DrillSummary{}, sum, "the growth tier has no drills")

	r.entitleDrills(t)
	sum, err = r.w.RestoreDrills(ctx, slot)
	require.NoError(t, err)
	require.Equal(t, backups.DrillSummary{Passed: 1}, sum)
	drills, err := st.ListDrills(ctx, src, 10)
	require.NoError(t, err)
	require.Len(t, drills, 1)
	d := drills[0]
	require.Equal(t, store.DrillPassed, d.Result, d.Reason)
	require.Equal(t, run.SnapshotID, d.SnapshotID)
	require.EqualValues(t, manifest.Files, d.Files)
	require.Equal(t, manifest.SourceBytes, d.Bytes)
	leftovers, err := filepath.Glob(filepath.Join(os.TempDir(), "levqor-drill-*"))
	require.NoError(t, err)
	for _, l := range leftovers {
		fi, err := os.Stat(l)
		require.True(t, err != nil || fi.ModTime().Before(d.StartedAt), "the scratch directory %s is cleaned up", l)
	}

	sum, err = r.w.RestoreDrills(ctx, slot)
	require.NoError(t, err)
	require.Equal(t, backups.DrillSummary{}, sum, "a redelivered tick drills nothing twice")
	sum, err = r.w.RestoreDrills(ctx, slot.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, backups.DrillSummary{}, sum, "drilled an hour ago: not due")

	snap, err := st.GetSnapshot(ctx, run.SnapshotID)
	require.NoError(t, err)
	flipByte(t, filepath.Join(r.local.Root(), filepath.FromSlash(snap.BlobKey)))
	sum, err = r.w.RestoreDrills(ctx, slot.Add(25*time.Hour))
	require.NoError(t, err)
	require.Equal(t, backups.DrillSummary{Failed: 1}, sum)
	drills, err = st.ListDrills(ctx, src, 10)
	require.NoError(t, err)
	require.Equal(t, store.DrillFailed, drills[0].Result)
	require.Contains(t, drills[0].Reason, "the restore failed")
	failed := r.events(t, events.NameDrillFailed)
	require.Len(t, failed, 1)
	require.Equal(t, drills[0].ID, failed[0]["drill_id"])
	require.Equal(t, "drill_failed:"+drills[0].ID, failed[0]["incident"])
}
