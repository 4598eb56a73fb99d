package ops_test

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/store"
)

// The incident the tools exist for: a handler fails on a bad event, the
// event is dead-lettered, the operator finds it and why, the handler is
// fixed, and the replay is processed once, by the consumer that failed
// only.
func TestPoisonMessageDeadLetteredShownReplayedProcessedOnce(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, ops.Settings{})
		ctx := t.Context()
		bill, sup := b.workers[billingC], b.workers[supportC]
		bill.broken.Store(true)
		b.run(billingC, supportC)

		b.publish("invoice.paid", "evt_good", `{"id":"evt_good"}`)
		poisonSeq := b.publish("invoice.paid", "evt_poison", `{"id":"evt_poison","poison":true}`)
		require.Eventually(t, func() bool { return b.nats.StreamMsgs(t, bus.DLQ) == 1 }, 15*time.Second, 20*time.Millisecond)
		b.waitAcked(billingC)
		b.waitAcked(supportC)
		require.Equal(t, 1, bill.count("evt_good"))
		require.Zero(t, bill.count("evt_poison"))
		require.Equal(t, 1, sup.count("evt_poison"), "the other consumer processed it")

		// Shown, with its reason.
		list, err := b.ops.ListDLQ(ctx, ops.DLQFilter{}, 0)
		require.NoError(t, err)
		require.Equal(t, 1, list.Total)
		dl := list.DeadLetters[0]
		require.Equal(t, billingC, dl.Consumer)
		require.Equal(t, "evt_poison", dl.MsgID)
		require.Equal(t, "levqor.stripe.invoice.paid", dl.Subject)
		require.Equal(t, "STRIPE", dl.Stream)
		require.Equal(t, poisonSeq, dl.StreamSeq)
		require.Equal(t, 1, dl.Deliveries)
		require.Contains(t, dl.Reason, "amount_due is missing")
		require.Equal(t, "corr-evt_poison", dl.CorrelationID)
		require.WithinDuration(t, time.Now(), dl.DeadLetteredAt, time.Minute)

		shown, err := b.ops.ShowDLQ(ctx, "alice", dl.Seq)
		require.NoError(t, err)
		require.True(t, shown.PayloadJSON)
		require.JSONEq(t, `{"id":"evt_poison","poison":true}`, string(shown.Payload))
		require.Contains(t, shown.Header[bus.HeaderDlqReason][0], "amount_due is missing")
		require.Len(t, b.audit(ops.ActionDLQShow), 1, "reading a payload is audited")

		// A dry run replays nothing.
		dry, err := b.ops.ReplayDLQ(ctx, "alice", ops.DLQSelection{Seqs: []uint64{dl.Seq}, DryRun: true}, nil)
		require.NoError(t, err)
		require.Equal(t, 1, dry.Selected)
		require.Zero(t, dry.Succeeded)
		require.Equal(t, ops.DLQStatusWouldReplay, dry.Items[0].Status)
		require.EqualValues(t, 1, b.nats.StreamMsgs(t, bus.DLQ))
		require.EqualValues(t, 2, b.nats.StreamMsgs(t, bus.Stripe))

		// Fixed; replayed.
		bill.broken.Store(false)
		res, err := b.ops.ReplayDLQ(ctx, "alice", ops.DLQSelection{Seqs: []uint64{dl.Seq}}, nil)
		require.NoError(t, err)
		require.Equal(t, 1, res.Succeeded, "%+v", res.Items)
		require.Zero(t, res.Failed)
		require.Equal(t, ops.DLQStatusReplayed, res.Items[0].Status)
		require.Zero(t, b.nats.StreamMsgs(t, bus.DLQ), "removed from the DLQ once the replay was acknowledged")
		b.waitAcked(billingC)
		b.waitAcked(supportC)
		require.Equal(t, 1, bill.count("evt_poison"), "processed once")
		require.Equal(t, 1, sup.count("evt_poison"), "the consumer that had processed it skips the replay")
		ev, err := st.GetStripeEvent(ctx, billingC+":evt_poison")
		require.NoError(t, err)
		require.JSONEq(t, `{"id":"evt_poison","poison":true}`, string(ev.Payload))

		stripeMsgs := b.nats.Messages(t, bus.Stripe)
		require.Len(t, stripeMsgs, 3)
		replay := stripeMsgs[2]
		require.Equal(t, res.Items[0].ReplayedSeq, replay.Sequence)
		require.Equal(t, "levqor.stripe.invoice.paid", replay.Subject)
		require.Equal(t, strconv.FormatUint(dl.Seq, 10), replay.Header.Get(bus.HeaderReplayOf))
		require.Equal(t, "evt_poison", replay.Header.Get(bus.HeaderOriginalMsgID))
		require.Equal(t, "corr-evt_poison", replay.Header.Get(bus.HeaderCorrelationID))
		require.Equal(t, "replay:DLQ:"+strconv.FormatUint(dl.Seq, 10), replay.Header.Get(bus.HeaderMsgID))
		require.Empty(t, replay.Header.Get(bus.HeaderDlqReason))
		require.Empty(t, replay.Header.Get(bus.HeaderDlqConsumer))
		require.Equal(t, billingC, replay.Header.Get(bus.HeaderReplayFor), "for the consumer that gave up only")

		// Replaying the same dead letter again finds nothing to replay.
		again, err := b.ops.ReplayDLQ(ctx, "alice", ops.DLQSelection{Seqs: []uint64{dl.Seq}}, nil)
		require.NoError(t, err)
		require.Equal(t, 1, again.Failed)
		require.Contains(t, again.Items[0].Error, "no dead letter with seq")
		require.EqualValues(t, 3, b.nats.StreamMsgs(t, bus.Stripe), "nothing published")

		states, err := st.ConsumerStates(ctx, "evt_poison")
		require.NoError(t, err)
		require.Equal(t, store.ConsumerStateProcessed, states[0].State)
		require.Equal(t, billingC, states[0].Consumer)

		// A forced window replay runs the message once, though the stream
		// holds the original and its replay.
		win, err := b.ops.ReplayWindow(ctx, "alice", ops.WindowRequest{Consumer: billingC, Since: time.Now().Add(-time.Hour), Force: true}, nil)
		require.NoError(t, err)
		require.Equal(t, [4]int{3, 2, 1, 0}, [4]int{win.Selected, win.Replayed, win.Skipped, win.Failed})
		require.NoError(t, b.ops.WaitWindow(waitCtx(t), win))
		require.Equal(t, 2, win.Handled)
		require.Equal(t, 2, bill.count("evt_poison"))
		require.Equal(t, 1, sup.count("evt_poison"))

		replays := b.audit(ops.ActionDLQReplay)
		require.Len(t, replays, 3)
		require.Equal(t, []string{store.AuditOutcomeFailed, store.AuditOutcomeOK, store.AuditOutcomeDryRun},
			[]string{replays[0].Outcome, replays[1].Outcome, replays[2].Outcome})
		require.Equal(t, "alice", replays[1].Actor)
		require.JSONEq(t, `{"selected":1,"succeeded":1,"failed":0}`, string(replays[1].Counts))
		var params struct {
			Selection struct{ Seqs []uint64 }
		}
		require.NoError(t, json.Unmarshal(replays[1].Params, &params))
		require.Equal(t, []uint64{dl.Seq}, params.Selection.Seqs)
	})
}

