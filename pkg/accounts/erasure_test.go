package accounts_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/accounts"
	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// customer is an account with what an erasure must remove: a source
// whose configuration holds a password, snapshots with blobs, an API key,
// a notification and a webhook endpoint.
type customer struct {
	acc, src, key, keySecret string
	blobs                    []string
}

func newCustomer(t *testing.T, st *store.Store, blobs blob.Store, name string) customer {
	t.Helper()
	ctx := t.Context()
	var c customer
	var err error
	c.acc, err = command.NewID(store.AccountIDPrefix)
	require.NoError(t, err)
	c.src, err = command.NewID("src_")
	require.NoError(t, err)
	k, err := auth.GenerateKey()
	require.NoError(t, err)
	c.key, c.keySecret = k.ID, k.Secret
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.InsertAccount(ctx, store.Account{ID: c.acc, Name: name, ContactEmail: "ops@" + strings.ToLower(c.acc) + ".example", StripeCustomerID: "cus_" + c.acc[4:12]}); err != nil {
			return err
		}
		if _, err := tx.InsertSource(ctx, store.BackupSource{ID: c.src, AccountID: c.acc, Name: "orders-db", Kind: "postgres",
			Schedule: "0 2 * * *", TimeZone: "UTC", Config: []byte(`{"dsn":"postgres://app:s3cret@db.internal/orders"}`)}); err != nil {
			return err
		}
		for i := range 2 {
			id, err := command.NewID("snap_")
			if err != nil {
				return err
			}
			key := c.acc + "/" + c.src + "/" + id
			size, sum, err := blobs.Put(ctx, key, strings.NewReader("customer data "+id))
			if err != nil {
				return err
			}
			c.blobs = append(c.blobs, key)
			if _, err := tx.InsertSnapshot(ctx, store.Snapshot{ID: id, AccountID: c.acc, SourceID: c.src, TakenAt: time.Now().Add(-time.Duration(i) * time.Hour),
				SizeBytes: size, SHA256: sum, BlobKey: key, RecordedBy: "key_agent"}); err != nil {
				return err
			}
		}
		if _, err := tx.InsertNotification(ctx, store.Notification{ID: "ntf_" + c.acc[4:], AccountID: c.acc, Event: "backup.run_failed", EventID: "outbox-1",
			Incident: "i:" + c.acc, Channel: "email", Recipient: "ops@customer.example", Audience: store.AudienceCustomer, Subject: "Backup failed",
			BodyText: "Hello " + name, Status: store.NotificationSent}); err != nil {
			return err
		}
		_, err := tx.InsertWebhookEndpoint(ctx, store.WebhookEndpoint{ID: "whe_" + c.acc[4:], AccountID: c.acc, URL: "https://hooks.customer.example/levqor", Enabled: true})
		return err
	}))
	require.NoError(t, st.CreateAPIKey(ctx, store.APIKey{ID: k.ID, Hash: k.Hash, Prefix: k.Prefix, AccountID: c.acc}))
	return c
}

func erasureWorker(t *testing.T, st *store.Store) (*accounts.Worker, blob.Store) {
	t.Helper()
	blobs, err := blob.NewLocal(filepath.Join(t.TempDir(), "blobs"))
	require.NoError(t, err)
	w := newWorker(t, st, "")
	w.Blobs = blobs
	return w, blobs
}

func run(t *testing.T, st *store.Store, w *accounts.Worker, action, acc string, params any) *store.Command {
	t.Helper()
	m := queue(t, st, action, acc, params)
	require.NoError(t, w.Runtime.Handler(w.Handle)(t.Context(), m))
	return commandOf(t, st, m)
}

