package stripedev_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/levqor/levqor/pkg/stripeapi"
	"github.com/levqor/levqor/pkg/stripedev"
)

const key = "sk_test_levqordev"

type setup struct {
	url string
	api *client.API
}

func start(t *testing.T, cfg stripedev.Config) setup {
	t.Helper()
	s, err := stripedev.New(cfg)
	require.NoError(t, err)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return setup{url: ts.URL, api: stripeapi.New(stripeapi.Config{Key: key, BaseURL: ts.URL})}
}

func stripeErr(t *testing.T, err error) *stripe.Error {
	t.Helper()
	var se *stripe.Error
	require.ErrorAs(t, err, &se)
	return se
}

func TestCustomers(t *testing.T) {
	t.Parallel()
	s := start(t, stripedev.Config{})

	params := &stripe.CustomerParams{Name: stripe.String("Ada Backups Ltd"), Email: stripe.String("ops@ada.example")}
	params.AddMetadata("levqor_account_id", "acc_1")
	params.SetIdempotencyKey("levqor-cmd_1-customer-create")
	cus, err := s.api.Customers.New(params)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(cus.ID, "cus_"), cus.ID)
	require.Equal(t, "Ada Backups Ltd", cus.Name)
	require.Equal(t, "ops@ada.example", cus.Email)
	require.Equal(t, "acc_1", cus.Metadata["levqor_account_id"])

	t.Run("IdempotentRetryReturnsTheSameCustomer", func(t *testing.T) {
		again := &stripe.CustomerParams{Name: stripe.String("Ada Backups Ltd"), Email: stripe.String("ops@ada.example")}
		again.AddMetadata("levqor_account_id", "acc_1")
		again.SetIdempotencyKey("levqor-cmd_1-customer-create")
		cus2, err := s.api.Customers.New(again)
		require.NoError(t, err)
		require.Equal(t, cus.ID, cus2.ID)

		other, err := s.api.Customers.New(&stripe.CustomerParams{Name: stripe.String("Bob")})
		require.NoError(t, err)
		require.NotEqual(t, cus.ID, other.ID, "each create is a new customer")

		reused := &stripe.CustomerParams{Name: stripe.String("Someone else")}
		reused.SetIdempotencyKey("levqor-cmd_1-customer-create")
		_, err = s.api.Customers.New(reused)
		se := stripeErr(t, err)
		require.Equal(t, http.StatusBadRequest, se.HTTPStatusCode)
		require.Equal(t, stripe.ErrorTypeIdempotency, se.Type)
	})

	t.Run("UpdateAndRetrieve", func(t *testing.T) {
		up := &stripe.CustomerParams{Email: stripe.String("billing@ada.example")}
		_, err := s.api.Customers.Update(cus.ID, up)
		require.NoError(t, err)
		got, err := s.api.Customers.Get(cus.ID, nil)
		require.NoError(t, err)
		require.Equal(t, "billing@ada.example", got.Email)
		require.Equal(t, "Ada Backups Ltd", got.Name, "fields not sent stay")

		_, err = s.api.Customers.Update("cus_nope", up)
		se := stripeErr(t, err)
		require.Equal(t, http.StatusNotFound, se.HTTPStatusCode)
		require.True(t, stripeapi.NotFound(err))
	})
}

func TestCheckoutSessionLineItems(t *testing.T) {
	t.Parallel()
	s := start(t, stripedev.Config{})
	cus, err := s.api.Customers.New(&stripe.CustomerParams{Name: stripe.String("Ada")})
	require.NoError(t, err)

	params := &stripe.CheckoutSessionParams{
		Mode:              stripe.String("subscription"),
		Customer:          stripe.String(cus.ID),
		ClientReferenceID: stripe.String("acc_1"),
		SuccessURL:        stripe.String("http://localhost:3000/done"),
		CancelURL:         stripe.String("http://localhost:3000/"),
		LineItems: []*stripe.CheckoutSessionLineItemParams{
			{Price: stripe.String("price_levqor_growth_monthly"), Quantity: stripe.Int64(1)},
			{Price: stripe.String("price_levqor_extra_storage"), Quantity: stripe.Int64(3)},
		},
		SubscriptionData: &stripe.CheckoutSessionSubscriptionDataParams{},
	}
	params.SubscriptionData.AddMetadata("levqor_account", "acc_1")
	params.AddMetadata("levqor_account", "acc_1")
	params.SetIdempotencyKey("levqor-cmd_2-checkout")
	cs, err := s.api.CheckoutSessions.New(params)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(cs.ID, "cs_test_"), cs.ID)
	require.Equal(t, stripe.CheckoutSessionModeSubscription, cs.Mode)
	require.Equal(t, cus.ID, cs.Customer.ID)
	require.Equal(t, "acc_1", cs.ClientReferenceID)
	require.Equal(t, "acc_1", cs.Metadata["levqor_account"])
	require.Equal(t, s.url+"/c/pay/"+cs.ID, cs.URL)

	it := s.api.CheckoutSessions.ListLineItems(&stripe.CheckoutSessionListLineItemsParams{Session: stripe.String(cs.ID)})
	got := map[string]int64{}
	for it.Next() {
		got[it.LineItem().Price.ID] = it.LineItem().Quantity
	}
	require.NoError(t, it.Err())
	require.Equal(t, map[string]int64{"price_levqor_growth_monthly": 1, "price_levqor_extra_storage": 3}, got)

	// The Checkout URL opens a page that says what to do next.
	resp, err := http.Get(cs.URL)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), "webhook send checkout.session.completed --object "+cs.ID)

	t.Run("UnknownCustomerIsRefused", func(t *testing.T) {
		bad := *params
		bad.Params = stripe.Params{}
		bad.Customer = stripe.String("cus_unknown")
		_, err := s.api.CheckoutSessions.New(&bad)
		se := stripeErr(t, err)
		require.Equal(t, http.StatusBadRequest, se.HTTPStatusCode)
		require.Equal(t, "customer", se.Param)
		require.Contains(t, se.Msg, "No such customer: 'cus_unknown'")
	})
	t.Run("LineItemsAreRequired", func(t *testing.T) {
		_, err := s.api.CheckoutSessions.New(&stripe.CheckoutSessionParams{Mode: stripe.String("payment"), SuccessURL: stripe.String("http://x/")})
		se := stripeErr(t, err)
		require.Equal(t, "line_items", se.Param)
	})
}

