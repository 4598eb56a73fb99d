package backups_test

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/inbox"
	"github.com/levqor/levqor/pkg/retention"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

var seq atomic.Int64

func event(t *testing.T, what, account string, payload map[string]any) *bus.Message {
	t.Helper()
	n := seq.Add(1)
	payload["account_id"] = account
	data, err := json.Marshal(payload)
	require.NoError(t, err)
	return &bus.Message{
		Subject: "levqor.event.billing." + what, Data: data, Stream: "EVENTS", Consumer: backups.ConsumerEvents,
		Header:    nats.Header{bus.HeaderMsgID: {fmt.Sprintf("outbox-%d-%d", time.Now().UnixNano(), n)}, bus.HeaderAccount: {account}},
		StreamSeq: uint64(n), Deliveries: 1, Published: time.Now().UTC(),
	}
}

// TestTierChangeIsAudited: billing downgrades the account; each source's
// audit trail says what its policy is now, and a source policy beyond the
// new tier is reported cut to it. A redelivery records nothing twice.
func TestTierChangeIsAudited(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		growth := catalog.Entitlements{Tier: "growth", StorageGB: 500, Sources: 5, SLA: "standard",
			Retention: retention.Policy{KeepDaily: 14, KeepWeekly: 8, KeepMonthly: 6}}
		b := setup(t, st, growth)
		follows := b.source(t, nil)
		own := b.source(t, &retention.Policy{KeepDaily: 10, KeepMonthly: 6})
		h := inbox.Handler(st, b.w.HandleEvent)

		m := event(t, "entitlements_changed", b.acc, map[string]any{
			"tier": "starter", "previous_tier": "growth", "entitlements": starter, "previous_entitlements": growth,
		})
		require.NoError(t, h(t.Context(), m))
		require.NoError(t, h(t.Context(), m), "redelivered")

		f := b.audit(t, follows)
		require.Len(t, f, 1)
		require.Equal(t, backups.AuditDefaultChanged, f[0].Action)
		require.Equal(t, "billing", f[0].Actor)
		require.JSONEq(t, `{"keep_daily":7,"keep_weekly":4}`, string(f[0].Policy))
		require.Contains(t, f[0].Reasons[0], "from growth to starter")

		o := b.audit(t, own)
		require.Len(t, o, 1)
		require.JSONEq(t, `{"keep_daily":7}`, string(o[0].Policy), "cut to the starter tier's limits")
		require.Len(t, o[0].Reasons, 3, "the change and one note per cut rule: %v", o[0].Reasons)

		same := event(t, "entitlements_changed", b.acc, map[string]any{
			"tier": "starter", "previous_tier": "starter", "entitlements": starter, "previous_entitlements": catalog.Entitlements{Tier: "starter", Sources: 3, Retention: starter.Retention},
		})
		require.NoError(t, h(t.Context(), same))
		require.Len(t, b.audit(t, follows), 1, "only the source count changed: nothing for retention to record")

		// An upgrade that reaches the worker after a source was created:
		// the new source's trail does not say the tier changed before it
		// existed; the older sources' trails record it.
		changed := time.Now().UTC()
		time.Sleep(5 * time.Millisecond)
		late := b.source(t, nil)
		up := event(t, "entitlements_changed", b.acc, map[string]any{
			"tier": "growth", "previous_tier": "starter", "entitlements": growth, "previous_entitlements": starter, "at": changed,
		})
		require.NoError(t, h(t.Context(), up))
		require.Len(t, b.audit(t, follows), 2)
		for _, a := range b.audit(t, late) {
			require.NotEqual(t, backups.AuditDefaultChanged, a.Action, "%+v", a)
		}
	})
}

