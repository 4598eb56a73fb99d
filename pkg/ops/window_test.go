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
		b.publish("invoice.paid", "evt_in3", `{"poison":true}`)
		until := pause()
		b.publish("invoice.paid", "evt_after", `{}`)
		b.run(billingC, supportC)
		b.waitAcked(billingC)
		b.waitAcked(supportC)
		all := []string{"evt_before", "evt_in1", "evt_in2", "evt_in3", "evt_after"}
		counts := func(w *worker) []int {
			var out []int
			for _, id := range all {
				out = append(out, w.count(id))
			}
			return out
		}
		require.Equal(t, []int{1, 1, 1, 1, 1}, counts(bill))
		stored := func() uint64 { return b.nats.StreamMsgs(t, bus.Stripe) }

		req := ops.WindowRequest{Consumer: billingC, Stream: "stripe", Since: since, Until: until}
		replay := func(req ops.WindowRequest, progress ops.Progress) *ops.WindowResult {
			t.Helper()
			res, err := b.ops.ReplayWindow(ctx, "dave", req, progress)
			require.NoError(t, err)
			require.NoError(t, b.ops.WaitWindow(waitCtx(t), res))
			require.True(t, res.Waited)
			return res
		}

		t.Run("DryRunPlansWithoutPublishing", func(t *testing.T) {
			dry := req
			dry.DryRun = true
			res := replay(dry, nil)
			require.Equal(t, [4]int{3, 0, 3, 0}, [4]int{res.Selected, res.Replayed, res.Skipped, res.Failed}, "all already processed")
			var ids []string
			for _, it := range res.Items {
				require.Equal(t, ops.WindowWouldSkip, it.Status)
				ids = append(ids, it.MsgID)
			}
			require.Equal(t, []string{"evt_in1", "evt_in2", "evt_in3"}, ids)
			require.EqualValues(t, 5, stored())
		})

		t.Run("WithoutForceWhatWasProcessedIsSkipped", func(t *testing.T) {
			res := replay(req, nil)
			require.Equal(t, [4]int{3, 0, 3, 0}, [4]int{res.Selected, res.Replayed, res.Skipped, res.Failed})
			require.EqualValues(t, 5, stored(), "nothing published")
			require.Equal(t, []int{1, 1, 1, 1, 1}, counts(bill))
		})

		t.Run("ForceReRunsTheWindowForThatConsumerOnly", func(t *testing.T) {
			forced := req
			forced.Force = true
			var progress []int
			res := replay(forced, func(done, total int) { progress = append(progress, done) })
			require.Equal(t, [4]int{3, 3, 0, 0}, [4]int{res.Selected, res.Replayed, res.Skipped, res.Failed})
			require.Equal(t, [2]int{3, 0}, [2]int{res.Handled, res.DeadLettered})
			require.Equal(t, []int{1, 2, 2, 2, 1}, counts(bill), "exactly the window, once more")
			require.Equal(t, []int{1, 1, 1, 1, 1}, counts(sup), "no other consumer ran anything")
			require.NotEmpty(t, progress)

			msgs := b.nats.Messages(t, bus.Stripe)
			require.Len(t, msgs, 8)
			first := msgs[5]
			require.Equal(t, res.FirstSeq, first.Sequence)
			require.Equal(t, res.LastSeq, msgs[7].Sequence)
			require.Equal(t, "levqor.stripe.invoice.paid", first.Subject)
			require.Equal(t, "evt_in1", first.Header.Get(bus.HeaderOriginalMsgID))
			require.Equal(t, "2", first.Header.Get(bus.HeaderReplayOf), "the stream seq it replays")
			require.Equal(t, billingC, first.Header.Get(bus.HeaderReplayFor))
			require.Equal(t, "true", first.Header.Get(bus.HeaderReplayForce))
			require.Equal(t, "corr-evt_in1", first.Header.Get(bus.HeaderCorrelationID))

			again := replay(forced, nil)
			require.Equal(t, 3, again.Replayed, "the same window runs again when asked again")
			require.Equal(t, []int{1, 3, 3, 3, 1}, counts(bill))
		})

		t.Run("SubjectNarrowsTheWindow", func(t *testing.T) {
			narrow := req
			narrow.Force = true
			narrow.Subject = "levqor.stripe.customer.*"
			res := replay(narrow, nil)
			require.Equal(t, [2]int{1, 1}, [2]int{res.Selected, res.Handled})
			require.Equal(t, []int{1, 3, 4, 3, 1}, counts(bill))
		})

		t.Run("MessagesNeverProcessedRunWithoutForce", func(t *testing.T) {
			// The database was restored from a backup older than the
			// window: the inbox rows and effects of evt_in1 are gone, for
			// both consumers.
			_, err := st.DB().ExecContext(ctx, st.DB().Rebind(`DELETE FROM inbox WHERE msg_id = ?`), "evt_in1")
			require.NoError(t, err)
			_, err = st.DB().ExecContext(ctx, st.DB().Rebind(`DELETE FROM stripe_events WHERE id = ?`), billingC+":evt_in1")
			require.NoError(t, err)
			res := replay(req, nil)
			require.Equal(t, [4]int{3, 1, 2, 0}, [4]int{res.Selected, res.Replayed, res.Skipped, res.Failed})
			require.Equal(t, 1, res.Handled)
			_, err = st.GetStripeEvent(ctx, billingC+":evt_in1")
			require.NoError(t, err, "the lost effect is back")
			require.Equal(t, 4, bill.count("evt_in1"))
			require.Equal(t, 1, sup.count("evt_in1"), "the replay was not for support, whose inbox would have let it run")
		})

		t.Run("DeadLettersAreCountedAndReported", func(t *testing.T) {
			bill.broken.Store(true)
			defer bill.broken.Store(false)
			forced := req
			forced.Force = true
			res := replay(forced, nil)
			require.Equal(t, [3]int{3, 2, 1}, [3]int{res.Replayed, res.Handled, res.DeadLettered})
			require.Len(t, res.Items, 1)
			require.Equal(t, ops.WindowDeadLettered, res.Items[0].Status)
			require.Equal(t, "evt_in3", res.Items[0].MsgID)
			require.Contains(t, res.Items[0].Error, "amount_due is missing")
		})

		entries := b.audit(ops.ActionReplayWindow)
		require.Len(t, entries, 7)
		require.Equal(t, store.AuditOutcomeOK, entries[0].Outcome, "publishing worked; the dead letter is the worker's")
		require.Equal(t, store.AuditOutcomeDryRun, entries[6].Outcome)
		require.JSONEq(t, `{"selected":3,"replayed":3,"skipped":0,"failed":0}`, string(entries[4].Counts))
	})
}

