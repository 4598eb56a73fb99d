package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/api"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/notify"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// webhookHarness is the harness with webhook endpoints on, the notify
// worker and the outbox relay running.
func webhookHarness(t *testing.T, st *store.Store) *harness {
	t.Helper()
	h := newHarness(t, st, options{noStripe: true, configure: func(c *config.Config) {
		c.WebhookKey = strings.Repeat("5e", 32)
		c.WebhookAllowNets = []string{"127.0.0.0/8"}
	}})
	h.runWorkers(t, "notify")
	h.runRelay(t)
	return h
}

// runRelay publishes the outbox's events until the test ends.
func (h *harness) runRelay(t *testing.T) {
	t.Helper()
	relay := h.env.Relay()
	relay.Interval = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func TestWebhookEndpointsFromCreationToASignedTest(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := webhookHarness(t, st)
		var mu sync.Mutex
		var secret string
		var got []http.Header
		recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			defer mu.Unlock()
			wh, err := standardwebhooks.NewWebhook(secret)
			if err == nil {
				err = wh.Verify(body, r.Header)
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
			got = append(got, r.Header.Clone())
			w.WriteHeader(http.StatusOK)
		}))
		t.Cleanup(recv.Close)

		r := h.do(t, http.MethodPost, "/v1/webhook-endpoints?wait=10s", h.keyA, map[string]any{
			"url": recv.URL + "/levqor", "description": "ops pager", "event_types": []string{"backup.run_failed", "backup.corrupt"},
		})
		require.Equal(t, http.StatusCreated, r.status, string(r.body))
		require.Equal(t, "no-store", r.header.Get("Cache-Control"))
		c := r.command(t)
		require.True(t, strings.HasPrefix(c.Secret, "whsec_"), "the secret is shown at creation")
		var ep store.WebhookEndpoint
		require.NoError(t, json.Unmarshal(c.Result, &ep))
		require.Equal(t, h.accA, ep.AccountID)
		require.Equal(t, []string{"backup.corrupt", "backup.run_failed"}, ep.EventTypes)
		require.True(t, ep.Enabled)
		mu.Lock()
		secret = c.Secret
		mu.Unlock()

		t.Run("TheSecretIsShownOnlyOnce", func(t *testing.T) {
			for _, path := range []string{"/v1/commands/" + c.CommandID, "/v1/webhook-endpoints/" + ep.ID, "/v1/webhook-endpoints"} {
				r := h.do(t, http.MethodGet, path, h.keyA, nil)
				require.Equal(t, http.StatusOK, r.status, path)
				require.NotContains(t, string(r.body), c.Secret, path)
				require.NotContains(t, string(r.body), `"secret"`, path)
			}
			require.NotContains(t, h.logs.String(), c.Secret, "never logged")
			var stored string
			require.NoError(t, st.DB().GetContext(t.Context(), &stored, st.DB().Rebind(`SELECT result FROM commands WHERE id = ?`), c.CommandID))
			require.NotContains(t, stored, c.Secret, "never stored")
		})

		t.Run("OtherAccountsSeeNothing", func(t *testing.T) {
			for _, req := range []struct{ method, path string }{
				{http.MethodGet, "/v1/webhook-endpoints/" + ep.ID},
				{http.MethodPatch, "/v1/webhook-endpoints/" + ep.ID},
				{http.MethodPost, "/v1/webhook-endpoints/" + ep.ID + "/rotate-secret"},
				{http.MethodPost, "/v1/webhook-endpoints/" + ep.ID + "/test"},
				{http.MethodGet, "/v1/webhook-endpoints/" + ep.ID + "/deliveries"},
			} {
				var body any
				if req.method == http.MethodPatch {
					body = map[string]any{"enabled": false}
				}
				r := h.do(t, req.method, req.path, h.keyB, body)
				require.Equal(t, http.StatusNotFound, r.status, req.path)
			}
			var list api.EndpointList
			h.do(t, http.MethodGet, "/v1/webhook-endpoints", h.keyB, nil).json(t, &list)
			require.Empty(t, list.Data)
			h.do(t, http.MethodGet, "/v1/webhook-endpoints?account_id="+h.accA, h.opKey, nil).json(t, &list)
			require.Len(t, list.Data, 1, "an operator sees it")
		})

		t.Run("ATestSendArrivesSignedAndIsLogged", func(t *testing.T) {
			r := h.do(t, http.MethodPost, "/v1/webhook-endpoints/"+ep.ID+"/test?wait=10s", h.keyA, nil)
			require.Equal(t, http.StatusAccepted, r.status, string(r.body))
			var res notify.TestResult
			require.NoError(t, json.Unmarshal(r.command(t).Result, &res))
			require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 }, 20*time.Second, 20*time.Millisecond)
			mu.Lock()
			require.Equal(t, res.NotificationID, got[0].Get("webhook-id"))
			mu.Unlock()
			var log api.DeliveryList
			require.Eventually(t, func() bool {
				h.do(t, http.MethodGet, "/v1/webhook-endpoints/"+ep.ID+"/deliveries", h.keyA, nil).json(t, &log)
				return len(log.Data) == 1
			}, 10*time.Second, 20*time.Millisecond)
			require.True(t, log.Data[0].OK)
			require.Equal(t, http.StatusOK, log.Data[0].StatusCode)
			require.Equal(t, notify.EventWebhookTest, log.Data[0].Event)
		})

		t.Run("RotationShowsANewSecretAndKeepsTheOldOneSigning", func(t *testing.T) {
			r := h.do(t, http.MethodPost, "/v1/webhook-endpoints/"+ep.ID+"/rotate-secret?wait=10s", h.keyA, nil)
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			c := r.command(t)
			require.True(t, strings.HasPrefix(c.Secret, "whsec_"))
			require.NotEqual(t, secret, c.Secret)
			var rotated store.WebhookEndpoint
			require.NoError(t, json.Unmarshal(c.Result, &rotated))
			require.Equal(t, 2, rotated.SecretGeneration)
			require.NotNil(t, rotated.PreviousExpiresAt)
			require.WithinDuration(t, time.Now().Add(notify.WebhookSecretOverlapDefault), *rotated.PreviousExpiresAt, time.Minute)

			// The receiver still holds the old secret: the next test
			// verifies because both secrets sign during the overlap.
			r = h.do(t, http.MethodPost, "/v1/webhook-endpoints/"+ep.ID+"/test", h.keyA, nil)
			require.Equal(t, http.StatusAccepted, r.status, string(r.body))
			if !assert.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 2 }, 20*time.Second, 20*time.Millisecond) {
				r := h.do(t, http.MethodGet, "/v1/webhook-endpoints/"+ep.ID+"/deliveries", h.keyA, nil)
				t.Fatalf("%s\n%s", r.body, h.logs.String())
			}
			mu.Lock()
			require.Len(t, strings.Fields(got[1].Get("webhook-signature")), 2)
			mu.Unlock()
		})

		t.Run("DisablingStopsTestsAndEnablingResumes", func(t *testing.T) {
			r := h.do(t, http.MethodPatch, "/v1/webhook-endpoints/"+ep.ID+"?wait=10s", h.keyA, map[string]any{"enabled": false})
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			r = h.do(t, http.MethodPost, "/v1/webhook-endpoints/"+ep.ID+"/test?wait=10s", h.keyA, nil)
			require.Equal(t, http.StatusConflict, r.status, string(r.body))
			require.Equal(t, "endpoint_disabled", r.command(t).Error.Code)
			r = h.do(t, http.MethodPatch, "/v1/webhook-endpoints/"+ep.ID+"?wait=10s", h.keyA, map[string]any{"enabled": true})
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			var back store.WebhookEndpoint
			require.NoError(t, json.Unmarshal(r.command(t).Result, &back))
			require.True(t, back.Enabled)
			require.Empty(t, back.DisabledReason)
		})
	})
}

