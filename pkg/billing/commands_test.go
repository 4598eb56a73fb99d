package billing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/stripeapi"
	"github.com/levqor/levqor/pkg/stripemock"
)

func exampleCatalog(t *testing.T) *catalog.Catalog {
	t.Helper()
	c, err := catalog.Load("")
	require.NoError(t, err)
	return c
}

func TestCheckoutPlan(t *testing.T) {
	t.Parallel()
	cat := exampleCatalog(t)
	ok := func(items ...billing.CheckoutItem) billing.CheckoutParams {
		return billing.CheckoutParams{Items: items, SuccessURL: "https://app.example.com/done", CancelURL: "https://app.example.com/cancel"}
	}
	it := func(key string, q int64) billing.CheckoutItem { return billing.CheckoutItem{Key: key, Quantity: q} }

	t.Run("TierWithAddonsIsASubscription", func(t *testing.T) {
		p := ok(it("growth_monthly", 1), it("extra_storage", 2), it("priority_support", 1))
		plan, err := p.Plan(cat)
		require.NoError(t, err)
		require.Equal(t, stripe.CheckoutSessionModeSubscription, plan.Mode)
		require.Len(t, plan.Lines, 3)
		require.Equal(t, "price_levqor_growth_monthly", plan.Lines[0].PriceID)
		require.Equal(t, "price_levqor_extra_storage", plan.Lines[1].PriceID)
		require.EqualValues(t, 2, plan.Lines[1].Quantity)
	})
	t.Run("LegacyTierName", func(t *testing.T) {
		p := ok(it(" PRO_annual ", 1))
		p.Normalize()
		plan, err := p.Plan(cat)
		require.NoError(t, err)
		require.Equal(t, stripe.CheckoutSessionModeSubscription, plan.Mode)
		require.Equal(t, "price_levqor_growth_annual", plan.Lines[0].PriceID, "pro is the old name of growth")
	})
	t.Run("PackagesAreAPayment", func(t *testing.T) {
		p := ok(it("dfy_onboarding", 1), it("dfy_recovery_drill", 2))
		plan, err := p.Plan(cat)
		require.NoError(t, err)
		require.Equal(t, stripe.CheckoutSessionModePayment, plan.Mode)
		require.Equal(t, "dfy_onboarding:1,dfy_recovery_drill:2", plan.Products())
	})
	t.Run("LoopbackHTTPForDevelopment", func(t *testing.T) {
		p := ok(it("starter_monthly", 1))
		p.SuccessURL, p.CancelURL = "http://localhost:3000/done?session={CHECKOUT_SESSION_ID}", "http://127.0.0.1:3000/cancel"
		_, err := p.Plan(cat)
		require.NoError(t, err)
	})

	many := make([]billing.CheckoutItem, billing.CheckoutItemsMax+1)
	for i := range many {
		many[i] = it("extra_source", 1)
	}
	for name, tc := range map[string]struct {
		p     billing.CheckoutParams
		field string
		msg   string
	}{
		"NoItems":          {ok(), "items", "required"},
		"TooManyItems":     {ok(many...), "items", "at most 20"},
		"NoKey":            {ok(it("", 1)), "items[0].key", "required"},
		"UnknownKey":       {ok(it("growth_monthly", 1), it("gold_monthly", 1)), "items[1].key", "growth_monthly"},
		"TierWithoutTerm":  {ok(it("growth", 1)), "items[0].key", "growth_monthly or growth_annual"},
		"QuantityZero":     {ok(it("growth_monthly", 1), it("extra_storage", 0)), "items[1].quantity", "1 to 1000"},
		"QuantityTooLarge": {ok(it("dfy_onboarding", 1001)), "items[0].quantity", "1 to 1000"},
		"TierTwice":        {ok(it("growth_monthly", 2)), "items[0].quantity", "quantity must be 1"},
		"TwoTiers":         {ok(it("growth_monthly", 1), it("business_annual", 1)), "items[1].key", "one tier per checkout"},
		"Duplicate":        {ok(it("dfy_migration", 1), it("dfy_migration", 1)), "items[1].key", "already items[0]"},
		"Mixed":            {ok(it("growth_monthly", 1), it("dfy_onboarding", 1)), "items", "cannot be mixed"},
		"AddonsOnly":       {ok(it("extra_storage", 3)), "items", "with a tier"},
		"NoSuccessURL":     {billing.CheckoutParams{Items: []billing.CheckoutItem{it("growth_monthly", 1)}, CancelURL: "https://a.example/c"}, "success_url", "required"},
		"PlainHTTP":        {billing.CheckoutParams{Items: []billing.CheckoutItem{it("growth_monthly", 1)}, SuccessURL: "http://app.example.com/ok", CancelURL: "https://a.example/c"}, "success_url", "https"},
		"RelativeURL":      {billing.CheckoutParams{Items: []billing.CheckoutItem{it("growth_monthly", 1)}, SuccessURL: "https://a.example/ok", CancelURL: "/cancel"}, "cancel_url", "absolute"},
		"Credentials":      {billing.CheckoutParams{Items: []billing.CheckoutItem{it("growth_monthly", 1)}, SuccessURL: "https://u:p@a.example/ok", CancelURL: "https://a.example/c"}, "success_url", "password"},
		"OtherScheme":      {billing.CheckoutParams{Items: []billing.CheckoutItem{it("growth_monthly", 1)}, SuccessURL: "https://a.example/ok", CancelURL: "javascript://a.example/%0aalert(1)"}, "cancel_url", "https"},
		"LongURL":          {billing.CheckoutParams{Items: []billing.CheckoutItem{it("growth_monthly", 1)}, SuccessURL: "https://a.example/" + strings.Repeat("a", 2048), CancelURL: "https://a.example/c"}, "success_url", "longer"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tc.p.Plan(cat)
			var ce *command.Error
			require.ErrorAs(t, err, &ce)
			require.Equal(t, http.StatusUnprocessableEntity, ce.Status)
			require.Equal(t, tc.field, ce.Field)
			require.Contains(t, ce.Message, tc.msg)
		})
	}
}