func TestSuspensionIsAudited(t *testing.T) {
	t.Parallel()
	b := setup(t, storetest.SQLite(t), starter)
	src := b.source(t, nil)
	h := inbox.Handler(b.st, b.w.HandleEvent)
	require.NoError(t, h(t.Context(), event(t, "account_status_changed", b.acc, map[string]any{"status": "suspended", "previous_status": "past_due"})))
	require.NoError(t, h(t.Context(), event(t, "account_status_changed", b.acc, map[string]any{"status": "active", "previous_status": "suspended"})))
	require.NoError(t, h(t.Context(), event(t, "account_status_changed", b.acc, map[string]any{"status": "past_due", "previous_status": "active"})))
	require.NoError(t, h(t.Context(), event(t, "payment_failed", b.acc, map[string]any{"invoice_id": "in_1"})), "other billing events are acknowledged")
	entries := b.audit(t, src)
	require.Len(t, entries, 2)
	require.Equal(t, backups.AuditRetentionResumed, entries[0].Action)
	require.Equal(t, backups.AuditRetentionPaused, entries[1].Action)

	bad := event(t, "entitlements_changed", "", map[string]any{})
	bad.Header.Del(bus.HeaderAccount)
	err := h(t.Context(), bad)
	require.True(t, bus.IsPermanent(err), "an event without an account can never apply: %v", err)
}

// TestTickSweepsEverySourceAtItsSlot: the backup.sweep tick sweeps all
// sources at the slot (not at the time it runs), and a redelivered tick
// changes nothing more.
func TestTickSweepsEverySourceAtItsSlot(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, starter)
		a, c := b.source(t, nil), b.source(t, nil)
		aids, cids := b.daily(t, a, 10, day(10)), b.daily(t, c, 10, day(10))
		slot := day(10).Add(time.Hour).UTC()
		tick, err := json.Marshal(scheduler.Tick{Job: scheduler.JobBackupSweep, Slot: slot})
		require.NoError(t, err)
		m := &bus.Message{Subject: "levqor.tick.backup.sweep", Data: tick, Header: nats.Header{bus.HeaderMsgID: {scheduler.MsgID(scheduler.JobBackupSweep, slot)}},
			Stream: "TICKS", Consumer: backups.ConsumerBackupTicks, Deliveries: 1}
		require.NoError(t, b.w.HandleBackupTick(t.Context(), m))
		for _, id := range []string{aids[1], aids[2], cids[1], cids[2]} {
			require.Equal(t, store.SnapshotTrash, b.state(t, id))
		}
		trashed, err := st.GetSnapshot(t.Context(), aids[1])
		require.NoError(t, err)
		require.True(t, trashed.TrashedAt.Equal(slot), "acts at the slot")
		entries := b.audit(t, a)
		require.Equal(t, "sweep:backup.sweep@"+slot.Format(time.RFC3339), entries[0].Actor)

		m.Deliveries = 2
		require.NoError(t, b.w.HandleBackupTick(t.Context(), m))
		require.Len(t, b.audit(t, a), 2, "redelivery: nothing more")

		other, err := json.Marshal(scheduler.Tick{Job: "backup.nope", Slot: slot})
		require.NoError(t, err)
		m.Data = other
		require.True(t, bus.IsPermanent(b.w.HandleBackupTick(t.Context(), m)))
	})
}

// TestSweepTickUnderItsFormerName: during an upgrade a scheduler of the
// previous release publishes retention.sweep, which retention-tick still
// runs.
func TestSweepTickUnderItsFormerName(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	b := setup(t, st, starter)
	a := b.source(t, nil)
	ids := b.daily(t, a, 10, day(10))
	slot := day(10).Add(time.Hour).UTC()
	tick, err := json.Marshal(scheduler.Tick{Job: backups.JobSweepFormerName, Slot: slot})
	require.NoError(t, err)
	require.NoError(t, b.w.HandleTick(t.Context(), &bus.Message{Subject: "levqor.tick.retention.sweep", Data: tick,
		Header: nats.Header{bus.HeaderMsgID: {scheduler.MsgID(backups.JobSweepFormerName, slot)}}, Stream: "TICKS",
		Consumer: backups.ConsumerTicks, Deliveries: 1}))
	require.Equal(t, store.SnapshotTrash, b.state(t, ids[1]))
	require.Equal(t, store.SnapshotTrash, b.state(t, ids[2]))
	require.Equal(t, scheduler.JobBackupSweep, scheduler.RenamedJobs[backups.JobSweepFormerName])
}