func TestAnErasureIsConfirmedCoolsOffAndThenRemovesThePersonalData(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := t.Context()
		w, blobs := erasureWorker(t, st)
		w.ErasureCoolingOff = 7 * 24 * time.Hour
		c := newCustomer(t, st, blobs, "Ada Backups Ltd")
		other := newCustomer(t, st, blobs, "Grace Archives")

		got := run(t, st, w, accounts.ActionRequestErasure, c.acc, map[string]string{"confirm": "Ada Backups"})
		require.Equal(t, http.StatusUnprocessableEntity, got.HTTPStatus)
		require.Equal(t, "confirm", got.Error.Field)
		require.Contains(t, got.Error.Message, `"Ada Backups Ltd"`)

		hold := "hold_" + c.acc[4:]
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.InsertHold(ctx, store.LegalHold{ID: hold, AccountID: c.acc, SourceID: c.src, Reason: "litigation 2026-17", PlacedBy: "key_ops", PlacedByOperator: true})
			return err
		}))
		got = run(t, st, w, accounts.ActionRequestErasure, c.acc, map[string]string{"confirm": "Ada Backups Ltd"})
		require.Equal(t, http.StatusConflict, got.HTTPStatus)
		require.Equal(t, "legal_hold", got.Error.Code)
		require.Contains(t, got.Error.Message, hold+" (litigation 2026-17)")
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.ReleaseHold(ctx, store.ReleaseHoldParams{ID: hold, By: "key_ops", Reason: "settled"})
			return err
		}))

		got = run(t, st, w, accounts.ActionRequestErasure, c.acc, map[string]string{"confirm": "Ada Backups Ltd"})
		require.Equal(t, http.StatusAccepted, got.HTTPStatus, "%+v", got.Error)
		e, err := st.LatestErasure(ctx, c.acc)
		require.NoError(t, err)
		require.Equal(t, store.ErasureScheduled, e.Status)
		require.WithinDuration(t, time.Now().Add(7*24*time.Hour), e.ScheduledFor, time.Minute)

		res, err := w.Offboard(ctx, time.Now().Add(24*time.Hour))
		require.NoError(t, err)
		require.Equal(t, accounts.OffboardResult{}, res, "cooling off: nothing erased yet")

		got = run(t, st, w, accounts.ActionCancelErasure, c.acc, map[string]string{})
		require.Equal(t, http.StatusOK, got.HTTPStatus, "%+v", got.Error)
		e, err = st.LatestErasure(ctx, c.acc)
		require.NoError(t, err)
		require.Equal(t, store.ErasureCanceled, e.Status)
		res, err = w.Offboard(ctx, time.Now().Add(30*24*time.Hour))
		require.NoError(t, err)
		require.Zero(t, res.Erased, "canceled")

		got = run(t, st, w, accounts.ActionRequestErasure, c.acc, map[string]string{"confirm": "Ada Backups Ltd"})
		require.Equal(t, http.StatusAccepted, got.HTTPStatus)
		res, err = w.Offboard(ctx, time.Now().Add(8*24*time.Hour))
		require.NoError(t, err)
		require.Equal(t, accounts.OffboardResult{Erased: 1}, res)

		e, err = st.LatestErasure(ctx, c.acc)
		require.NoError(t, err)
		require.Equal(t, store.ErasureDone, e.Status)
		require.NotNil(t, e.Report)
		require.Equal(t, 2, e.Report.Blobs)
		require.Equal(t, 2, e.Report.Snapshots)
		require.Equal(t, 1, e.Report.APIKeys)
		require.Equal(t, 1, e.Report.Notifications)
		require.Equal(t, 1, e.Report.Endpoints)
		for _, key := range c.blobs {
			_, err := blobs.Stat(ctx, key)
			require.ErrorIs(t, err, blob.ErrNotFound, "the backups are gone")
		}
		acc, err := st.GetAccount(ctx, c.acc)
		require.NoError(t, err)
		require.Equal(t, store.ErasedAccountName, acc.Name)
		require.Empty(t, acc.ContactEmail)
		src, err := st.GetSource(ctx, c.src)
		require.NoError(t, err)
		require.NotEqual(t, "orders-db", src.Name)
		require.NotContains(t, string(src.Config), "s3cret", "the DSN is gone")
		authz, err := auth.New(st, auth.Config{Logger: storetest.Logger(t)})
		require.NoError(t, err)
		_, err = authz.Authenticate(ctx, "Bearer "+c.keySecret)
		require.Error(t, err, "the account's keys no longer work")
		n, err := st.ListNotifications(ctx, store.ListNotificationsParams{AccountID: c.acc, Limit: 10})
		require.NoError(t, err)
		require.Empty(t, n)

		// The other customer is untouched.
		o, err := st.GetAccount(ctx, other.acc)
		require.NoError(t, err)
		require.Equal(t, "Grace Archives", o.Name)
		for _, key := range other.blobs {
			_, err := blobs.Stat(ctx, key)
			require.NoError(t, err)
		}

		got = run(t, st, w, accounts.ActionRequestErasure, c.acc, map[string]string{"confirm": store.ErasedAccountName})
		require.Equal(t, http.StatusConflict, got.HTTPStatus)
		require.Equal(t, "already_erased", got.Error.Code)
	})
}

