package ops_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/store"
)

// pause makes the next publish land strictly later than everything before,
// so that a window boundary falls between them.
func pause() time.Time {
	time.Sleep(20 * time.Millisecond)
	t := time.Now().UTC()
	time.Sleep(20 * time.Millisecond)
	return t
}

func TestWindowReplayReRunsExactlyTheSelectedMessages(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, ops.Settings{})
		ctx := t.Context()
		bill, sup := b.workers[billingC], b.workers[supportC]
		b.publish("invoice.paid", "evt_before", `{}`)
		since := pause()
		b.publish("invoice.paid", "evt_in1", `{}`)
		b.publish("customer.updated", "evt_in2", `{}`)
		b.publish("invoice.paid", "evt_in3", `{}`)
		until := pause()
		b.publish("invoice.paid", "evt_after", `{}`)
		stop := b.run(billingC, supportC)
		b.waitAcked(billingC)
		b.waitAcked(supportC)
		stop()
		all := []string{"evt_before", "evt_in1", "evt_in2", "evt_in3", "evt_after"}
		counts := func(w *worker) []int {
			var out []int
			for _, id := range all {
				out = append(out, w.count(id))
			}
			return out
		}
		require.Equal(t, []int{1, 1, 1, 1, 1}, counts(bill))

		req := ops.WindowRequest{Consumer: billingC, Stream: "stripe", Since: since, Until: until}

		t.Run("DryRunPlansWithoutRunning", func(t *testing.T) {
			dry := req
			dry.DryRun = true
			res, err := b.ops.ReplayWindow(ctx, "dave", dry, nil)
			require.NoError(t, err)
			require.Equal(t, 3, res.Selected)
			require.Equal(t, 3, res.Skipped, "all already processed")
			var ids []string
			for _, it := range res.Items {
				require.Equal(t, ops.WindowWouldSkip, it.Status)
				ids = append(ids, it.MsgID)
			}
			require.Equal(t, []string{"evt_in1", "evt_in2", "evt_in3"}, ids)
			require.Equal(t, []int{1, 1, 1, 1, 1}, counts(bill))
		})

		t.Run("WithoutForceTheInboxSkips", func(t *testing.T) {
			res, err := b.ops.ReplayWindow(ctx, "dave", req, nil)
			require.NoError(t, err)
			require.Equal(t, [4]int{3, 0, 3, 0}, [4]int{res.Selected, res.Processed, res.Skipped, res.Failed})
			require.Equal(t, []int{1, 1, 1, 1, 1}, counts(bill))
		})

		t.Run("ForceReRunsTheWindowForThatConsumerOnly", func(t *testing.T) {
			forced := req
			forced.Force = true
			var progress []int
			res, err := b.ops.ReplayWindow(ctx, "dave", forced, func(done, total int) { progress = append(progress, done) })
			require.NoError(t, err)
			require.Equal(t, [4]int{3, 3, 0, 0}, [4]int{res.Selected, res.Processed, res.Skipped, res.Failed})
			require.Equal(t, []int{1, 2, 2, 2, 1}, counts(bill), "exactly the window, once more")
			require.Equal(t, []int{1, 1, 1, 1, 1}, counts(sup), "no other consumer saw anything")
			require.NotEmpty(t, progress)
		})

		t.Run("SubjectNarrowsTheWindow", func(t *testing.T) {
			narrow := req
			narrow.Force = true
			narrow.Subject = "levqor.stripe.customer.*"
			res, err := b.ops.ReplayWindow(ctx, "dave", narrow, nil)
			require.NoError(t, err)
			require.Equal(t, 1, res.Selected)
			require.Equal(t, []int{1, 2, 3, 2, 1}, counts(bill))
		})

		t.Run("MessagesNeverProcessedRunWithoutForce", func(t *testing.T) {
			// The database was restored from a backup older than the
			// window: the inbox and effects of evt_in1 are gone.
			_, err := st.DB().ExecContext(ctx, st.DB().Rebind(`DELETE FROM inbox WHERE consumer = ? AND msg_id = ?`), billingC, "evt_in1")
			require.NoError(t, err)
			_, err = st.DB().ExecContext(ctx, st.DB().Rebind(`DELETE FROM stripe_events WHERE id = ?`), billingC+":evt_in1")
			require.NoError(t, err)
			res, err := b.ops.ReplayWindow(ctx, "dave", req, nil)
			require.NoError(t, err)
			require.Equal(t, [4]int{3, 1, 2, 0}, [4]int{res.Selected, res.Processed, res.Skipped, res.Failed})
			_, err = st.GetStripeEvent(ctx, billingC+":evt_in1")
			require.NoError(t, err, "the lost effect is back")
		})

		t.Run("FailuresAreCountedAndReported", func(t *testing.T) {
			bill.broken.Store(true)
			bill.transient.Store(true)
			defer bill.broken.Store(false)
			forced := req
			forced.Force = true
			res, err := b.ops.ReplayWindow(ctx, "dave", forced, nil)
			require.NoError(t, err)
			require.Equal(t, 3, res.Failed)
			require.Len(t, res.Items, 3)
			require.Contains(t, res.Items[0].Error, "stripe API answered 502")
		})

		entries := b.audit(ops.ActionReplayWindow)
		require.Len(t, entries, 6)
		require.Equal(t, store.AuditOutcomeFailed, entries[0].Outcome)
		require.Equal(t, store.AuditOutcomeDryRun, entries[5].Outcome)
		require.JSONEq(t, `{"selected":3,"processed":3,"skipped":0,"failed":0}`, string(entries[3].Counts))
	})
}

