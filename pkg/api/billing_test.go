package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/api"
	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/stripemock"
	"github.com/levqor/levqor/pkg/stripesim"
)

// webhook signs a Stripe event and posts it to ingest.
func (h *harness) webhook(t *testing.T, typ string, o stripesim.EventOptions) {
	t.Helper()
	b, err := stripesim.NewEvent(typ, o)
	require.NoError(t, err)
	res, err := (&stripesim.Sender{URL: h.url + "/webhooks/stripe", Secret: "whsec_api_tests"}).Send(t.Context(), b)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.Status, string(res.Body))
}

// billingOf reads GET /v1/accounts/{id}/billing with key.
func (h *harness) billingOf(t *testing.T, id, key string) api.AccountBilling {
	t.Helper()
	r := h.do(t, http.MethodGet, "/v1/accounts/"+id+"/billing", key, nil)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	var b api.AccountBilling
	r.json(t, &b)
	return b
}

func checkoutBody(accountID string, items ...map[string]any) map[string]any {
	b := map[string]any{"items": items, "success_url": "https://app.example.com/done", "cancel_url": "https://app.example.com/plans"}
	if accountID != "" {
		b["account_id"] = accountID
	}
	return b
}

func item(key string, qty int) map[string]any { return map[string]any{"key": key, "quantity": qty} }

// TestBillingEndpointsRefuseWrongCallers: no key is 401; another account's
// key gets 404 exactly as for an account that does not exist; the
// account's own key and operators are admitted. Nothing refused becomes a
// command.
func TestBillingEndpointsRefuseWrongCallers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{noStripe: true})
	for _, e := range []struct {
		name, method, path string
		body               func(acc string) any
	}{
		{"Checkout", http.MethodPost, "/v1/billing/checkout-sessions", func(acc string) any { return checkoutBody(acc, item("growth_monthly", 1)) }},
		{"Portal", http.MethodPost, "/v1/billing/portal-sessions", func(acc string) any {
			return map[string]string{"account_id": acc, "return_url": "https://app.example.com/account"}
		}},
		{"Read", http.MethodGet, "/v1/accounts/{id}/billing", func(string) any { return nil }},
	} {
		t.Run(e.name, func(t *testing.T) {
			path := func(acc string) string { return strings.Replace(e.path, "{id}", acc, 1) }
			before := h.commandsPublished(t)

			r := h.do(t, e.method, path(h.accA), "", e.body(h.accA))
			require.Equal(t, http.StatusUnauthorized, r.status, string(r.body))
			require.Equal(t, "unauthenticated", r.errorOf(t)["code"])

			foreign := h.do(t, e.method, path(h.accA), h.keyB, e.body(h.accA))
			require.Equal(t, http.StatusNotFound, foreign.status, string(foreign.body))
			absentID := mustID(t, "acc_")
			absent := h.do(t, e.method, path(absentID), h.keyB, e.body(absentID))
			require.Equal(t, http.StatusNotFound, absent.status, string(absent.body))
			fe, ae := foreign.errorOf(t), absent.errorOf(t)
			require.Equal(t, ae["code"], fe["code"])
			require.Equal(t, ae["field"], fe["field"])
			require.NotContains(t, string(foreign.body), "Account A")
			require.Equal(t, before, h.commandsPublished(t), "nothing refused was published")

			own := h.do(t, e.method, path(h.accA), h.keyA, e.body(h.accA))
			require.Less(t, own.status, 300, string(own.body))
			op := h.do(t, e.method, path(h.accA), h.opKey, e.body(h.accA))
			require.Less(t, op.status, 300, string(op.body))
			if e.method == http.MethodPost {
				require.Equal(t, h.accA, own.command(t).AccountID)
				require.Equal(t, h.accA, op.command(t).AccountID)
			}
		})
	}
}

