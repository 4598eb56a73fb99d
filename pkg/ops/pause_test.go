package ops_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/control"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// TestAPausedConsumerFetchesNothingAndLosesNothing: an operator pauses a
// consumer; its router stops fetching (messages wait in the stream) while
// the other consumer carries on; resumed, it handles what waited, once.
func TestAPausedConsumerFetchesNothingAndLosesNothing(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	b := setup(t, st, ops.Settings{})
	ctx := t.Context()
	ctl, err := control.Open(ctx, b.nats.JS, b.nats.Topo, quietLogger(t))
	require.NoError(t, err)
	watch, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	require.NoError(t, ctl.Watch(watch))

	r, err := bus.NewRouter(b.nats.JS, bus.RouterConfig{
		Topology: b.nats.Topo, Logger: quietLogger(t), FetchWait: 100 * time.Millisecond, ShutdownTimeout: 2 * time.Second,
		Paused: func(name string) bool { return ctl.Paused(control.ConsumerKey(name)) },
	})
	require.NoError(t, err)
	for _, rt := range b.routes {
		r.Handle(rt.Consumer, rt.Handler)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	require.Eventually(t, r.Ready, 10*time.Second, 10*time.Millisecond)

	changed, err := b.ops.SetConsumerPaused(ctx, billingC, true, "ana", "ledger migration")
	require.NoError(t, err)
	require.True(t, changed)
	again, err := b.ops.SetConsumerPaused(ctx, billingC, true, "ana", "")
	require.NoError(t, err)
	require.False(t, again, "paused already")
	require.Eventually(t, func() bool { return ctl.Paused(control.ConsumerKey(billingC)) }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // let a pull already open end

	b.publish("invoice.paid", "evt_paused_1", `{"id":"evt_paused_1"}`)
	b.waitAcked(supportC)
	require.Equal(t, 1, b.workers[supportC].count("evt_paused_1"), "the other consumer carries on")
	// Over five of the router's fetch waits, the paused consumer takes
	// nothing: the message waits in the stream, delivered to no one.
	require.Never(t, func() bool { return b.workers[billingC].count("evt_paused_1") > 0 }, 500*time.Millisecond, 50*time.Millisecond)
	cons, err := b.nats.JS.Consumer(ctx, b.nats.Topo.StreamName(bus.Stripe), billingC)
	require.NoError(t, err)
	info, err := cons.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, info.NumPending, "waiting in the stream")
	require.Zero(t, info.NumAckPending, "not fetched")

	rep, err := b.ops.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, "ana", rep.Paused[control.ConsumerKey(billingC)].By)
	require.Equal(t, "ledger migration", rep.Paused[control.ConsumerKey(billingC)].Reason)

	changed, err = b.ops.SetConsumerPaused(ctx, billingC, false, "ana", "")
	require.NoError(t, err)
	require.True(t, changed)
	b.waitAcked(billingC)
	require.Equal(t, 1, b.workers[billingC].count("evt_paused_1"), "what waited is handled once")

	trail, err := st.ListAudit(ctx, store.ListAuditParams{Limit: 10})
	require.NoError(t, err)
	var actions []string
	for _, a := range trail {
		actions = append(actions, a.Action)
	}
	require.Equal(t, []string{ops.ActionConsumerResume, ops.ActionConsumerPause, ops.ActionConsumerPause}, actions)
}

func TestPausingWhatDoesNotExistIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, storetest.SQLite(t), ops.Settings{})
	b.ensureConsumers()
	ctx := t.Context()
	_, err := b.ops.SetConsumerPaused(ctx, "billing-strip", true, "ana", "")
	var inv *ops.InvalidError
	require.ErrorAs(t, err, &inv)
	require.Equal(t, "consumer", inv.Field)
	require.Contains(t, inv.Message, `no consumer named "billing-strip"`)

	_, err = b.ops.SetJobPaused(ctx, scheduler.Catalog(), "backup.nope", true, "ana", "")
	require.ErrorAs(t, err, &inv)
	require.Equal(t, "job", inv.Field)
	require.Contains(t, inv.Message, "backup.due", "the error lists the jobs")

	changed, err := b.ops.SetJobPaused(ctx, scheduler.Catalog(), scheduler.JobBackupDue, false, "ana", "")
	require.NoError(t, err)
	require.False(t, changed, "resuming what is not paused changes nothing")
	rep, err := b.ops.Status(ctx)
	require.NoError(t, err)
	require.Empty(t, rep.Paused)
}
