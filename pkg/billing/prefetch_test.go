package billing_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/stripeapi"
)

// fakeStripe answers GET /v1/subscriptions/{id} with a growth
// subscription, or with status when it is set. Each call checks that the
// store is free: on SQLite the store has one connection, so a transaction
// held open across the call would make that check wait and fail.
type fakeStripe struct {
	st          *store.Store
	status      atomic.Int32
	calls       atomic.Int32
	heldOpenTxs atomic.Int32
}

func (f *fakeStripe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := f.st.InTx(ctx, func(*store.Tx) error { return nil }); err != nil {
		f.heldOpenTxs.Add(1)
	}
	w.Header().Set("Content-Type", "application/json")
	if code := int(f.status.Load()); code != 0 {
		w.WriteHeader(code)
		_, _ = w.Write([]byte(`{"error": {"type": "api_error", "message": "stripe is having a bad day"}}`))
		return
	}
	id := r.URL.Path[len("/v1/subscriptions/"):]
	_ = json.NewEncoder(w).Encode(map[string]any{
		"id": id, "object": "subscription", "status": "active", "customer": "cus_pf",
		"items": map[string]any{"object": "list", "data": []any{map[string]any{
			"id": "si_pf", "object": "subscription_item", "quantity": 1,
			"price": map[string]any{"id": "price_levqor_growth_monthly", "object": "price", "currency": "gbp"},
		}}},
	})
}

func TestUnknownSubscriptionIsFetchedBeforeTheTransaction(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	h := newHarness(t, st)
	h.account("acc_pf", "cus_pf")
	fake := &fakeStripe{st: st}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	h.w.Stripe = stripeapi.New(stripeapi.Config{Key: "sk_test_levqor", BaseURL: srv.URL})
	handle := bus.SingleHandler(h.w.StripeHandler())
	deliver := func(evID string, created time.Time) error {
		// An update that shows only what changed: no items.
		payload := subEvent(t, "customer.subscription.updated", evID, "sub_pf", "cus_pf", "active", created)
		return handle(context.Background(), &bus.Message{
			Subject: "levqor.stripe.customer.subscription.updated", Data: payload, Header: nats.Header{bus.HeaderMsgID: {evID}},
			Stream: "STRIPE", Consumer: billing.ConsumerStripe, StreamSeq: uint64(created.Unix()), Deliveries: 1,
		})
	}

	t.Run("StripeFailureIsRetried", func(t *testing.T) {
		fake.status.Store(http.StatusInternalServerError)
		err := deliver("evt_pf_0", t0)
		require.Error(t, err)
		require.False(t, bus.IsPermanent(err), "a Stripe 5xx is retried, not dead-lettered: %v", err)
		require.Nil(t, h.get("acc_pf").Tier, "nothing applied")
		fake.status.Store(0)
	})
	t.Run("FetchedOnceOutsideTheTransaction", func(t *testing.T) {
		before := fake.calls.Load()
		require.NoError(t, deliver("evt_pf_1", t0.Add(time.Minute)))
		require.Equal(t, before+1, fake.calls.Load(), "the unknown subscription was fetched")
		require.Equal(t, "growth", *h.get("acc_pf").Tier, "entitlements come from the fetched subscription")

		require.NoError(t, deliver("evt_pf_2", t0.Add(2*time.Minute)))
		require.Equal(t, before+1, fake.calls.Load(), "a known subscription is not fetched again")
	})
	require.Zero(t, fake.heldOpenTxs.Load(), "no Stripe call was made with a transaction open")
}