func TestWindowRequestsThatCannotBeActedOn(t *testing.T) {
	t.Parallel()
	b := setup(t, storeSQLite(t), ops.Settings{})
	now := time.Now()
	for name, tc := range map[string]struct {
		req   ops.WindowRequest
		field string
	}{
		"NoConsumer":      {ops.WindowRequest{Since: now.Add(-time.Hour)}, "consumer"},
		"UnknownConsumer": {ops.WindowRequest{Consumer: "nobody", Since: now.Add(-time.Hour)}, "consumer"},
		"WrongStream":     {ops.WindowRequest{Consumer: billingC, Stream: "COMMANDS", Since: now.Add(-time.Hour)}, "stream"},
		"NoSince":         {ops.WindowRequest{Consumer: billingC}, "since"},
		"UntilBeforeSince": {ops.WindowRequest{Consumer: billingC, Since: now.Add(-time.Hour), Until: now.Add(-2 * time.Hour)},
			"until"},
		"SubjectOfAnotherStream": {ops.WindowRequest{Consumer: billingC, Since: now.Add(-time.Hour), Subject: "levqor.cmd.>"}, "subject"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := b.ops.ReplayWindow(t.Context(), "x", tc.req, nil)
			var inv *ops.InvalidError
			require.ErrorAs(t, err, &inv)
			require.Equal(t, tc.field, inv.Field)
		})
	}
}

func TestInterruptedWindowReplayIsAuditedWithWhatRan(t *testing.T) {
	t.Parallel()
	st := storeSQLite(t)
	b := setup(t, st, ops.Settings{})
	since := time.Now().Add(-time.Minute)
	for i := range 5 {
		b.publish("invoice.paid", "evt_stop"+strconv.Itoa(i), `{}`)
	}
	ctx, cancel := context.WithCancel(t.Context())
	// The operator presses Ctrl-C while the first message is handled.
	b.routes[0].Handler = func(next bus.Handler) bus.Handler {
		return func(ctx context.Context, m *bus.Message) error {
			cancel()
			return next(context.WithoutCancel(ctx), m)
		}
	}(b.routes[0].Handler)
	o, err := ops.New(ops.Config{JS: b.nats.JS, Topology: b.nats.Topo, Store: st, Log: quietLogger(t), Routes: b.routes})
	require.NoError(t, err)

	res, err := o.ReplayWindow(ctx, "gina", ops.WindowRequest{Consumer: billingC, Since: since}, nil)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "replay stopped after 1 message(s)")
	require.Equal(t, 1, res.Processed)
	require.Equal(t, 1, b.workers[billingC].count("evt_stop0"))
	require.Zero(t, b.workers[billingC].count("evt_stop1"), "nothing ran after the stop")
	entries := b.audit(ops.ActionReplayWindow)
	require.Len(t, entries, 1, "what ran is in the trail")
	require.Equal(t, store.AuditOutcomePartial, entries[0].Outcome)
	require.Contains(t, string(entries[0].Params), "context canceled")
}