func TestBillingBadInputNamesTheField(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{noStripe: true})
	before := h.commandsPublished(t)
	co, portal := "/v1/billing/checkout-sessions", "/v1/billing/portal-sessions"
	growth := item("growth_monthly", 1)
	for name, tc := range map[string]struct {
		path   string
		key    string
		body   any
		status int
		code   string
		field  string
	}{
		"OperatorMustNameTheAccount": {co, "op", checkoutBody("", growth), 422, "invalid_field", "account_id"},
		"NotAnAccountID":             {co, "op", checkoutBody("acc_x", growth), 422, "invalid_field", "account_id"},
		"UnknownAccount":             {co, "op", checkoutBody(mustID(t, "acc_"), growth), 404, "not_found", "account_id"},
		"NoItems":                    {co, "A", checkoutBody(""), 422, "invalid_field", "items"},
		"UnknownKey":                 {co, "A", checkoutBody("", growth, item("gold_monthly", 1)), 422, "invalid_field", "items[1].key"},
		"Mixed":                      {co, "A", checkoutBody("", growth, item("dfy_onboarding", 1)), 422, "invalid_field", "items"},
		"QuantityZero":               {co, "A", checkoutBody("", growth, item("extra_storage", 0)), 422, "invalid_field", "items[1].quantity"},
		"QuantityTooLarge":           {co, "A", checkoutBody("", item("dfy_migration", 1001)), 422, "invalid_field", "items[0].quantity"},
		"PlainHTTP":                  {co, "A", map[string]any{"items": []any{growth}, "success_url": "http://app.example.com/ok", "cancel_url": "https://app.example.com/c"}, 422, "invalid_field", "success_url"},
		"NoCancelURL":                {co, "A", map[string]any{"items": []any{growth}, "success_url": "https://app.example.com/ok"}, 422, "invalid_field", "cancel_url"},
		"UnknownField":               {co, "A", map[string]any{"items": []any{growth}, "coupon": "FREE"}, 400, "unknown_field", "coupon"},
		"ItemsNotAList":              {co, "A", map[string]any{"items": "growth_monthly"}, 400, "invalid_type", "items"},
		"PortalNoReturnURL":          {portal, "A", map[string]any{}, 422, "invalid_field", "return_url"},
		"PortalRelativeReturnURL":    {portal, "A", map[string]any{"return_url": "/account"}, 422, "invalid_field", "return_url"},
		"PortalForeignAccount":       {portal, "A", map[string]any{"account_id": h.accB, "return_url": "https://a.example/"}, 404, "not_found", "account_id"},
	} {
		t.Run(name, func(t *testing.T) {
			key := h.keyA
			if tc.key == "op" {
				key = h.opKey
			}
			r := h.do(t, http.MethodPost, tc.path, key, tc.body)
			require.Equal(t, tc.status, r.status, string(r.body))
			e := r.errorOf(t)
			require.Equal(t, tc.code, e["code"], string(r.body))
			require.Equal(t, tc.field, e["field"], string(r.body))
		})
	}
	t.Run("NotJSON", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPost, h.url+co, strings.NewReader("items=growth_monthly"))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+h.keyA)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
	})
	t.Run("ReadBadID", func(t *testing.T) {
		r := h.do(t, http.MethodGet, "/v1/accounts/acc_x/billing", h.opKey, nil)
		require.Equal(t, http.StatusBadRequest, r.status)
		require.Equal(t, "id", r.errorOf(t)["field"])
		r = h.do(t, http.MethodGet, "/v1/accounts/"+h.accA+"/billing?limit=3", h.keyA, nil)
		require.Equal(t, http.StatusBadRequest, r.status)
		require.Equal(t, "limit", r.errorOf(t)["field"])
	})
	require.Equal(t, before, h.commandsPublished(t), "no bad request became a command")
}