func TestOffboardingErasesLongCanceledAccountsUnlessHeld(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	ctx := t.Context()
	w, blobs := erasureWorker(t, st)
	w.OffboardGrace = 30 * 24 * time.Hour
	gone := newCustomer(t, st, blobs, "Gone Ltd")
	held := newCustomer(t, st, blobs, "Held Ltd")
	active := newCustomer(t, st, blobs, "Active Ltd")
	for _, acc := range []string{gone.acc, held.acc} {
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			return tx.SetAccountBilling(ctx, store.AccountBilling{ID: acc, Status: store.AccountStatusCanceled, Entitlements: []byte("{}")})
		}))
	}
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.InsertHold(ctx, store.LegalHold{ID: "hold_" + held.acc[4:], AccountID: held.acc, SourceID: held.src, Reason: "tax audit", PlacedBy: "key_ops", PlacedByOperator: true})
		return err
	}))

	// A change to the account after its cancellation does not restart
	// the grace: it counts from the cancellation.
	name := "Gone Ltd (closed)"
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.UpdateAccount(ctx, store.AccountChanges{ID: gone.acc, Name: &name, UpdatedAt: time.Now().Add(20 * 24 * time.Hour)})
		return err
	}))
	res, err := w.Offboard(ctx, time.Now().Add(10*24*time.Hour))
	require.NoError(t, err)
	require.Equal(t, accounts.OffboardResult{}, res, "canceled ten days ago: within the grace")

	res, err = w.Offboard(ctx, time.Now().Add(31*24*time.Hour))
	require.NoError(t, err)
	require.Equal(t, accounts.OffboardResult{Scheduled: 2, Erased: 1, Blocked: 1}, res)
	e, err := st.LatestErasure(ctx, gone.acc)
	require.NoError(t, err)
	require.Equal(t, store.ErasureDone, e.Status)
	require.Equal(t, store.ErasureOffboarding, e.Origin)
	b, err := st.LatestErasure(ctx, held.acc)
	require.NoError(t, err)
	require.Equal(t, store.ErasureBlocked, b.Status)
	require.Contains(t, b.StatusReason, "tax audit")
	for _, key := range held.blobs {
		_, err := blobs.Stat(ctx, key)
		require.NoError(t, err, "a held account's backups stay")
	}
	_, err = st.LatestErasure(ctx, active.acc)
	require.ErrorIs(t, err, store.ErrNotFound, "an active account is not offboarded")

	again, err := w.Offboard(context.WithoutCancel(ctx), time.Now().Add(32*24*time.Hour))
	require.NoError(t, err)
	require.Equal(t, accounts.OffboardResult{Blocked: 1}, again, "nothing scheduled twice; the held one is tried again")

	got := run(t, st, w, accounts.ActionCancelErasure, held.acc, map[string]any{})
	require.Equal(t, http.StatusForbidden, got.HTTPStatus, "an account's own key does not cancel its offboarding")

	// The held customer comes back and the hold is released: the
	// offboarding erasure is canceled, not carried out.
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.SetAccountBilling(ctx, store.AccountBilling{ID: held.acc, Status: store.AccountStatusActive, Entitlements: []byte("{}")}); err != nil {
			return err
		}
		_, err := tx.ReleaseHold(ctx, store.ReleaseHoldParams{ID: "hold_" + held.acc[4:], By: "key_ops", Reason: "audit over"})
		return err
	}))
	back, err := w.Offboard(ctx, time.Now().Add(33*24*time.Hour))
	require.NoError(t, err)
	require.Zero(t, back.Erased)
	b, err = st.LatestErasure(ctx, held.acc)
	require.NoError(t, err)
	require.Equal(t, store.ErasureCanceled, b.Status)
	require.Equal(t, "the account is active again", b.StatusReason)
	for _, key := range held.blobs {
		_, err := blobs.Stat(ctx, key)
		require.NoError(t, err, "a returning customer's backups stay")
	}
}

func TestOnlyOperatorsSkipTheCoolingOff(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	w, blobs := erasureWorker(t, st)
	c := newCustomer(t, st, blobs, "Hasty Ltd")
	got := run(t, st, w, accounts.ActionRequestErasure, c.acc, map[string]any{"confirm": "Hasty Ltd", "immediately": true})
	require.Equal(t, http.StatusForbidden, got.HTTPStatus)
	require.Equal(t, "immediately", got.Error.Field)

	got = run(t, st, w, accounts.ActionRequestErasure, c.acc, map[string]any{"confirm": "Hasty Ltd", "immediately": true, "by_operator": true})
	require.Equal(t, http.StatusAccepted, got.HTTPStatus, "%+v", got.Error)
	res, err := w.Offboard(t.Context(), time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, accounts.OffboardResult{Erased: 1}, res)
}