func TestBadWebhookEndpointsAreRefusedNamingTheField(t *testing.T) {
	t.Parallel()
	h := webhookHarness(t, storetest.SQLite(t))
	for name, tc := range map[string]struct {
		key   string
		body  map[string]any
		field string
		want  string
	}{
		"PrivateAddress":    {h.keyA, map[string]any{"url": "https://10.0.0.5/hook"}, "url", "private address"},
		"MetadataService":   {h.keyA, map[string]any{"url": "http://169.254.169.254/latest/meta-data"}, "url", "link-local"},
		"PlainHTTP":         {h.keyA, map[string]any{"url": "http://hooks.example.com/levqor"}, "url", "must use https"},
		"NoURL":             {h.keyA, map[string]any{"description": "x"}, "url", "url is required"},
		"UnknownEvent":      {h.keyA, map[string]any{"url": "https://hooks.example.com/", "event_types": []string{"billing.dfy_purchased"}}, "event_types", `"billing.dfy_purchased" is not an event endpoints receive`},
		"LongDescription":   {h.keyA, map[string]any{"url": "https://hooks.example.com/", "description": strings.Repeat("x", 300)}, "description", "longer than 256"},
		"OperatorNoAccount": {h.opKey, map[string]any{"url": "https://hooks.example.com/"}, "account_id", "account_id is required"},
	} {
		t.Run(name, func(t *testing.T) {
			r := h.do(t, http.MethodPost, "/v1/webhook-endpoints", tc.key, tc.body)
			require.Equal(t, http.StatusUnprocessableEntity, r.status, string(r.body))
			e := r.errorOf(t)
			require.Equal(t, tc.field, e["field"])
			require.Contains(t, e["message"], tc.want)
		})
	}
	r := h.do(t, http.MethodGet, "/v1/webhook-endpoints/whe_nope", h.keyA, nil)
	require.Equal(t, http.StatusBadRequest, r.status)
	r = h.do(t, http.MethodPatch, "/v1/webhook-endpoints/"+notify.EndpointIDFor("cmd_x"), h.keyA, map[string]any{"enabled": true})
	require.Equal(t, http.StatusNotFound, r.status)
	var list api.EndpointList
	h.do(t, http.MethodGet, "/v1/webhook-endpoints", h.opKey, nil).json(t, &list)
	require.Empty(t, list.Data, "nothing was created")
}

func TestWebhookEndpointsNeedTheKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{noStripe: true})
	r := h.do(t, http.MethodPost, "/v1/webhook-endpoints", h.keyA, map[string]any{"url": "https://hooks.example.com/"})
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.Contains(t, r.errorOf(t)["message"], "LEVQOR_WEBHOOK_SECRET_KEY")
	r = h.do(t, http.MethodGet, "/v1/webhook-endpoints", "", nil)
	require.Equal(t, http.StatusUnauthorized, r.status, "authentication comes first")
}

func TestRotatingAgainWithTheSameKeyShowsTheSameSecret(t *testing.T) {
	t.Parallel()
	h := webhookHarness(t, storetest.SQLite(t))
	r := h.do(t, http.MethodPost, "/v1/webhook-endpoints?wait=10s", h.keyA, map[string]any{"url": "https://hooks.example.com/levqor"},
		"Idempotency-Key", "create-1")
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	first := r.command(t)
	again := h.do(t, http.MethodPost, "/v1/webhook-endpoints?wait=10s", h.keyA, map[string]any{"url": "https://hooks.example.com/levqor"},
		"Idempotency-Key", "create-1")
	require.Equal(t, first.CommandID, again.command(t).CommandID)
	require.Equal(t, first.Secret, again.command(t).Secret, "a retried creation shows the same secret")
	var ep store.WebhookEndpoint
	require.NoError(t, json.Unmarshal(first.Result, &ep))

	rotate := func() api.CommandView {
		r := h.do(t, http.MethodPost, "/v1/webhook-endpoints/"+ep.ID+"/rotate-secret?wait=10s", h.keyA, nil, "Idempotency-Key", "rotate-1")
		require.Equal(t, http.StatusOK, r.status, string(r.body))
		return r.command(t)
	}
	one := rotate()
	two := rotate() // the client did not get the first answer, and retries
	require.Equal(t, one.CommandID, two.CommandID)
	require.Equal(t, one.Secret, two.Secret, "the retry shows the secret the rotation made")
	require.NotEqual(t, first.Secret, one.Secret)
	got, err := h.st.GetWebhookEndpoint(t.Context(), ep.ID)
	require.NoError(t, err)
	require.Equal(t, 2, got.SecretGeneration, "rotated once")
}