// TestBillingThroughTheWorker is the happy path of every billing endpoint
// on both databases: commands carried out by the billing worker against
// stripe-mock, then Stripe's webhooks through ingest, then the account's
// billing read back.
func TestBillingThroughTheWorker(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st, options{})
		h.runWorkers(t, billing.WorkerName)
		before := h.billingOf(t, h.accA, h.keyA)
		require.Nil(t, before.Tier)
		require.JSONEq(t, `{}`, string(before.Entitlements))
		require.Empty(t, before.Subscriptions)
		require.Nil(t, before.Dunning)

		t.Run("CheckoutWithItsOwnKey", func(t *testing.T) {
			r := h.do(t, http.MethodPost, "/v1/billing/checkout-sessions?wait=15s", h.keyA,
				checkoutBody("", item("growth_monthly", 1), item("extra_storage", 2)), "Idempotency-Key", "checkout-1")
			require.Equal(t, http.StatusCreated, r.status, string(r.body))
			v := r.command(t)
			require.Equal(t, "billing.checkout", v.Type)
			require.Equal(t, h.accA, v.AccountID)
			var cs billing.CheckoutResult
			require.NoError(t, json.Unmarshal(v.Result, &cs))
			require.True(t, strings.HasPrefix(cs.ID, "cs_"), cs.ID)
			require.NotEmpty(t, cs.URL)
			require.Equal(t, "subscription", cs.Mode)

			again := h.do(t, http.MethodPost, "/v1/billing/checkout-sessions?wait=15s", h.keyA,
				checkoutBody("", item("growth_monthly", 1), item("extra_storage", 2)), "Idempotency-Key", "checkout-1")
			require.Equal(t, v.CommandID, again.command(t).CommandID, "the same key is the same command")
			require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
		})

		t.Run("DFYCheckoutByAnOperator", func(t *testing.T) {
			r := h.do(t, http.MethodPost, "/v1/billing/checkout-sessions?wait=15s", h.opKey, checkoutBody(h.accA, item("dfy_onboarding", 1)))
			require.Equal(t, http.StatusCreated, r.status, string(r.body))
			var cs billing.CheckoutResult
			require.NoError(t, json.Unmarshal(r.command(t).Result, &cs))
			require.Equal(t, "payment", cs.Mode)
		})

		t.Run("Portal", func(t *testing.T) {
			r := h.do(t, http.MethodPost, "/v1/billing/portal-sessions?wait=15s", h.keyA, map[string]string{"return_url": "https://app.example.com/account"})
			require.Equal(t, http.StatusCreated, r.status, string(r.body))
			var ps billing.PortalResult
			require.NoError(t, json.Unmarshal(r.command(t).Result, &ps))
			require.True(t, strings.HasPrefix(ps.URL, "https://"), ps.URL)
		})

		t.Run("WebhooksMakeItGrowth", func(t *testing.T) {
			t1 := time.Now().Add(-time.Minute).Truncate(time.Second)
			h.webhook(t, "checkout.session.completed", stripesim.EventOptions{Created: t1, Customer: "cus_A", AccountRef: h.accA,
				Data: json.RawMessage(`{"mode":"payment","metadata":{"levqor_account":"` + h.accA + `","levqor_products":"dfy_onboarding:1"}}`)})
			h.webhook(t, "customer.subscription.created", stripesim.EventOptions{Created: t1.Add(time.Second), Customer: "cus_A",
				ObjectID: "sub_api_growth", Price: "price_levqor_growth_monthly"})
			var b api.AccountBilling
			require.Eventually(t, func() bool {
				b = h.billingOf(t, h.accA, h.keyA)
				return b.Tier != nil && len(b.DFYPurchases) == 1
			}, 15*time.Second, 50*time.Millisecond)
			require.Equal(t, "growth", *b.Tier)
			require.Equal(t, "active", b.Status)
			var ent map[string]any
			require.NoError(t, json.Unmarshal(b.Entitlements, &ent))
			require.EqualValues(t, 500, ent["storage_gb"])
			require.EqualValues(t, 5, ent["sources"])
			require.Len(t, b.Subscriptions, 1)
			sub := b.Subscriptions[0]
			require.Equal(t, "sub_api_growth", sub.ID)
			require.Equal(t, "active", sub.Status)
			require.Equal(t, []api.SubscriptionLine{{PriceID: "price_levqor_growth_monthly", Quantity: 1, Kind: "tier", Key: "growth", Interval: "month"}}, sub.Items)
			require.Empty(t, sub.UnknownPrices)
			require.Equal(t, "dfy_onboarding", b.DFYPurchases[0].Package)
			require.True(t, strings.HasPrefix(b.DFYPurchases[0].CheckoutSessionID, "cs_"), b.DFYPurchases[0].CheckoutSessionID)

			other := h.billingOf(t, h.accB, h.keyB)
			require.Nil(t, other.Tier, "account B is untouched")
		})

		t.Run("SecondSubscriptionIsRefused", func(t *testing.T) {
			r := h.do(t, http.MethodPost, "/v1/billing/checkout-sessions?wait=15s", h.keyA, checkoutBody("", item("business_annual", 1)))
			require.Equal(t, http.StatusConflict, r.status, string(r.body))
			v := r.command(t)
			require.Equal(t, store.CommandFailed, v.Status)
			require.Equal(t, "already_subscribed", v.Error.Code)
			require.Equal(t, "items", v.Error.Field)
		})

		t.Run("FailedPaymentIsPastDue", func(t *testing.T) {
			h.webhook(t, "invoice.payment_failed", stripesim.EventOptions{Customer: "cus_A", ObjectID: "in_api_1",
				Subscription: "sub_api_growth", Price: "price_levqor_growth_monthly"})
			var b api.AccountBilling
			require.Eventually(t, func() bool {
				b = h.billingOf(t, h.accA, h.keyA)
				return b.Status == "past_due"
			}, 15*time.Second, 50*time.Millisecond)
			require.Equal(t, "growth", *b.Tier, "still entitled during the grace period")
			require.NotNil(t, b.Dunning)
			require.Equal(t, "past_due", b.Dunning.State)
			require.Equal(t, "in_api_1", b.Dunning.InvoiceID)
			require.WithinDuration(t, b.Dunning.PastDueSince.Add(168*time.Hour), b.Dunning.GraceUntil, time.Second)
			require.Len(t, b.Invoices, 1)
			require.Equal(t, "in_api_1", b.Invoices[0].ID)
			require.Equal(t, "open", b.Invoices[0].Status)
			require.Equal(t, "sub_api_growth", b.Invoices[0].SubscriptionID)
		})
	})
}