func TestReplayAllWithFiltersReplaysOnlyMatches(t *testing.T) {
	t.Parallel()
	b := setup(t, storeSQLite(t), ops.Settings{})
	ctx := t.Context()
	now := time.Now().UTC()
	keep := b.deadLetter(supportC, "invoice.paid", "evt_sup", "amount_due is missing", 1, now)
	first := b.deadLetter(billingC, "invoice.paid", "evt_a", "amount_due is missing", 2, now)
	second := b.deadLetter(billingC, "customer.updated", "evt_b", "amount_due is missing", 3, now)
	other := b.deadLetter(billingC, "invoice.paid", "evt_c", "context deadline exceeded", 4, now)

	res, err := b.ops.ReplayDLQ(ctx, "bob", ops.DLQSelection{All: true, Filter: ops.DLQFilter{
		Consumer: billingC, Subject: "levqor.stripe.invoice.*", Reason: "AMOUNT_DUE",
	}}, nil)
	require.NoError(t, err)
	require.Equal(t, 1, res.Selected)
	require.Equal(t, first, res.Items[0].Seq)
	left, err := b.ops.ListDLQ(ctx, ops.DLQFilter{}, 0)
	require.NoError(t, err)
	var seqs []uint64
	for _, d := range left.DeadLetters {
		seqs = append(seqs, d.Seq)
	}
	require.Equal(t, []uint64{keep, second, other}, seqs)
	msgs := b.nats.Messages(t, bus.Stripe)
	require.Len(t, msgs, 1)
	require.Equal(t, "evt_a", msgs[0].Header.Get(bus.HeaderOriginalMsgID))
}