// stripeRequest is one request that reached the Stripe API.
type stripeRequest struct {
	method, path, key string
	form              url.Values
}

// stripeProxy sits in front of stripe-mock, records every request and can
// misbehave: fault, when set, may answer a request itself (true) instead
// of passing it on.
type stripeProxy struct {
	mu    sync.Mutex
	reqs  []stripeRequest
	url   string
	fault func(w http.ResponseWriter, r *http.Request, n int) bool
}

func newStripeProxy(t *testing.T, target string, fault func(w http.ResponseWriter, r *http.Request, n int) bool) *stripeProxy {
	t.Helper()
	u, err := url.Parse(target)
	require.NoError(t, err)
	p := &stripeProxy{fault: fault}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		p.mu.Lock()
		p.reqs = append(p.reqs, stripeRequest{r.Method, r.URL.Path, r.Header.Get("Idempotency-Key"), form})
		n := len(p.reqs)
		p.mu.Unlock()
		if p.fault != nil && p.fault(w, r, n) {
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

func (p *stripeProxy) seen() []stripeRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]stripeRequest(nil), p.reqs...)
}

// commandHarness is the billing worker with a command runtime.
func commandHarness(t *testing.T, st *store.Store, stripeURL string) *harness {
	t.Helper()
	h := newHarness(t, st)
	h.w.Runtime = &command.Runtime{Store: st, Prefix: "levqor"}
	if stripeURL != "" {
		h.w.Stripe = stripeapi.New(stripeapi.Config{Key: stripemock.TestKey, BaseURL: stripeURL, Log: storetest.Logger(t)})
	}
	return h
}

