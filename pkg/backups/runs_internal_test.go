package backups

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
)

// TestOneAccountsVerificationsLeaveSlotsForOthers: an account asking for
// verifications or restores on end holds at most its share of a worker's
// stream slots (LEVQOR_BACKUP_MAX_RUNS_PER_ACCOUNT); what it asks beyond
// is handed back to come again later, and another account's run still
// finds a free slot at once.
func TestOneAccountsVerificationsLeaveSlotsForOthers(t *testing.T) {
	t.Parallel()
	set := Settings{MaxRuns: 3, MaxRunsPerAccount: 2, BusyWait: 100 * time.Millisecond, BusyPoll: 10 * time.Millisecond, BusyRetry: time.Second}
	w := &Worker{Settings: set}
	set = w.settings()
	log := logrus.New()
	log.SetOutput(io.Discard)
	ctx := context.Background()

	var held []func()
	for range 2 {
		rel, err := w.streamSlot(ctx, log, set, "acc_flood")
		require.NoError(t, err)
		held = append(held, rel)
	}
	_, err := w.streamSlot(ctx, log, set, "acc_flood")
	var de *bus.DeferError
	require.ErrorAs(t, err, &de, "the flood's third is handed back, to come again later, holding no handler")
	require.Equal(t, set.BusyRetry, de.Delay)
	require.ErrorContains(t, err, "LEVQOR_BACKUP_MAX_RUNS_PER_ACCOUNT")

	// A waiter with no time left takes a free slot or gives up at once.
	now := &busyWaiter{w: w, log: log, set: set, until: time.Now()}
	rel, err := now.slot(ctx, "runs")
	require.NoError(t, err, "another account's run takes the slot the flood left, without waiting")
	rel()

	for _, rel := range held {
		rel()
	}
	rel, err = w.streamSlot(ctx, log, set, "acc_flood")
	require.NoError(t, err, "released, the account streams again")
	rel()
}

// TestLevqorsOwnDirectoriesAreNeverSourcesNorTargets: a path inside
// Levqor's data directory, one that holds it, or a link to it is refused
// naming the field; a sibling passes.
func TestLevqorsOwnDirectoriesAreNeverSourcesNorTargets(t *testing.T) {
	t.Parallel()
	root, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	own := filepath.Join(root, ".levqor")
	require.NoError(t, os.MkdirAll(filepath.Join(own, "blobs"), 0o700))
	require.NoError(t, os.Symlink(own, filepath.Join(root, "sneaky")))
	for _, p := range []string{filepath.Join(own, "blobs"), own, root, filepath.Join(root, "sneaky", "blobs")} {
		_, err := CheckPath("target_path", p, []string{root}, own)
		var ce *command.Error
		require.ErrorAs(t, err, &ce, p)
		require.Equal(t, "target_path", ce.Field)
		require.Contains(t, ce.Message, "overlaps Levqor's own data", p)
	}
	got, err := CheckPath("config.path", filepath.Join(root, "site"), []string{root}, own)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(root, "site"), got)
}
