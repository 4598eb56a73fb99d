package service_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/backups"
	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/bus/bustest"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/service"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/stripesim"
	"github.com/levqor/levqor/pkg/telemetry"
)

// TestLevqorConvergesAfterLosingItsDatabase: Stripe events flow through
// ingest and billing; levqor.selfbackup backs the database up; more
// events flow, and the database is lost while billing is still applying
// them. The newest self-backup is restored into an empty database
// (service.SelfRestore), ingest and billing start again on it, more
// events come, and an operator replays the STRIPE window since the
// self-backup through billing. Then every event is in the ledger exactly
// once: those the consumer redelivered after the restore and those the
// replay brought back are applied once each, and those the restored
// database already held are recognised by the inbox and skipped.
func TestLevqorConvergesAfterLosingItsDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	nenv := bustest.Start(t)
	blobDir := t.TempDir()
	blobs, err := blob.NewLocal(blobDir)
	require.NoError(t, err)
	log := logrus.New()
	log.SetOutput(io.Discard)
	lostURL, newURL := storetest.PostgresURL(t), storetest.PostgresURL(t)
	open := func(u string) *store.Store {
		st, err := store.Open(ctx, u, log)
		require.NoError(t, err)
		t.Cleanup(func() { st.Close() })
		require.NoError(t, st.Migrate(ctx))
		return st
	}
	cfg, err := config.FromEnv(func(string) string { return "" })
	require.NoError(t, err)
	cfg.WebhookSecrets = []string{testSecret}
	cfg.BlobDir = blobDir

	// running is ingest and the billing worker on one database.
	type running struct {
		env         *service.Env
		sender      *stripesim.Sender
		stopWorkers func()
	}
	start := func(st *store.Store) *running {
		env := &service.Env{Cfg: cfg, Log: log, Reg: telemetry.NewRegistry(), NC: nenv.NC, JS: nenv.JS, Store: st}
		srv, err := env.Ingest(testToken)
		require.NoError(t, err)
		hs := httptest.NewServer(srv.Handler())
		r, err := env.Router([]string{billing.WorkerName})
		require.NoError(t, err)
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = r.Run(rctx) }()
		require.Eventually(t, r.Ready, 10*time.Second, 10*time.Millisecond)
		stopped := false
		stop := func() {
			if !stopped {
				stopped = true
				cancel()
				<-done
			}
		}
		t.Cleanup(stop)
		t.Cleanup(hs.Close)
		return &running{env: env, sender: &stripesim.Sender{URL: hs.URL + "/webhooks/stripe", Secret: testSecret}, stopWorkers: stop}
	}
	var sent []string
	send := func(r *running, n int) {
		for range n {
			res, err := r.sender.Send(ctx, event(t, "invoice.paid", stripesim.EventOptions{}))
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, res.Status, string(res.Body))
			sent = append(sent, res.EventID)
		}
	}
	waitApplied := func(st *store.Store, n int64) {
		require.Eventually(t, func() bool {
			got, err := st.CountStripeEvents(ctx)
			return err == nil && got >= n
		}, 20*time.Second, 20*time.Millisecond)
	}

	lost := open(lostURL)
	a := start(lost)
	send(a, 20)
	waitApplied(lost, 20)
	const master = "5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f"
	sealer, err := keys.ParseMasterKeys(master)
	require.NoError(t, err)
	self := &backups.Worker{Store: lost, Blobs: blobs, Sealer: sealer, Settings: backups.Settings{DatabaseURL: lostURL}}
	info, err := self.SelfBackup(ctx, time.Now().UTC().Truncate(time.Second))
	require.NoError(t, err)

	// More events; the database is lost mid-way: ten were applied (and
	// acknowledged) only in the lost database, ten more were taken by
	// ingest and wait in the consumer.
	send(a, 10)
	waitApplied(lost, 30)
	a.stopWorkers()
	send(a, 10)
	appliedBeforeLoss, err := lost.CountStripeEvents(ctx)
	require.NoError(t, err)

	began := time.Now()
	restored, err := service.SelfRestore(ctx, config.Config{DatabaseURL: newURL, BlobDir: blobDir, MasterKeys: master}, "", log)
	require.NoError(t, err)
	restoreTook := time.Since(began)
	require.Equal(t, info.Key, restored.Key)
	st := open(newURL)
	n, err := st.CountStripeEvents(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 20, n, "the restored database holds what the self-backup held")

	b := start(st)
	send(b, 20)
	// What the consumer still held is redelivered and applied; then
	// nothing is pending.
	require.Eventually(t, func() bool {
		c, err := nenv.JS.Consumer(ctx, "STRIPE", billing.ConsumerStripe)
		if err != nil {
			return false
		}
		ci, err := c.Info(ctx)
		return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0
	}, 20*time.Second, 20*time.Millisecond)
	beforeReplay, err := st.CountStripeEvents(ctx)
	require.NoError(t, err)
	o, err := b.env.Ops(ops.Thresholds{})
	require.NoError(t, err)
	res, err := o.ReplayWindow(ctx, "key:ops", ops.WindowRequest{Consumer: billing.ConsumerStripe, Stream: "STRIPE", Since: info.TakenAt.Add(-time.Minute)}, nil)
	require.NoError(t, err)
	require.NoError(t, o.WaitWindow(ctx, res))
	waitApplied(st, 60)

	var ledger, inboxRows int64
	require.NoError(t, st.DB().GetContext(ctx, &ledger, `SELECT count(*) FROM stripe_events`))
	require.NoError(t, st.DB().GetContext(ctx, &inboxRows, `SELECT count(*) FROM inbox WHERE consumer = $1`, billing.ConsumerStripe))
	require.EqualValues(t, 60, ledger, "every event sent is in the ledger")
	require.Equal(t, ledger, inboxRows, "each applied once")
	for _, id := range sent {
		var c int
		require.NoError(t, st.DB().GetContext(ctx, &c, `SELECT count(*) FROM stripe_events WHERE id = $1`, id))
		require.Equal(t, 1, c, id)
	}
	t.Logf("restore of the self-backup (%d bytes) took %s; of the 20 events after it, %d were applied before the loss; "+
		"the consumer redelivered the rest; after the restore %d were missing and the replay brought them back (%d replayed, %d skipped as already applied)",
		restored.Size, restoreTook.Round(time.Millisecond), appliedBeforeLoss-20, 60-beforeReplay, res.Replayed, res.Skipped)
	require.EqualValues(t, 60-beforeReplay, res.Replayed, "the replay re-ran exactly what the restored database missed")
	require.Positive(t, res.Replayed, "some events were applied only in the lost database")
}