// queue records a billing command as the API does and returns its message
// as billing-cmd would receive it.
func queue(t *testing.T, st *store.Store, action, accountID string, params any) *bus.Message {
	t.Helper()
	id, err := command.NewID(command.IDPrefix)
	require.NoError(t, err)
	raw, err := json.Marshal(params)
	require.NoError(t, err)
	env := command.Envelope{ID: id, Domain: billing.Domain, Action: action, AccountID: accountID, KeyID: "key_test", Params: raw, CreatedAt: time.Now()}
	payload, err := json.Marshal(env)
	require.NoError(t, err)
	_, _, err = st.CreateCommand(t.Context(), store.Command{ID: id, Scope: "operator", AccountID: accountID, Domain: billing.Domain, Action: action, RequestHash: "h", Payload: payload})
	require.NoError(t, err)
	return &bus.Message{
		Subject: "levqor.cmd.billing." + action, Header: nats.Header{bus.HeaderMsgID: {id}}, Data: payload,
		Stream: "COMMANDS", Consumer: billing.ConsumerCommands, StreamSeq: 1, Deliveries: 1,
	}
}

func commandOf(t *testing.T, st *store.Store, m *bus.Message) *store.Command {
	t.Helper()
	c, err := st.GetCommand(t.Context(), m.ID())
	require.NoError(t, err)
	return c
}

func checkout(items ...billing.CheckoutItem) billing.CheckoutParams {
	return billing.CheckoutParams{Items: items, SuccessURL: "https://app.example.com/billing/done", CancelURL: "https://app.example.com/billing"}
}