func TestPurgeRemovesOnlyWhatItsFiltersSelect(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, st *store.Store) {
		b := setup(t, st, ops.Settings{})
		ctx := t.Context()
		now := time.Now().UTC()
		oldBilling := b.deadLetter(billingC, "invoice.paid", "evt_1", "amount_due is missing", 1, now.Add(-3*time.Hour))
		billingCustomer := b.deadLetter(billingC, "customer.updated", "evt_2", "unknown account", 2, now.Add(-time.Hour))
		billingInvoice := b.deadLetter(billingC, "invoice.paid", "evt_3", "amount_due is missing", 3, now.Add(-time.Hour))
		supportInvoice := b.deadLetter(supportC, "invoice.paid", "evt_4", "amount_due is missing", 4, now.Add(-time.Hour))
		remaining := func() []uint64 {
			list, err := b.ops.ListDLQ(ctx, ops.DLQFilter{}, 0)
			require.NoError(t, err)
			var seqs []uint64
			for _, d := range list.DeadLetters {
				seqs = append(seqs, d.Seq)
			}
			return seqs
		}

		sel := ops.DLQSelection{All: true, Filter: ops.DLQFilter{
			Consumer: billingC, Subject: "levqor.stripe.invoice.paid", Reason: "amount", Since: now.Add(-2 * time.Hour),
		}}
		dry := sel
		dry.DryRun = true
		plan, err := b.ops.PurgeDLQ(ctx, "carol", dry, nil)
		require.NoError(t, err)
		require.Equal(t, 1, plan.Selected)
		require.Equal(t, ops.DLQStatusWouldPurge, plan.Items[0].Status)
		require.Len(t, remaining(), 4, "a dry run purges nothing")

		res, err := b.ops.PurgeDLQ(ctx, "carol", sel, nil)
		require.NoError(t, err)
		require.Equal(t, 1, res.Succeeded)
		require.Equal(t, billingInvoice, res.Items[0].Seq)
		require.Equal(t, []uint64{oldBilling, billingCustomer, supportInvoice}, remaining())

		bySeq, err := b.ops.PurgeDLQ(ctx, "carol", ops.DLQSelection{Seqs: []uint64{billingCustomer, 999}}, nil)
		require.NoError(t, err)
		require.Equal(t, 1, bySeq.Succeeded)
		require.Equal(t, 1, bySeq.Failed, "an unknown sequence is reported, not ignored")
		require.Equal(t, []uint64{oldBilling, supportInvoice}, remaining())

		guarded, err := b.ops.PurgeDLQ(ctx, "carol", ops.DLQSelection{
			Seqs: []uint64{oldBilling, supportInvoice}, Filter: ops.DLQFilter{Consumer: supportC},
		}, nil)
		require.NoError(t, err)
		require.Equal(t, 1, guarded.Succeeded)
		require.Equal(t, 1, guarded.Failed)
		require.Contains(t, guarded.Items[0].Error, "does not match the filters")
		require.Equal(t, []uint64{oldBilling}, remaining(), "filters guard explicit sequences")

		entries := b.audit(ops.ActionDLQPurge)
		require.Len(t, entries, 4)
		require.Equal(t, store.AuditOutcomePartial, entries[1].Outcome)
		require.Equal(t, "carol", entries[1].Actor)
		var params struct {
			Selection struct {
				All    bool
				Filter struct{ Consumer, Subject, Reason string }
			}
		}
		require.NoError(t, json.Unmarshal(entries[2].Params, &params))
		require.True(t, params.Selection.All)
		require.Equal(t, billingC, params.Selection.Filter.Consumer, "the filters are audited")
		require.Equal(t, "amount", params.Selection.Filter.Reason)
	})
}

func TestDLQSelectionsThatCannotBeActedOn(t *testing.T) {
	t.Parallel()
	b := setup(t, storeSQLite(t), ops.Settings{})
	for name, tc := range map[string]struct {
		sel   ops.DLQSelection
		field string
	}{
		"Nothing":     {ops.DLQSelection{}, "seqs"},
		"SeqsAndAll":  {ops.DLQSelection{Seqs: []uint64{1}, All: true}, "all"},
		"ZeroSeq":     {ops.DLQSelection{Seqs: []uint64{0}}, "seqs"},
		"BadSubject":  {ops.DLQSelection{All: true, Filter: ops.DLQFilter{Subject: "levqor.>.x"}}, "subject"},
		"BadConsumer": {ops.DLQSelection{All: true, Filter: ops.DLQFilter{Consumer: "a.b"}}, "consumer"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := b.ops.PurgeDLQ(t.Context(), "x", tc.sel, nil)
			var inv *ops.InvalidError
			require.ErrorAs(t, err, &inv)
			require.Equal(t, tc.field, inv.Field)
		})
	}
	_, err := b.ops.ShowDLQ(t.Context(), "x", 42)
	require.ErrorIs(t, err, ops.ErrNotFound)
	require.Empty(t, b.audit(""), "nothing acted on, nothing audited")
}