func TestErasureAndDrillsAreTenantIsolated(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{noStripe: true})
	for _, req := range []struct{ method, path string }{
		{http.MethodGet, "/v1/accounts/" + h.accA + "/erasure"},
		{http.MethodPost, "/v1/accounts/" + h.accA + "/erasure"},
		{http.MethodDelete, "/v1/accounts/" + h.accA + "/erasure"},
	} {
		var body any
		if req.method == http.MethodPost {
			body = map[string]any{"confirm": "Account A"}
		}
		r := h.do(t, req.method, req.path, h.keyB, body)
		require.Equal(t, http.StatusNotFound, r.status, "%s %s: %s", req.method, req.path, r.body)
	}
	r := h.do(t, http.MethodPost, "/v1/accounts/"+h.accA+"/erasure", h.keyA, map[string]any{"confirm": "Account A", "immediately": true, "by_operator": true})
	require.Equal(t, http.StatusForbidden, r.status, "an account's key never skips the cooling-off, whatever the body says: %s", r.body)
	require.Equal(t, "immediately", r.errorOf(t)["field"])
	r = h.do(t, http.MethodPost, "/v1/accounts/"+h.accA+"/erasure", h.keyA, map[string]any{})
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	require.Equal(t, "confirm", r.errorOf(t)["field"])
}

// TestAnAddressThatKeepsFailingAuthenticationIsSlowed: after its budget
// of failed authentications, an address is answered 429 without its key
// being looked up, even a good one, until the budget refills; other
// clients are untouched (each address has its own).
func TestAnAddressThatKeepsFailingAuthenticationIsSlowed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{noStripe: true, configure: func(c *config.Config) { c.APIAuthFailures = 3 }})
	for i := range 3 {
		r := h.do(t, http.MethodGet, "/v1/accounts/"+h.accA, "lvq_guessed_"+strings.Repeat("x", i+20), nil)
		require.Equal(t, http.StatusUnauthorized, r.status, "guess %d", i)
	}
	r := h.do(t, http.MethodGet, "/v1/accounts/"+h.accA, "lvq_guessed_again", nil)
	require.Equal(t, http.StatusTooManyRequests, r.status)
	require.Equal(t, "1", r.header.Get("Retry-After"))
	require.Contains(t, r.errorOf(t)["message"], "too many failed authentications from this address")
	r = h.do(t, http.MethodGet, "/v1/accounts/"+h.accA, h.keyA, nil)
	require.Equal(t, http.StatusTooManyRequests, r.status, "no lookup at all from this address for now")
	require.Eventually(t, func() bool {
		return h.do(t, http.MethodGet, "/v1/accounts/"+h.accA, h.keyA, nil).status == http.StatusOK
	}, 5*time.Second, 100*time.Millisecond, "the budget refills: a good key works again")
}

// TestBehindATrustedProxyTheForwardedClientIsLimited: with the proxy in
// LEVQOR_TRUSTED_PROXIES, each client X-Forwarded-For names has its own
// budget of failed authentications; without it, the header is ignored
// and a client cannot escape its budget (or spend another's) by naming
// other addresses.
func TestBehindATrustedProxyTheForwardedClientIsLimited(t *testing.T) {
	t.Parallel()
	guess := func(h *harness, i int, forwarded string) int {
		return h.do(t, http.MethodGet, "/v1/accounts/"+h.accA, "lvq_guessed_"+strings.Repeat("x", i+20), nil, "X-Forwarded-For", forwarded).status
	}
	proxied := newHarness(t, storetest.SQLite(t), options{noStripe: true, configure: func(c *config.Config) {
		c.APIAuthFailures = 2
		c.TrustedProxies = []string{"127.0.0.0/8"}
	}})
	for i := range 2 {
		require.Equal(t, http.StatusUnauthorized, guess(proxied, i, "203.0.113.7"))
	}
	require.Equal(t, http.StatusTooManyRequests, guess(proxied, 3, "203.0.113.7"), "that client spent its budget")
	require.Equal(t, http.StatusTooManyRequests, guess(proxied, 4, "198.51.100.1, 203.0.113.7"), "what the client wrote further left is not believed")
	require.Equal(t, http.StatusUnauthorized, guess(proxied, 5, "203.0.113.8"), "another client behind the proxy has its own")

	direct := newHarness(t, storetest.SQLite(t), options{noStripe: true, configure: func(c *config.Config) { c.APIAuthFailures = 2 }})
	for i := range 2 {
		require.Equal(t, http.StatusUnauthorized, guess(direct, i, "203.0.113."+strconv.Itoa(i)))
	}
	require.Equal(t, http.StatusTooManyRequests, guess(direct, 3, "203.0.113.99"), "without a trusted proxy the header changes nothing")
}