// TestCheckoutSessionsAsTheWebhookHandlerNeedsThem checks what reaches
// Stripe: the customer, the account reference and the metadata that
// checkout.session.completed and the subscription events are read with.
func TestCheckoutSessionsAsTheWebhookHandlerNeedsThem(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		proxy := newStripeProxy(t, stripemock.Start(t), nil)
		h := commandHarness(t, st, proxy.url)
		handle := h.w.Runtime.Handler(h.w.HandleCommand)
		h.account("acc_cmd", "cus_cmd")

		t.Run("Subscription", func(t *testing.T) {
			m := queue(t, st, billing.ActionCheckout, "acc_cmd", checkout(
				billing.CheckoutItem{Key: "growth_monthly", Quantity: 1}, billing.CheckoutItem{Key: "extra_storage", Quantity: 3}))
			require.NoError(t, handle(t.Context(), m))
			c := commandOf(t, st, m)
			require.Equal(t, store.CommandSucceeded, c.Status)
			require.Equal(t, http.StatusCreated, c.HTTPStatus)
			var res billing.CheckoutResult
			require.NoError(t, json.Unmarshal(c.Result, &res))
			require.True(t, strings.HasPrefix(res.ID, "cs_"), res.ID)
			require.NotEmpty(t, res.URL)
			require.Equal(t, "subscription", res.Mode)

			reqs := proxy.seen()
			last := reqs[len(reqs)-1]
			require.Equal(t, "POST /v1/checkout/sessions", last.method+" "+last.path)
			require.Equal(t, billing.CheckoutIdempotencyKey(m.ID()), last.key)
			f := last.form
			require.Equal(t, "subscription", f.Get("mode"))
			require.Equal(t, "cus_cmd", f.Get("customer"))
			require.Equal(t, "acc_cmd", f.Get("client_reference_id"))
			require.Equal(t, "acc_cmd", f.Get("metadata[levqor_account]"))
			require.Equal(t, "acc_cmd", f.Get("subscription_data[metadata][levqor_account]"))
			require.Equal(t, "price_levqor_growth_monthly", f.Get("line_items[0][price]"))
			require.Equal(t, "1", f.Get("line_items[0][quantity]"))
			require.Equal(t, "price_levqor_extra_storage", f.Get("line_items[1][price]"))
			require.Equal(t, "3", f.Get("line_items[1][quantity]"))
			require.Equal(t, "https://app.example.com/billing/done", f.Get("success_url"))
			require.Empty(t, f.Get("metadata[levqor_products]"))
		})

		t.Run("Payment", func(t *testing.T) {
			m := queue(t, st, billing.ActionCheckout, "acc_cmd", checkout(
				billing.CheckoutItem{Key: "dfy_migration", Quantity: 1}, billing.CheckoutItem{Key: "dfy_recovery_drill", Quantity: 2}))
			require.NoError(t, handle(t.Context(), m))
			c := commandOf(t, st, m)
			require.Equal(t, store.CommandSucceeded, c.Status, "%+v", c.Error)
			var res billing.CheckoutResult
			require.NoError(t, json.Unmarshal(c.Result, &res))
			require.Equal(t, "payment", res.Mode)
			reqs := proxy.seen()
			f := reqs[len(reqs)-1].form
			require.Equal(t, "payment", f.Get("mode"))
			require.Equal(t, "dfy_migration:1,dfy_recovery_drill:2", f.Get("metadata[levqor_products]"))
			require.Equal(t, "acc_cmd", f.Get("payment_intent_data[metadata][levqor_account]"))
			require.Empty(t, f.Get("subscription_data[metadata][levqor_account]"))
		})

		t.Run("Portal", func(t *testing.T) {
			m := queue(t, st, billing.ActionPortal, "acc_cmd", billing.PortalParams{ReturnURL: "https://app.example.com/account"})
			require.NoError(t, handle(t.Context(), m))
			c := commandOf(t, st, m)
			require.Equal(t, store.CommandSucceeded, c.Status, "%+v", c.Error)
			var res billing.PortalResult
			require.NoError(t, json.Unmarshal(c.Result, &res))
			require.NotEmpty(t, res.URL)
			reqs := proxy.seen()
			last := reqs[len(reqs)-1]
			require.Equal(t, "POST /v1/billing_portal/sessions", last.method+" "+last.path)
			require.Equal(t, "cus_cmd", last.form.Get("customer"))
			require.Equal(t, "https://app.example.com/account", last.form.Get("return_url"))
			require.Equal(t, billing.PortalIdempotencyKey(m.ID()), last.key)
		})

		t.Run("RedeliveryAfterCommitCallsStripeNoMore", func(t *testing.T) {
			m := queue(t, st, billing.ActionCheckout, "acc_cmd", checkout(billing.CheckoutItem{Key: "dfy_onboarding", Quantity: 1}))
			require.NoError(t, handle(t.Context(), m))
			before := len(proxy.seen())
			m.Deliveries = 2
			require.NoError(t, handle(t.Context(), m))
			require.Len(t, proxy.seen(), before)
		})
	})
}