// flakyStripe answers the first failures POSTs to /v1/checkout/sessions
// with 500 and records the Idempotency-Key of every one.
type flakyStripe struct {
	mu       sync.Mutex
	keys     []string
	failures int
	url      string
}

func newFlakyStripe(t *testing.T, failures int) *flakyStripe {
	t.Helper()
	target, err := url.Parse(stripemock.Start(t))
	require.NoError(t, err)
	f := &flakyStripe{failures: failures}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/checkout/sessions" {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			f.mu.Lock()
			f.keys = append(f.keys, r.Header.Get("Idempotency-Key"))
			n := len(f.keys)
			f.mu.Unlock()
			if n <= f.failures {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = w.Write([]byte(`{"error":{"type":"api_error","message":"An unknown error occurred"}}`))
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *flakyStripe) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.keys...)
}

// TestCheckoutRetriedByTheBusKeepsItsIdempotencyKey: Stripe fails twice
// with 500 (stripe-go does not retry a POST on it); the router retries the
// command, and every attempt sends the same idempotency key.
func TestCheckoutRetriedByTheBusKeepsItsIdempotencyKey(t *testing.T) {
	t.Parallel()
	flaky := newFlakyStripe(t, 2)
	h := newHarness(t, storetest.SQLite(t), options{stripeURL: flaky.url})
	h.runWorkers(t, billing.WorkerName)
	r := h.do(t, http.MethodPost, "/v1/billing/checkout-sessions?wait=25s", h.keyA, checkoutBody("", item("starter_annual", 1)))
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	v := r.command(t)
	keys := flaky.seen()
	require.Len(t, keys, 3, "two failures, then the session")
	for _, k := range keys {
		require.Equal(t, billing.CheckoutIdempotencyKey(v.CommandID), k)
	}
}

// TestDeadLetteredBillingCommandIsFailed: with Stripe unreachable and one
// delivery allowed, the command ends in the DLQ and billing-dlq marks it
// failed, so the waiting client gets an answer.
func TestDeadLetteredBillingCommandIsFailed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{stripeURL: "http://127.0.0.1:1", maxDel: 1})
	h.runWorkers(t, billing.WorkerName)
	r := h.do(t, http.MethodPost, "/v1/billing/portal-sessions", h.keyA, map[string]string{"return_url": "https://app.example.com/"})
	require.Equal(t, http.StatusAccepted, r.status, string(r.body))
	v := r.command(t)
	require.Eventually(t, func() bool {
		got := h.do(t, http.MethodGet, "/v1/commands/"+v.CommandID, h.keyA, nil)
		return got.command(t).Status == store.CommandFailed
	}, 45*time.Second, 100*time.Millisecond)
	got := h.do(t, http.MethodGet, "/v1/commands/"+v.CommandID, h.keyA, nil).command(t)
	require.Equal(t, http.StatusServiceUnavailable, got.HTTPStatus)
	require.Equal(t, store.CommandErrorDeadLettered, got.Error.Code)
}