func TestPortalSession(t *testing.T) {
	t.Parallel()
	s := start(t, stripedev.Config{})
	cus, err := s.api.Customers.New(&stripe.CustomerParams{Name: stripe.String("Ada")})
	require.NoError(t, err)
	ps, err := s.api.BillingPortalSessions.New(&stripe.BillingPortalSessionParams{Customer: stripe.String(cus.ID), ReturnURL: stripe.String("http://localhost:3000/")})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(ps.ID, "bps_"), ps.ID)
	require.Equal(t, cus.ID, ps.Customer)
	require.Equal(t, "http://localhost:3000/", ps.ReturnURL)
	require.NotEmpty(t, ps.URL)

	_, err = s.api.BillingPortalSessions.New(&stripe.BillingPortalSessionParams{Customer: stripe.String("cus_gone")})
	require.Equal(t, http.StatusBadRequest, stripeErr(t, err).HTTPStatusCode)
}

func TestSubscriptionsAreOnlyWhatItKnows(t *testing.T) {
	t.Parallel()
	s := start(t, stripedev.Config{})
	_, err := s.api.Subscriptions.Get("sub_123", nil)
	require.True(t, stripeapi.NotFound(err), "%v", err)
	p := &stripe.SubscriptionListParams{Status: stripe.String("all")}
	p.Limit = stripe.Int64(100)
	it := s.api.Subscriptions.List(p)
	require.False(t, it.Next())
	require.NoError(t, it.Err())
}

func TestStateSurvivesARestart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "stripe.json")
	first := start(t, stripedev.Config{StatePath: path})
	cus, err := first.api.Customers.New(&stripe.CustomerParams{Name: stripe.String("Ada")})
	require.NoError(t, err)

	second := start(t, stripedev.Config{StatePath: path})
	got, err := second.api.Customers.Get(cus.ID, nil)
	require.NoError(t, err)
	require.Equal(t, "Ada", got.Name)
	_, err = second.api.BillingPortalSessions.New(&stripe.BillingPortalSessionParams{Customer: stripe.String(cus.ID)})
	require.NoError(t, err, "a customer created before the restart still has a portal")
}

func TestRefusalsHaveStripesShape(t *testing.T) {
	t.Parallel()
	s := start(t, stripedev.Config{})
	do := func(method, path, auth, body string) (int, map[string]map[string]string) {
		req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
		require.NoError(t, err)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var v map[string]map[string]string
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
		return resp.StatusCode, v
	}
	status, v := do(http.MethodGet, "/v1/invoices", key, "")
	require.Equal(t, http.StatusNotFound, status)
	require.Equal(t, "invalid_request_error", v["error"]["type"])
	require.Contains(t, v["error"]["message"], "Unrecognized request URL (GET: /v1/invoices)")

	status, v = do(http.MethodPost, "/v1/customers", "", "name=x")
	require.Equal(t, http.StatusUnauthorized, status)
	require.Contains(t, v["error"]["message"], "API Key")

	status, _ = do(http.MethodPost, "/v1/customers", "sk_live_x", "name=x")
	require.Equal(t, http.StatusUnauthorized, status, "a live key is never accepted")

	status, v = do(http.MethodPost, "/v1/customers", key, "nmae=x")
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, "nmae", v["error"]["param"])
}
