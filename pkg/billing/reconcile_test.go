package billing_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/stripeapi"
	"github.com/levqor/levqor/pkg/stripemock"
)

// mockSubscription is what stripe-mock lists: one fixture subscription.
func mockSubscription(t *testing.T, base string) *stripe.Subscription {
	t.Helper()
	log := logrus.New()
	log.Out = io.Discard
	api := stripeapi.New(stripeapi.Config{Key: "sk_test_levqor", BaseURL: base, Log: log})
	it := api.Subscriptions.List(&stripe.SubscriptionListParams{Status: stripe.String("all")})
	require.True(t, it.Next(), "stripe-mock lists a subscription")
	return it.Subscription()
}

func TestReconcileRepairsDrift(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		base := stripemock.Start(t)
		fixture := mockSubscription(t, base)
		h := newHarness(t, st)
		log := logrus.New()
		log.Out = io.Discard
		h.w.Stripe = stripeapi.New(stripeapi.Config{Key: "sk_test_levqor", BaseURL: base, Log: log})
		h.account("acc_rec", fixture.Customer.ID)

		// Drift: Levqor believes the subscription is canceled (a webhook was
		// missed or the dashboard changed it), and holds one Stripe no
		// longer has.
		require.NoError(t, st.InTx(context.Background(), func(tx *store.Tx) error {
			if err := tx.PutSubscription(context.Background(), store.Subscription{ID: fixture.ID, AccountID: "acc_rec", CustomerID: fixture.Customer.ID, Status: "canceled", Source: store.SourceEvent{ID: "evt_x", Created: t0}}); err != nil {
				return err
			}
			return tx.PutSubscription(context.Background(), store.Subscription{ID: "sub_ghost", AccountID: "acc_rec", CustomerID: fixture.Customer.ID, Status: "active", Source: store.SourceEvent{ID: "evt_y", Created: t0}})
		}))
		outboxBefore, err := st.UnpublishedOutbox(context.Background(), 1000)
		require.NoError(t, err)
		dry, err := h.w.ReconcileDryRun(context.Background(), time.Now())
		require.NoError(t, err)
		require.True(t, dry.DryRun)
		dryKinds := map[string]string{}
		for _, r := range dry.Repairs {
			dryKinds[r.SubscriptionID] = r.Kind
		}
		require.Equal(t, "changed", dryKinds[fixture.ID], "the dry run reports the repair")
		require.Equal(t, "vanished", dryKinds["sub_ghost"])
		require.NoError(t, st.InTx(context.Background(), func(tx *store.Tx) error {
			held, err := tx.GetSubscription(context.Background(), fixture.ID)
			require.NoError(t, err)
			require.Equal(t, "canceled", held.Status, "the dry run changed nothing")
			return nil
		}))
		outboxAfter, err := st.UnpublishedOutbox(context.Background(), 1000)
		require.NoError(t, err)
		require.Len(t, outboxAfter, len(outboxBefore), "the dry run announced nothing")

		rep, err := h.w.Reconcile(context.Background(), time.Now())
		require.NoError(t, err)
		require.GreaterOrEqual(t, rep.Listed, 1)
		require.Len(t, rep.Repairs, len(dry.Repairs), "the real run makes the repairs the dry run listed")
		kinds := map[string]string{}
		for _, r := range rep.Repairs {
			kinds[r.SubscriptionID] = r.Kind
		}
		require.Equal(t, "changed", kinds[fixture.ID])
		require.Equal(t, "vanished", kinds["sub_ghost"])

		var got *store.Subscription
		require.NoError(t, st.InTx(context.Background(), func(tx *store.Tx) error {
			var err error
			got, err = tx.GetSubscription(context.Background(), fixture.ID)
			return err
		}))
		require.Equal(t, string(fixture.Status), got.Status, "Stripe's state wins")

		again, err := h.w.Reconcile(context.Background(), time.Now())
		require.NoError(t, err)
		require.Empty(t, again.Repairs, "a second run finds nothing to repair")
	})
}

func TestStripeServerErrorsAreRetriedNotFatal(t *testing.T) {
	t.Parallel()
	base := stripemock.Start(t)
	target, _ := url.Parse(base)
	var calls atomic.Int32
	proxy := httputil.NewSingleHostReverseProxy(target)
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 3 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"error":{"type":"api_error","message":"boom"}}`))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer flaky.Close()
	h := newHarness(t, storetest.SQLite(t))
	log := logrus.New()
	log.Out = io.Discard
	h.w.Stripe = stripeapi.New(stripeapi.Config{Key: "sk_test_levqor", BaseURL: flaky.URL, Log: log})
	_, err := h.w.Reconcile(context.Background(), time.Now())
	if err != nil {
		// stripe-go's own retries were used up: the error must be
		// transient so the tick is redelivered with backoff.
		require.False(t, isPermanent(err), "a 5xx must be retried: %v", err)
		_, err = h.w.Reconcile(context.Background(), time.Now())
	}
	require.NoError(t, err, "succeeds once Stripe recovers")
	require.GreaterOrEqual(t, calls.Load(), int32(4))
}

func TestReconcileWithoutStripeKeyIsAClearError(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t))
	_, err := h.w.Reconcile(context.Background(), time.Now())
	require.ErrorIs(t, err, billing.ErrNoStripeAPI)
}

// TestReconcileAppliesAPriceTheCatalogLearned: a subscription on a price
// the catalog did not know leaves the account as it was; once the catalog
// has the price, the next reconciliation applies it.
func TestReconcileAppliesAPriceTheCatalogLearned(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	base := stripemock.Start(t)
	fixture := mockSubscription(t, base)
	require.NotEmpty(t, fixture.Items.Data)
	price := fixture.Items.Data[0].Price.ID
	h := newHarness(t, st)
	h.w.Stripe = stripeapi.New(stripeapi.Config{Key: "sk_test_levqor", BaseURL: base, Log: storetest.Logger(t)})
	h.account("acc_learn", fixture.Customer.ID)

	_, err := h.w.Reconcile(context.Background(), time.Now())
	require.NoError(t, err)
	require.Nil(t, h.get("acc_learn").Tier, "an unknown price changes nothing")

	learned, err := catalog.Parse([]byte(strings.Replace(string(catalog.Example), "price_levqor_growth_monthly", price, 1)))
	require.NoError(t, err)
	h.w.Catalog = learned
	rep, err := h.w.Reconcile(context.Background(), time.Now())
	require.NoError(t, err)
	require.Len(t, rep.Repairs, 1)
	require.Equal(t, "changed", rep.Repairs[0].Kind)
	require.Contains(t, rep.Repairs[0].From, price, "the repair shows the price that was unknown")
	require.Equal(t, "growth", *h.get("acc_learn").Tier)
}
