package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/api"
	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/service"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/stripemock"
	"github.com/levqor/levqor/pkg/stripesim"
)

// devClient talks to a running dev mode as its operator.
type devClient struct {
	info service.DevInfo
}

func (c devClient) do(t testing.TB, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.info.IngestURL+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+c.info.AdminToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func (c devClient) webhook(t testing.TB, typ string, o stripesim.EventOptions) {
	t.Helper()
	b, err := stripesim.NewEvent(typ, o)
	require.NoError(t, err)
	res, err := (&stripesim.Sender{URL: c.info.WebhookURL, Secret: c.info.WebhookSecret}).Send(context.Background(), b)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.Status, string(res.Body))
}

func (c devClient) billing(t testing.TB, id string) api.AccountBilling {
	t.Helper()
	status, body := c.do(t, http.MethodGet, "/v1/accounts/"+id+"/billing", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var b api.AccountBilling
	require.NoError(t, json.Unmarshal(body, &b))
	return b
}

// TestBillingEndToEndInDevMode is the README's walkthrough in dev mode's
// wiring (embedded NATS, ingest, every worker, the relay, the scheduler)
// against stripe-mock: create an account, start a checkout, send the
// webhooks Stripe would send for a growth subscription, see the account
// become growth with its entitlements, then a failed payment makes it
// past_due.
func TestBillingEndToEndInDevMode(t *testing.T) {
	t.Parallel()
	stripeURL := stripemock.Start(t)
	for _, db := range []string{"SQLite", "Postgres"} {
		t.Run(db, func(t *testing.T) {
			vars := map[string]string{
				"LEVQOR_DATA_DIR":      t.TempDir(),
				"LEVQOR_HTTP_ADDR":     "127.0.0.1:0",
				"LEVQOR_DEV_NATS_ADDR": "127.0.0.1:0",
				"STRIPE_API_BASE":      stripeURL,
				// stripe-mock lists a fixture subscription that knows
				// nothing of this test's: a reconciliation falling due
				// during the test would cancel them.
				"LEVQOR_SCHEDULE": "billing.reconcile=off",
			}
			if db == "Postgres" {
				vars["LEVQOR_DATABASE_URL"] = storetest.PostgresURL(t)
			}
			cfg, err := config.FromEnv(func(k string) string { return vars[k] })
			require.NoError(t, err)
			log := logrus.New()
			log.SetOutput(io.Discard)
			ctx, cancel := context.WithCancel(context.Background())
			ready := make(chan service.DevInfo, 1)
			done := make(chan error, 1)
			go func() {
				done <- service.RunDev(ctx, cfg, log, io.Discard, service.DevOptions{Ready: func(i service.DevInfo) { ready <- i }})
			}()
			t.Cleanup(func() {
				cancel()
				select {
				case err := <-done:
					require.NoError(t, err)
				case <-time.After(20 * time.Second):
					t.Error("dev mode did not stop")
				}
			})
			var c devClient
			select {
			case c.info = <-ready:
			case err := <-done:
				t.Fatalf("dev mode exited: %v", err)
			case <-time.After(30 * time.Second):
				t.Fatal("dev mode did not start")
			}

			// 1. An account, with its Stripe customer.
			status, body := c.do(t, http.MethodPost, "/v1/accounts?wait=15s", map[string]string{"name": "Ada Backups Ltd", "contact_email": "ops@ada.example"})
			require.Equal(t, http.StatusCreated, status, string(body))
			var created struct{ Result store.Account }
			require.NoError(t, json.Unmarshal(body, &created))
			acc, cus := created.Result.ID, created.Result.StripeCustomerID
			require.True(t, strings.HasPrefix(cus, "cus_"), cus)

			// 2. A checkout for growth, monthly.
			status, body = c.do(t, http.MethodPost, "/v1/billing/checkout-sessions?wait=15s", map[string]any{
				"account_id": acc, "items": []map[string]any{{"key": "growth_monthly", "quantity": 1}},
				"success_url": "http://localhost:3000/billing/done", "cancel_url": "http://localhost:3000/billing",
			})
			require.Equal(t, http.StatusCreated, status, string(body))
			var co struct{ Result billing.CheckoutResult }
			require.NoError(t, json.Unmarshal(body, &co))
			require.True(t, strings.HasPrefix(co.Result.ID, "cs_"), co.Result.ID)
			require.Equal(t, "subscription", co.Result.Mode)
			require.NotEmpty(t, co.Result.URL)

			// 3. What Stripe sends once the customer has paid.
			t1 := time.Now().Add(-time.Minute).Truncate(time.Second)
			c.webhook(t, "checkout.session.completed", stripesim.EventOptions{Created: t1, Customer: cus, AccountRef: acc, Subscription: "sub_e2e", ObjectID: co.Result.ID})
			c.webhook(t, "customer.subscription.created", stripesim.EventOptions{Created: t1.Add(time.Second), Customer: cus, ObjectID: "sub_e2e", Price: "price_levqor_growth_monthly"})
			c.webhook(t, "invoice.paid", stripesim.EventOptions{Created: t1.Add(2 * time.Second), Customer: cus, ObjectID: "in_e2e_1", Subscription: "sub_e2e", Price: "price_levqor_growth_monthly"})

			var b api.AccountBilling
			require.Eventually(t, func() bool {
				b = c.billing(t, acc)
				return b.Tier != nil && len(b.Invoices) == 1
			}, 20*time.Second, 50*time.Millisecond)
			require.Equal(t, "growth", *b.Tier)
			require.Equal(t, "active", b.Status)
			var ent struct {
				StorageGB int            `json:"storage_gb"`
				Sources   int            `json:"sources"`
				SLA       string         `json:"sla"`
				Retention map[string]int `json:"retention"`
			}
			require.NoError(t, json.Unmarshal(b.Entitlements, &ent))
			require.Equal(t, 500, ent.StorageGB)
			require.Equal(t, 5, ent.Sources)
			require.Equal(t, "standard", ent.SLA)
			require.Equal(t, map[string]int{"keep_daily": 14, "keep_weekly": 8, "keep_monthly": 6}, ent.Retention)
			require.Equal(t, "paid", b.Invoices[0].Status)

			// The account itself says so too.
			status, body = c.do(t, http.MethodGet, "/v1/accounts/"+acc, nil)
			require.Equal(t, http.StatusOK, status)
			require.Contains(t, string(body), `"tier":"growth"`)

			// 4. The next payment fails.
			c.webhook(t, "invoice.payment_failed", stripesim.EventOptions{Created: t1.Add(3 * time.Second), Customer: cus, ObjectID: "in_e2e_2", Subscription: "sub_e2e", Price: "price_levqor_growth_monthly"})
			require.Eventually(t, func() bool {
				b = c.billing(t, acc)
				return b.Status == "past_due"
			}, 20*time.Second, 50*time.Millisecond)
			require.Equal(t, "growth", *b.Tier, "entitled until the grace period ends")
			require.NotNil(t, b.Dunning)
			require.Equal(t, "past_due", b.Dunning.State)
			require.Equal(t, t1.Add(3*time.Second+billing.GraceDefault).UTC(), b.Dunning.GraceUntil)
		})
	}
}