// TestStripeFailuresNeverCreateTwoSessions: Stripe answers 500, then
// takes longer than the handler may wait, then works. Each failure leaves
// the command pending for the bus to retry, and every attempt carries the
// same idempotency key, so Stripe makes one session however many times
// the request reached it.
func TestStripeFailuresNeverCreateTwoSessions(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	proxy := newStripeProxy(t, stripemock.Start(t), func(w http.ResponseWriter, r *http.Request, n int) bool {
		switch n {
		case 1:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"error":{"type":"api_error","message":"An unknown error occurred"}}`))
			return true
		case 2:
			select { // a request Stripe never answers in time
			case <-r.Context().Done():
			case <-release:
			}
			return true
		}
		return false
	})
	h := commandHarness(t, st, proxy.url)
	h.account("acc_flaky", "cus_flaky")
	handle := h.w.Runtime.Handler(h.w.HandleCommand)
	m := queue(t, st, billing.ActionCheckout, "acc_flaky", checkout(billing.CheckoutItem{Key: "business_annual", Quantity: 1}))

	for attempt, what := range []string{"server error", "timeout"} {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		m.Deliveries = uint64(attempt + 1)
		err := handle(ctx, m)
		cancel()
		require.Error(t, err, what)
		require.False(t, bus.IsPermanent(err), "%s: transient, the bus retries: %v", what, err)
		var ce *command.Error
		require.False(t, errors.As(err, &ce), "%s must not fail the command", what)
		require.Equal(t, store.CommandRunning, commandOf(t, st, m).Status, "%s: the client keeps waiting", what)
	}
	m.Deliveries = 3
	require.NoError(t, handle(t.Context(), m))
	c := commandOf(t, st, m)
	require.Equal(t, store.CommandSucceeded, c.Status)
	require.Equal(t, http.StatusCreated, c.HTTPStatus)

	reqs := proxy.seen()
	require.Len(t, reqs, 3, "one request per attempt")
	for i, r := range reqs {
		require.Equal(t, "/v1/checkout/sessions", r.path)
		require.Equal(t, billing.CheckoutIdempotencyKey(m.ID()), r.key, "attempt %d", i+1)
	}
}

func TestCommandFailuresAreAnswered(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	base := stripemock.Start(t)
	setup := commandHarness(t, st, "")
	setup.account("acc_ok", "cus_ok")
	setup.account("acc_subscribed", "cus_subscribed")
	setup.must(subEvent(t, "customer.subscription.created", "evt_f1", "sub_f1", "cus_subscribed", "active", t0, item{"price_levqor_starter_monthly", 1}))
	growth := checkout(billing.CheckoutItem{Key: "growth_monthly", Quantity: 1})
	for name, tc := range map[string]struct {
		stripe    bool
		action    string
		accountID string
		params    any
		status    int
		code      string
		field     string
	}{
		"StripeNotConfigured":  {false, billing.ActionCheckout, "acc_ok", growth, 503, "stripe_not_configured", ""},
		"PortalNotConfigured":  {false, billing.ActionPortal, "acc_ok", billing.PortalParams{ReturnURL: "https://a.example/"}, 503, "stripe_not_configured", ""},
		"UnknownAccount":       {true, billing.ActionCheckout, "acc_gone", growth, 404, "not_found", "account_id"},
		"PortalUnknownAccount": {true, billing.ActionPortal, "acc_gone", billing.PortalParams{ReturnURL: "https://a.example/"}, 404, "not_found", "account_id"},
		"AlreadySubscribed":    {true, billing.ActionCheckout, "acc_subscribed", growth, 409, "already_subscribed", "items"},
		"UnknownKey":           {true, billing.ActionCheckout, "acc_ok", checkout(billing.CheckoutItem{Key: "platinum_monthly", Quantity: 1}), 422, "invalid_field", "items[0].key"},
		"BadReturnURL":         {true, billing.ActionPortal, "acc_ok", billing.PortalParams{ReturnURL: "http://evil.example/"}, 422, "invalid_field", "return_url"},
		"UnknownParam":         {true, billing.ActionPortal, "acc_ok", map[string]string{"return_url": "https://a.example/", "x": "y"}, 422, "invalid_params", ""},
		"UnknownAction":        {true, "refund", "acc_ok", map[string]string{}, 422, "unsupported_command", ""},
	} {
		t.Run(name, func(t *testing.T) {
			h := commandHarness(t, st, "")
			if tc.stripe {
				h.w.Stripe = stripeapi.New(stripeapi.Config{Key: stripemock.TestKey, BaseURL: base, Log: storetest.Logger(t)})
			}
			m := queue(t, st, tc.action, tc.accountID, tc.params)
			require.NoError(t, h.w.Runtime.Handler(h.w.HandleCommand)(t.Context(), m), "answered, so acknowledged")
			c := commandOf(t, st, m)
			require.Equal(t, store.CommandFailed, c.Status)
			require.Equal(t, tc.status, c.HTTPStatus)
			require.Equal(t, tc.code, c.Error.Code)
			require.Equal(t, tc.field, c.Error.Field)
			require.NotEmpty(t, c.Error.Message)
		})
	}
}

func TestReconcileTickWithoutStripeIsSkippedNotDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t))
	h.tick(billing.JobReconcile, t0) // fails the test if it returns an error
}
