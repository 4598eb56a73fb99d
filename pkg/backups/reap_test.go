package backups_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// TestAbandonedRunsAreFailedAndTold: a run whose worker stopped stays
// running until backup.reap_stale_runs fails it, says why, and raises
// backup.run_failed; a run that is alive, or was taken up again, is left
// alone.
func TestAbandonedRunsAreFailedAndTold(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		b := setup(t, st, starter)
		src := b.source(t, nil)
		now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
		start := func(id string, at time.Time) {
			t.Helper()
			require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
				_, err := tx.StartRun(ctx, store.BackupRun{ID: id, AccountID: b.acc, SourceID: src, CommandID: "cmd_" + id, Trigger: store.RunManual}, at)
				return err
			}))
		}
		start("run_dead", now.Add(-time.Hour))
		start("run_alive", now.Add(-time.Minute))
		start("run_back", now.Add(-time.Hour))
		start("run_back", now.Add(-30*time.Second)) // redelivered to another worker since

		tick, err := json.Marshal(scheduler.Tick{Job: scheduler.JobBackupReapStaleRuns, Slot: now})
		require.NoError(t, err)
		m := &bus.Message{Subject: "levqor.tick.backup.reap_stale_runs", Data: tick,
			Header: nats.Header{bus.HeaderMsgID: {scheduler.MsgID(scheduler.JobBackupReapStaleRuns, now)}},
			Stream: "TICKS", Consumer: backups.ConsumerBackupTicks, Deliveries: 1}
		require.NoError(t, b.w.HandleBackupTick(ctx, m))

		dead, err := st.GetRun(ctx, "run_dead")
		require.NoError(t, err)
		require.Equal(t, store.RunFailed, dead.State)
		require.Equal(t, "the worker running it stopped: no sign of life since 2026-12-06T11:00:00Z", dead.Error)
		require.NotNil(t, dead.FinishedAt)
		for _, id := range []string{"run_alive", "run_back"} {
			r, err := st.GetRun(ctx, id)
			require.NoError(t, err)
			require.Equal(t, store.RunRunning, r.State, id)
		}

		failed := outboxEvents[events.BackupRunFailed](t, st)
		require.Len(t, failed, 1)
		require.Equal(t, "run_dead", failed[0].RunID)
		require.Equal(t, "run_failed:run_dead", failed[0].Incident, "the incident every failure of the run shares: told once")
		audit := b.audit(t, src)
		require.Equal(t, backups.AuditRunFailed, audit[0].Action)
		require.Equal(t, "reap:backup.reap_stale_runs@2026-12-06T12:00:00Z", audit[0].Actor)

		m.Deliveries = 2
		require.NoError(t, b.w.HandleBackupTick(ctx, m))
		n, err := b.w.ReapStaleRuns(ctx, now, "again")
		require.NoError(t, err)
		require.Zero(t, n, "a reaped run is not reaped twice")
	})
}
