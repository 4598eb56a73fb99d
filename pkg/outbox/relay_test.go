package outbox_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/bus/bustest"
	"github.com/levqor/levqor/pkg/outbox"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

func TestRelayPublishesCommittedRowsOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		env := bustest.Start(t)
		ctx := context.Background()
		log := logrus.New()
		log.Out = io.Discard
		subject := env.Topo.Subject(bus.Events, "billing.entitlements_changed")
		for i := 0; i < 3; i++ {
			require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
				_, err := tx.EnqueueOutbox(ctx, store.OutboxMessage{
					Subject: subject, Headers: map[string]string{bus.HeaderAccount: "acc_1"}, Payload: []byte(`{"n":1}`),
				})
				return err
			}))
		}
		// A rolled-back transaction's event never leaves.
		_ = st.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.EnqueueOutbox(ctx, store.OutboxMessage{Subject: subject, Payload: []byte(`{"rolled":"back"}`)})
			require.NoError(t, err)
			return context.Canceled
		})

		r := &outbox.Relay{Store: st, Publisher: bus.NewPublisher(env.JS, env.Topo), Log: log}
		reg := prometheus.NewRegistry()
		r.Register(reg)
		n, err := r.RelayOnce(ctx)
		require.NoError(t, err)
		require.Equal(t, 3, n)
		require.Contains(t, gatherText(t, reg), `levqor_events_published_total{event="billing.entitlements_changed"} 3`,
			"counted by event name, for the alert rules")
		n, err = r.RelayOnce(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "published rows are not published again")

		msgs := env.Messages(t, bus.Events)
		require.Len(t, msgs, 3)
		require.Equal(t, "acc_1", msgs[0].Header.Get(bus.HeaderAccount))
		require.Regexp(t, `^outbox-\d+$`, msgs[0].Header.Get(bus.HeaderMsgID))
	})
}

func TestRelayRepublishAfterCrashIsDeduplicated(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	env := bustest.Start(t)
	ctx := context.Background()
	log := logrus.New()
	log.Out = io.Discard
	subject := env.Topo.Subject(bus.Events, "backup.overdue")
	var id int64
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		var err error
		id, err = tx.EnqueueOutbox(ctx, store.OutboxMessage{Subject: subject, Payload: []byte(`{}`)})
		return err
	}))
	// A relay published the row and crashed before marking it.
	pub := bus.NewPublisher(env.JS, env.Topo)
	_, err := pub.Publish(ctx, subject, outbox.MsgID(id), nil, []byte(`{}`))
	require.NoError(t, err)

	r := &outbox.Relay{Store: st, Publisher: pub, Log: log, Interval: 10 * time.Millisecond}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	require.Eventually(t, func() bool {
		rows, err := st.UnpublishedOutbox(ctx, 10)
		return err == nil && len(rows) == 0
	}, 5*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	require.EqualValues(t, 1, env.StreamMsgs(t, bus.Events), "the second publish was dropped as a duplicate")
}

func TestRelayKeepsRowsWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	env := bustest.Start(t)
	ctx := context.Background()
	log := logrus.New()
	log.Out = io.Discard
	subject := env.Topo.Subject(bus.Events, "support.ticket_opened")
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.EnqueueOutbox(ctx, store.OutboxMessage{Subject: subject, Payload: []byte(`{}`)})
		return err
	}))
	env.Server.Stop()
	r := &outbox.Relay{Store: st, Publisher: bus.NewPublisher(env.JS, env.Topo), Log: log}
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	_, err := r.RelayOnce(pctx)
	cancel()
	require.Error(t, err)
	rows, err := st.UnpublishedOutbox(ctx, 10)
	require.NoError(t, err)
	require.Len(t, rows, 1, "an unpublished event stays in the outbox")
	require.NoError(t, env.Server.Restart())
	require.Eventually(t, func() bool {
		n, err := r.RelayOnce(ctx)
		return err == nil && n == 1
	}, 10*time.Second, 100*time.Millisecond)
	require.EqualValues(t, 1, env.StreamMsgs(t, bus.Events))
}

// gatherText is reg's metrics in the text exposition format.
func gatherText(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var b strings.Builder
	for _, mf := range mfs {
		_, err := expfmt.MetricFamilyToText(&b, mf)
		require.NoError(t, err)
	}
	return b.String()
}