// TestTheOwnerIsRemindedADayAheadOnce: a requested erasure due within a
// day raises accounts.erasure_due once; one further off, none.
func TestTheOwnerIsRemindedADayAheadOnce(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	ctx := t.Context()
	w, blobs := erasureWorker(t, st)
	w.ErasureCoolingOff = 7 * 24 * time.Hour
	c := newCustomer(t, st, blobs, "Leaving Ltd")
	got := run(t, st, w, accounts.ActionRequestErasure, c.acc, map[string]any{"confirm": "Leaving Ltd"})
	require.Equal(t, http.StatusAccepted, got.HTTPStatus, "%+v", got.Error)
	reminders := func() int {
		msgs, err := st.UnpublishedOutbox(ctx, 100)
		require.NoError(t, err)
		n := 0
		for _, m := range msgs {
			if strings.HasSuffix(m.Subject, ".accounts.erasure_due") {
				require.Equal(t, c.acc, m.Headers["Levqor-Account"])
				n++
			}
		}
		return n
	}

	n, err := w.RemindErasures(ctx, time.Now().Add(5*24*time.Hour))
	require.NoError(t, err)
	require.Zero(t, n, "two days to go")
	n, err = w.RemindErasures(ctx, time.Now().Add(6*24*time.Hour+time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = w.RemindErasures(ctx, time.Now().Add(6*24*time.Hour+2*time.Hour))
	require.NoError(t, err)
	require.Zero(t, n, "reminded once")
	require.Equal(t, 1, reminders())
}

// TestNoErasureFromACatalogNotYetReconciled: after Levqor's database was
// restored from a self-backup, an erasure due waits (blocked, saying why)
// until the catalog is reconciled with the blob store, which may hold
// backups it does not know; then it is carried out.
func TestNoErasureFromACatalogNotYetReconciled(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	ctx := t.Context()
	w, blobs := erasureWorker(t, st)
	w.OffboardGrace = 30 * 24 * time.Hour
	gone := newCustomer(t, st, blobs, "Gone Ltd")
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		return tx.SetAccountBilling(ctx, store.AccountBilling{ID: gone.acc, Status: store.AccountStatusCanceled, Entitlements: []byte("{}")})
	}))
	require.NoError(t, st.RecordSelfRestore(ctx, store.SelfRestore{ID: "rst_1", BackupKey: "levqor-self/levqor/20261201T024500Z.lvq",
		BackupTakenAt: time.Now().Add(-time.Hour), RestoredAt: time.Now()}))

	res, err := w.Offboard(ctx, time.Now().Add(31*24*time.Hour))
	require.NoError(t, err)
	require.Equal(t, accounts.OffboardResult{Scheduled: 1, Blocked: 1}, res)
	e, err := st.LatestErasure(ctx, gone.acc)
	require.NoError(t, err)
	require.Equal(t, store.ErasureBlocked, e.Status)
	require.Contains(t, e.StatusReason, "levqor selfrestore reconcile")
	for _, key := range gone.blobs {
		_, err := blobs.Stat(ctx, key)
		require.NoError(t, err, "nothing is deleted meanwhile")
	}

	require.NoError(t, st.MarkSelfRestoresReconciled(ctx, time.Now()))
	res, err = w.Offboard(ctx, time.Now().Add(32*24*time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, res.Erased)
}

// TestAnOperatorsSuspensionHoldsTheOffboarding: a canceled account an
// operator suspended is not erased while the suspension holds (its
// erasure is blocked, naming the reason, and its backups stay); once it
// is lifted, the offboarding goes ahead.
func TestAnOperatorsSuspensionHoldsTheOffboarding(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	ctx := t.Context()
	w, blobs := erasureWorker(t, st)
	w.OffboardGrace = 30 * 24 * time.Hour
	c := newCustomer(t, st, blobs, "Disputed Ltd")
	suspend := func(s *store.AccountSuspension) {
		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error { return tx.SetAccountSuspension(ctx, c.acc, s, time.Time{}) }))
	}
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		return tx.SetAccountBilling(ctx, store.AccountBilling{ID: c.acc, Status: store.AccountStatusCanceled, Entitlements: []byte("{}")})
	}))
	suspend(&store.AccountSuspension{Reason: "fraud inquiry 77", By: "key:key_ops"})

	res, err := w.Offboard(ctx, time.Now().Add(31*24*time.Hour))
	require.NoError(t, err)
	require.Equal(t, accounts.OffboardResult{Scheduled: 1, Blocked: 1}, res)
	e, err := st.LatestErasure(ctx, c.acc)
	require.NoError(t, err)
	require.Equal(t, store.ErasureBlocked, e.Status)
	require.Contains(t, e.StatusReason, "fraud inquiry 77")
	for _, key := range c.blobs {
		_, err := blobs.Stat(ctx, key)
		require.NoError(t, err, "a suspended account's backups stay")
	}

	suspend(nil)
	res, err = w.Offboard(ctx, time.Now().Add(32*24*time.Hour))
	require.NoError(t, err)
	require.Equal(t, accounts.OffboardResult{Erased: 1}, res, "lifted, the offboarding goes ahead")
}