func TestWindowRequestsThatCannotBeActedOn(t *testing.T) {
	t.Parallel()
	b := setup(t, storeSQLite(t), ops.Settings{})
	b.ensureConsumers()
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

func TestWindowReplayOfAConsumerThatDoesNotExistYet(t *testing.T) {
	t.Parallel()
	b := setup(t, storeSQLite(t), ops.Settings{})
	_, err := b.ops.ReplayWindow(t.Context(), "x", ops.WindowRequest{Consumer: billingC, Since: time.Now().Add(-time.Hour)}, nil)
	var inv *ops.InvalidError
	require.ErrorAs(t, err, &inv)
	require.Contains(t, inv.Message, "no worker has created its consumers yet")
}

// Not parallel: it changes how many messages a replay publishes at once.
func TestInterruptedWindowReplayIsAuditedWithWhatWasPublished(t *testing.T) {
	defer ops.SetWindowBatch(1)()
	st := storeSQLite(t)
	b := setup(t, st, ops.Settings{})
	b.ensureConsumers()
	since := time.Now().Add(-time.Minute)
	for i := range 5 {
		b.publish("invoice.paid", "evt_stop"+strconv.Itoa(i), `{}`)
	}
	// The operator presses Ctrl-C once the first message is replayed.
	ctx, cancel := context.WithCancel(t.Context())
	res, err := b.ops.ReplayWindow(ctx, "gina", ops.WindowRequest{Consumer: billingC, Since: since}, func(done, total int) { cancel() })
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "replay stopped after 1 message(s)")
	require.Equal(t, 1, res.Replayed)
	require.EqualValues(t, 6, b.nats.StreamMsgs(t, bus.Stripe), "nothing published after the stop")
	entries := b.audit(ops.ActionReplayWindow)
	require.Len(t, entries, 1, "what was published is in the trail")
	require.Equal(t, store.AuditOutcomePartial, entries[0].Outcome)
	require.Contains(t, string(entries[0].Params), "context canceled")
}
