package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/accounts"
	"github.com/levqor/levqor/pkg/api"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/ops"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
)

// TestAccountsThroughTheWorker is the happy path of every endpoint, on
// both databases: requests become commands, the accounts worker carries
// them out against stripe-mock, and the results are read back.
func TestAccountsThroughTheWorker(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st, options{})
		h.runWorker(t)
		var created store.Account

		t.Run("CreateWaitingForTheOutcome", func(t *testing.T) {
			r := h.do(t, http.MethodPost, "/v1/accounts?wait=15s", h.opKey, map[string]string{"name": "  Ada Backups Ltd ", "contact_email": "ops@ada.example"})
			require.Equal(t, http.StatusCreated, r.status, string(r.body))
			v := r.command(t)
			require.Equal(t, store.CommandSucceeded, v.Status)
			require.Equal(t, "accounts.create", v.Type)
			require.Equal(t, "/v1/commands/"+v.CommandID, r.header.Get("Location"))
			require.NoError(t, json.Unmarshal(v.Result, &created))
			require.Equal(t, accounts.AccountIDFor(v.CommandID), created.ID)
			require.Equal(t, "Ada Backups Ltd", created.Name, "trimmed")
			require.Equal(t, "ops@ada.example", created.ContactEmail)
			require.True(t, strings.HasPrefix(created.StripeCustomerID, "cus_"), "a Stripe customer was created")
			require.Nil(t, created.Tier, "no tier until billing sets one")
			require.Equal(t, "active", created.Status)
			require.JSONEq(t, `{}`, string(created.Entitlements))
		})

		t.Run("CreateWithoutWaitingThenPoll", func(t *testing.T) {
			r := h.do(t, http.MethodPost, "/v1/accounts", h.opKey, map[string]string{"name": "Bo", "contact_email": "bo@bo.example"})
			require.Equal(t, http.StatusAccepted, r.status, string(r.body))
			v := r.command(t)
			require.Equal(t, store.CommandQueued, v.Status)
			require.Equal(t, "/v1/commands/"+v.CommandID, r.header.Get("Location"))
			done := h.do(t, http.MethodGet, r.header.Get("Location")+"?wait=15s", h.opKey, nil)
			require.Equal(t, http.StatusCreated, done.status, "the command's own status, once it has an outcome")
			require.Equal(t, store.CommandSucceeded, done.command(t).Status)
			again := h.do(t, http.MethodGet, r.header.Get("Location"), h.opKey, nil)
			require.Equal(t, http.StatusOK, again.status, "without wait, reading a command is a plain 200")
			require.Equal(t, 201, again.command(t).HTTPStatus)
		})

		t.Run("GetAccount", func(t *testing.T) {
			r := h.do(t, http.MethodGet, "/v1/accounts/"+created.ID, h.opKey, nil)
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			var a store.Account
			r.json(t, &a)
			require.Equal(t, created.ID, a.ID)
			require.Contains(t, string(r.body), `"tier":null`)
			require.Contains(t, string(r.body), `"entitlements":{}`)
			require.Contains(t, string(r.body), `"status":"active"`)
		})

		t.Run("AccountKeyUpdatesItsOwnAccount", func(t *testing.T) {
			own, _ := h.key(t, created.ID)
			r := h.do(t, http.MethodPatch, "/v1/accounts/"+created.ID+"?wait=15s", own, map[string]string{"contact_email": "billing@ada.example"})
			require.Equal(t, http.StatusOK, r.status, string(r.body))
			v := r.command(t)
			require.Equal(t, created.ID, v.AccountID)
			var a store.Account
			require.NoError(t, json.Unmarshal(v.Result, &a))
			require.Equal(t, "billing@ada.example", a.ContactEmail)
			require.Equal(t, "Ada Backups Ltd", a.Name, "unchanged")
			got := h.do(t, http.MethodGet, "/v1/accounts/"+created.ID, own, nil)
			require.Equal(t, http.StatusOK, got.status)
			require.Contains(t, string(got.body), "billing@ada.example")
			cmd := h.do(t, http.MethodGet, "/v1/commands/"+v.CommandID, own, nil)
			require.Equal(t, http.StatusOK, cmd.status, "an account reads its own commands")
		})

		t.Run("ListPagesThroughEveryAccount", func(t *testing.T) {
			var ids []string
			path := "/v1/accounts?limit=2"
			for pages := 0; ; pages++ {
				require.Less(t, pages, 10)
				r := h.do(t, http.MethodGet, path, h.opKey, nil)
				require.Equal(t, http.StatusOK, r.status, string(r.body))
				var l api.AccountList
				r.json(t, &l)
				require.LessOrEqual(t, len(l.Data), 2)
				for _, a := range l.Data {
					ids = append(ids, a.ID)
				}
				if l.NextCursor == nil {
					break
				}
				path = "/v1/accounts?limit=2&cursor=" + *l.NextCursor
			}
			require.Len(t, ids, 4, "A, B and the two created here, each once")
			require.Equal(t, created.ID, ids[1], "newest first")
			require.ElementsMatch(t, []string{h.accA, h.accB}, ids[2:])
		})

		t.Run("NothingSecretInTheLogs", func(t *testing.T) {
			logs := h.logs.String()
			require.Contains(t, logs, "command succeeded", "the logs do describe the work")
			for _, secret := range []string{h.opKey, h.keyA, "ops@ada.example", "billing@ada.example", "Ada Backups"} {
				require.NotContains(t, logs, secret)
			}
		})
	})
}

// endpoint is one route with a request that is valid for an operator.
type endpoint struct {
	method, path string
	body         any
	operatorOnly bool
	// tenant is true for routes on one account's resource.
	tenant bool
}

// TestEveryEndpointRefusesWrongCallers checks, per endpoint, that no key
// is 401, a revoked key is 401, an account key on an operator route is 403,
// and another account's key gets 404 exactly as for something that does
// not exist. Nothing refused reaches JetStream.
func TestEveryEndpointRefusesWrongCallers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{noStripe: true})
	ctx := t.Context()
	cmdA, _, err := h.st.CreateCommand(ctx, store.Command{ID: mustID(t, "cmd_"), Scope: "account:" + h.accA, AccountID: h.accA,
		Domain: "accounts", Action: "update", RequestHash: "h", Payload: []byte("{}")})
	require.NoError(t, err)
	evt := "evt_1NqA2bC3dE4fG5hI"
	endpoints := []endpoint{
		{method: http.MethodPost, path: "/v1/accounts", body: map[string]string{"name": "X", "contact_email": "x@x.example"}, operatorOnly: true},
		{method: http.MethodGet, path: "/v1/accounts", operatorOnly: true},
		{method: http.MethodGet, path: "/v1/accounts/" + h.accA, tenant: true},
		{method: http.MethodPatch, path: "/v1/accounts/" + h.accA, body: map[string]string{"name": "Y"}, tenant: true},
		{method: http.MethodGet, path: "/v1/commands/" + cmdA.ID, tenant: true},
		{method: http.MethodGet, path: "/admin/stripe-events/" + evt, operatorOnly: true},
	}
	revoked, revokedID := h.key(t, h.accA)
	_, err = h.st.RevokeAPIKey(ctx, revokedID, time.Time{})
	require.NoError(t, err)
	before := h.commandsPublished(t)

	for _, e := range endpoints {
		t.Run(strings.ReplaceAll(e.method+e.path, "/", "_"), func(t *testing.T) {
			r := h.do(t, e.method, e.path, "", e.body)
			require.Equal(t, http.StatusUnauthorized, r.status, string(r.body))
			require.Equal(t, "unauthenticated", r.errorOf(t)["code"])
			require.NotEmpty(t, r.header.Get("WWW-Authenticate"))

			r = h.do(t, e.method, e.path, revoked, e.body)
			require.Equal(t, http.StatusUnauthorized, r.status, "a revoked key stops working at once")

			r = h.do(t, e.method, e.path, "lvq_"+strings.Repeat("a", 52), e.body)
			require.Equal(t, http.StatusUnauthorized, r.status, "an unknown key")

			if e.operatorOnly {
				r = h.do(t, e.method, e.path, h.keyA, e.body)
				require.Equal(t, http.StatusForbidden, r.status, string(r.body))
				require.Equal(t, "forbidden", r.errorOf(t)["code"])
			}
			if e.tenant {
				foreign := h.do(t, e.method, e.path, h.keyB, e.body)
				require.Equal(t, http.StatusNotFound, foreign.status, string(foreign.body))
				// The same question about an id that exists nowhere gets
				// the same answer: ids cannot be probed.
				missing := strings.Replace(strings.Replace(e.path, h.accA, mustID(t, "acc_"), 1), cmdA.ID, mustID(t, "cmd_"), 1)
				absent := h.do(t, e.method, missing, h.keyB, e.body)
				require.Equal(t, http.StatusNotFound, absent.status)
				fe, ae := foreign.errorOf(t), absent.errorOf(t)
				require.Equal(t, ae["code"], fe["code"])
				require.Equal(t, ae["field"], fe["field"])
				require.NotContains(t, string(foreign.body), "Account A", "nothing of the other account leaks")

				own := h.do(t, e.method, e.path, h.keyA, e.body)
				require.Less(t, own.status, 300, "its own account's key is admitted: %s", own.body)
			}
			r = h.do(t, e.method, e.path, h.opKey, e.body)
			if e.method == http.MethodGet && strings.HasPrefix(e.path, "/admin/") {
				require.Equal(t, http.StatusNotFound, r.status, "admitted; the event is simply not in the ledger")
			} else {
				require.Less(t, r.status, 300, "operators are admitted everywhere: %s", r.body)
			}
		})
	}
	// Only the admitted changes were published: the PATCH by A's own key
	// and the operator's POST and PATCH.
	require.Equal(t, before+3, h.commandsPublished(t))
}

func mustID(t *testing.T, prefix string) string {
	t.Helper()
	id, err := command.NewID(prefix)
	require.NoError(t, err)
	return id
}

// TestBadInputNamesTheField sends malformed and invalid requests to every
// endpoint that takes input: each is refused with 400, 413, 415 or 422 and
// an error naming the field, and nothing reaches JetStream.
func TestBadInputNamesTheField(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{noStripe: true})
	before := h.commandsPublished(t)
	big := `{"name":"` + strings.Repeat("x", api.MaxBodyBytesDefault) + `","contact_email":"a@b.example"}`
	for name, tc := range map[string]struct {
		method, path, body string
		headers            []string
		status             int
		code, field        string
	}{
		"CreateUnknownField":     {"POST", "/v1/accounts", `{"name":"A","contact_email":"a@a.example","tier":"gold"}`, nil, 400, "unknown_field", "tier"},
		"CreateWrongType":        {"POST", "/v1/accounts", `{"name":42,"contact_email":"a@a.example"}`, nil, 400, "invalid_type", "name"},
		"CreateMalformed":        {"POST", "/v1/accounts", `{"name":"A",`, nil, 400, "invalid_json", ""},
		"CreateNotAnObject":      {"POST", "/v1/accounts", `["A"]`, nil, 400, "invalid_json", ""},
		"CreateEmpty":            {"POST", "/v1/accounts", ``, nil, 400, "empty_body", ""},
		"CreateTrailingData":     {"POST", "/v1/accounts", `{"name":"A","contact_email":"a@a.example"} {}`, nil, 400, "invalid_json", ""},
		"CreateMissingName":      {"POST", "/v1/accounts", `{"contact_email":"a@a.example"}`, nil, 422, "invalid_field", "name"},
		"CreateBlankName":        {"POST", "/v1/accounts", `{"name":"   ","contact_email":"a@a.example"}`, nil, 422, "invalid_field", "name"},
		"CreateLongName":         {"POST", "/v1/accounts", `{"name":"` + strings.Repeat("n", 201) + `","contact_email":"a@a.example"}`, nil, 422, "invalid_field", "name"},
		"CreateBadEmail":         {"POST", "/v1/accounts", `{"name":"A","contact_email":"not-an-email"}`, nil, 422, "invalid_field", "contact_email"},
		"CreateEmailWithName":    {"POST", "/v1/accounts", `{"name":"A","contact_email":"Ann <a@a.example>"}`, nil, 422, "invalid_field", "contact_email"},
		"CreateTooLarge":         {"POST", "/v1/accounts", big, nil, 413, "payload_too_large", ""},
		"CreateNotJSON":          {"POST", "/v1/accounts", `name=A`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "unsupported_media_type", "Content-Type"},
		"CreateBadWait":          {"POST", "/v1/accounts?wait=forever", `{"name":"A","contact_email":"a@a.example"}`, nil, 400, "invalid_parameter", "wait"},
		"CreateWaitTooLong":      {"POST", "/v1/accounts?wait=31s", `{"name":"A","contact_email":"a@a.example"}`, nil, 400, "invalid_parameter", "wait"},
		"CreateUnknownQuery":     {"POST", "/v1/accounts?wiat=10s", `{"name":"A","contact_email":"a@a.example"}`, nil, 400, "unknown_parameter", "wiat"},
		"CreateLongIdemKey":      {"POST", "/v1/accounts", `{"name":"A","contact_email":"a@a.example"}`, []string{"Idempotency-Key", strings.Repeat("k", 256)}, 400, "invalid_header", "Idempotency-Key"},
		"CreateIdemKeyWithSpace": {"POST", "/v1/accounts", `{"name":"A","contact_email":"a@a.example"}`, []string{"Idempotency-Key", "a b"}, 400, "invalid_header", "Idempotency-Key"},
		"ListBadLimit":           {"GET", "/v1/accounts?limit=0", "", nil, 400, "invalid_parameter", "limit"},
		"ListLimitTooHigh":       {"GET", "/v1/accounts?limit=201", "", nil, 400, "invalid_parameter", "limit"},
		"ListBadCursor":          {"GET", "/v1/accounts?cursor=bm9wZQ", "", nil, 400, "invalid_parameter", "cursor"},
		"GetBadID":               {"GET", "/v1/accounts/nope", "", nil, 400, "invalid_id", "id"},
		"UpdateNothing":          {"PATCH", "/v1/accounts/" + h.accA, `{}`, nil, 422, "invalid_field", "name"},
		"UpdateNullName":         {"PATCH", "/v1/accounts/" + h.accA, `{"name":""}`, nil, 422, "invalid_field", "name"},
		"UpdateBadEmail":         {"PATCH", "/v1/accounts/" + h.accA, `{"contact_email":"a@b"}`, nil, 422, "invalid_field", "contact_email"},
		"UpdateUnknownField":     {"PATCH", "/v1/accounts/" + h.accA, `{"status":"closed"}`, nil, 400, "unknown_field", "status"},
		"CommandBadID":           {"GET", "/v1/commands/cmd_nope", "", nil, 400, "invalid_id", "id"},
		"CommandBadWait":         {"GET", "/v1/commands/" + mustID(t, "cmd_") + "?wait=-1s", "", nil, 400, "invalid_parameter", "wait"},
		"AdminBadEventID":        {"GET", "/admin/stripe-events/evt-x", "", nil, 400, "invalid_id", "id"},
	} {
		t.Run(name, func(t *testing.T) {
			var body any
			if tc.body != "" || tc.method != http.MethodGet {
				body = tc.body
			}
			r := h.do(t, tc.method, tc.path, h.opKey, body, tc.headers...)
			require.Equal(t, tc.status, r.status, string(r.body))
			e := r.errorOf(t)
			require.Equal(t, tc.code, e["code"], string(r.body))
			require.Equal(t, tc.field, e["field"], string(r.body))
		})
	}
	require.Equal(t, before, h.commandsPublished(t), "nothing refused was published")
}

// TestIdempotencyKey: the same key and body from the same caller is the
// same command, published and carried out once; another body is 409;
// another account's identical key is its own command.
func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{})
	h.runWorker(t)
	body := map[string]string{"name": "Idem Ltd", "contact_email": "idem@idem.example"}
	first := h.do(t, http.MethodPost, "/v1/accounts", h.opKey, body, "Idempotency-Key", "create-idem-1")
	require.Equal(t, http.StatusAccepted, first.status, string(first.body))
	require.Empty(t, first.header.Get("Idempotent-Replayed"))
	id := first.command(t).CommandID

	// Same body with other spacing and order: the same request.
	second := h.do(t, http.MethodPost, "/v1/accounts?wait=15s", h.opKey, `{"contact_email":"idem@idem.example",  "name":"Idem Ltd"}`, "Idempotency-Key", "create-idem-1")
	require.Equal(t, http.StatusCreated, second.status, string(second.body))
	require.Equal(t, id, second.command(t).CommandID, "the same command")
	require.Equal(t, "true", second.header.Get("Idempotent-Replayed"))

	third := h.do(t, http.MethodPost, "/v1/accounts", h.opKey, body, "Idempotency-Key", "create-idem-1")
	require.Equal(t, http.StatusAccepted, third.status)
	v := third.command(t)
	require.Equal(t, id, v.CommandID)
	require.Equal(t, store.CommandSucceeded, v.Status, "the replay reports what the command became")

	conflict := h.do(t, http.MethodPost, "/v1/accounts", h.opKey, map[string]string{"name": "Other", "contact_email": "idem@idem.example"}, "Idempotency-Key", "create-idem-1")
	require.Equal(t, http.StatusConflict, conflict.status, string(conflict.body))
	e := conflict.errorOf(t)
	require.Equal(t, "idempotency_key_reused", e["code"])
	require.Equal(t, "Idempotency-Key", e["field"])

	list := h.do(t, http.MethodGet, "/v1/accounts", h.opKey, nil)
	require.Equal(t, 1, strings.Count(string(list.body), "Idem Ltd"), "one account, however many requests")
	require.EqualValues(t, 1, h.commandsPublished(t), "JetStream holds the command once")

	// The same key used by two accounts: two commands.
	a := h.do(t, http.MethodPatch, "/v1/accounts/"+h.accA, h.keyA, map[string]string{"name": "A2"}, "Idempotency-Key", "rename")
	b := h.do(t, http.MethodPatch, "/v1/accounts/"+h.accB, h.keyB, map[string]string{"name": "A2"}, "Idempotency-Key", "rename")
	require.Equal(t, http.StatusAccepted, a.status, string(a.body))
	require.Equal(t, http.StatusAccepted, b.status, string(b.body))
	require.NotEqual(t, a.command(t).CommandID, b.command(t).CommandID)
	require.Empty(t, b.header.Get("Idempotent-Replayed"))
}

// TestRateLimitPerKey: a key that spends its burst gets 429 with
// Retry-After; another key is not affected.
func TestRateLimitPerKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{noStripe: true, rate: 0.5, burst: 3})
	for i := range 3 {
		r := h.do(t, http.MethodGet, "/v1/accounts/"+h.accA, h.keyA, nil)
		require.Equal(t, http.StatusOK, r.status, "request %d within the burst", i)
	}
	r := h.do(t, http.MethodGet, "/v1/accounts/"+h.accA, h.keyA, nil)
	require.Equal(t, http.StatusTooManyRequests, r.status)
	require.Equal(t, "rate_limited", r.errorOf(t)["code"])
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, secs, 1)
	require.LessOrEqual(t, secs, 2, "one token comes back every 2s")

	other := h.do(t, http.MethodGet, "/v1/accounts/"+h.accB, h.keyB, nil)
	require.Equal(t, http.StatusOK, other.status, "limits are per key")
	time.Sleep(time.Duration(secs) * time.Second)
	r = h.do(t, http.MethodGet, "/v1/accounts/"+h.accA, h.keyA, nil)
	require.Equal(t, http.StatusOK, r.status, "after Retry-After the key works again")
}

// TestWaitAnswers202AtTheDeadline: with no worker running, a waiting
// request is answered when its wait ends, with the command still queued.
func TestWaitAnswers202AtTheDeadline(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{noStripe: true})
	start := time.Now()
	r := h.do(t, http.MethodPost, "/v1/accounts?wait=1500ms", h.opKey, map[string]string{"name": "Late", "contact_email": "late@late.example"})
	took := time.Since(start)
	require.Equal(t, http.StatusAccepted, r.status, string(r.body))
	require.Equal(t, store.CommandQueued, r.command(t).Status)
	require.GreaterOrEqual(t, took, 1500*time.Millisecond, "held for the wait")
	require.Less(t, took, 5*time.Second)

	// A worker started later finishes it; a waiting reader is woken by
	// the notification, well before its deadline.
	loc := r.header.Get("Location")
	done := make(chan response, 1)
	go func() { done <- h.do(t, http.MethodGet, loc+"?wait=25s", h.opKey, nil) }()
	time.Sleep(200 * time.Millisecond)
	start = time.Now()
	h.runWorker(t)
	got := <-done
	require.Less(t, time.Since(start), 10*time.Second, "woken by the outcome, not the deadline")
	require.Equal(t, http.StatusServiceUnavailable, got.status, "no Stripe configured: the command fails")
	v := got.command(t)
	require.Equal(t, store.CommandFailed, v.Status)
	require.Equal(t, "stripe_not_configured", v.Error.Code)
	require.Contains(t, v.Error.Message, "STRIPE_API_BASE")
	require.Zero(t, h.nats.StreamMsgs(t, bus.DLQ), "a failure with an answer is not a dead letter")
}

// TestPublishFailureAnswers503AndTheRetryRepublishes: with JetStream down
// the request is refused with 503 and the command marked failed; the
// client's retry with the same Idempotency-Key publishes the same command,
// which is then carried out once.
func TestPublishFailureAnswers503AndTheRetryRepublishes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{})
	h.runWorker(t)
	body := map[string]string{"name": "Outage Ltd", "contact_email": "o@outage.example"}
	h.nats.Server.Stop()
	require.Eventually(t, func() bool { return !h.nats.NC.IsConnected() }, 5*time.Second, 10*time.Millisecond)

	r := h.do(t, http.MethodPost, "/v1/accounts", h.opKey, body, "Idempotency-Key", "outage-1")
	require.Equal(t, http.StatusServiceUnavailable, r.status, string(r.body))
	require.Equal(t, "unavailable", r.errorOf(t)["code"])
	require.NotEmpty(t, r.header.Get("Retry-After"))
	loc := r.header.Get("Location")
	require.NotEmpty(t, loc)
	id := strings.TrimPrefix(loc, "/v1/commands/")
	c, err := h.st.GetCommand(t.Context(), id)
	require.NoError(t, err)
	require.Equal(t, store.CommandFailed, c.Status, "never left queued with nothing published")
	require.Equal(t, store.CommandErrorPublishFailed, c.Error.Code)

	require.NoError(t, h.nats.Server.Restart())
	var retry response
	require.Eventually(t, func() bool {
		retry = h.do(t, http.MethodPost, "/v1/accounts?wait=15s", h.opKey, body, "Idempotency-Key", "outage-1")
		return retry.status != http.StatusServiceUnavailable
	}, 20*time.Second, 200*time.Millisecond)
	require.Equal(t, http.StatusCreated, retry.status, string(retry.body))
	v := retry.command(t)
	require.Equal(t, id, v.CommandID, "the retry republished the same command")
	require.Equal(t, store.CommandSucceeded, v.Status)
}

// TestWorkerRefusalIsRecordedNotDeadLettered: a command whose parameters
// the worker refuses (here published past the API's validation) fails with
// 422 naming the field, and its message is acknowledged.
func TestWorkerRefusalIsRecordedNotDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{})
	h.runWorker(t)
	id := publishCommand(t, h, `{"name":"X","contact_email":"nope"}`)
	r := h.do(t, http.MethodGet, "/v1/commands/"+id+"?wait=15s", h.opKey, nil)
	require.Equal(t, http.StatusUnprocessableEntity, r.status, string(r.body))
	v := r.command(t)
	require.Equal(t, store.CommandFailed, v.Status)
	require.Equal(t, "contact_email", v.Error.Field)
	require.Zero(t, h.nats.StreamMsgs(t, bus.DLQ))
	require.Eventually(t, func() bool {
		states, err := h.st.ConsumerStates(t.Context(), id)
		return err == nil && len(states) == 1 && states[0].State == store.ConsumerStateProcessed
	}, 5*time.Second, 20*time.Millisecond, "acknowledged through the inbox")
}

// TestDeadLetteredCommandIsMarkedFailed: when Stripe cannot be reached the
// command is retried, then dead-lettered, and its client learns it failed
// (503) instead of waiting forever.
func TestDeadLetteredCommandIsMarkedFailed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{stripeURL: "http://127.0.0.1:1", maxDel: 1})
	h.runWorker(t)
	id := publishCommand(t, h, `{"name":"X","contact_email":"x@x.example"}`)
	r := h.do(t, http.MethodGet, "/v1/commands/"+id+"?wait=30s", h.opKey, nil)
	require.Equal(t, http.StatusServiceUnavailable, r.status, string(r.body))
	v := r.command(t)
	require.Equal(t, store.CommandFailed, v.Status)
	require.Equal(t, store.CommandErrorDeadLettered, v.Error.Code)
	require.Equal(t, command.DeadLetterMessage, v.Error.Message, "no internal detail leaks to the client")
	require.EqualValues(t, 1, h.nats.StreamMsgs(t, bus.DLQ), "operators have it in the DLQ")
	_, err := h.st.GetAccount(t.Context(), accounts.AccountIDFor(id))
	require.ErrorIs(t, err, store.ErrNotFound)
}

// publishCommand records and publishes an accounts.create command with
// params as is, the way ingest does after validating.
func publishCommand(t *testing.T, h *harness, params string) string {
	t.Helper()
	id := mustID(t, "cmd_")
	env := command.Envelope{ID: id, Domain: "accounts", Action: "create", KeyID: "test", Params: []byte(params), CreatedAt: time.Now().UTC()}
	payload, err := json.Marshal(env)
	require.NoError(t, err)
	_, _, err = h.st.CreateCommand(t.Context(), store.Command{ID: id, Scope: "operator", Domain: "accounts", Action: "create", RequestHash: "h", Payload: payload})
	require.NoError(t, err)
	pub := bus.NewPublisher(h.nats.JS, h.nats.Topo)
	hdr := nats.Header{}
	hdr.Set(bus.HeaderCorrelationID, "corr-"+id)
	_, err = pub.Publish(context.Background(), h.nats.Topo.Subject(bus.Commands, "accounts.create"), id, hdr, payload)
	require.NoError(t, err)
	return id
}

// TestOneErrorShapeAndSecurityHeaders: unknown paths and methods answer in
// the error shape too, and every response carries the security headers.
func TestOneErrorShapeAndSecurityHeaders(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{noStripe: true})
	for name, tc := range map[string]struct {
		method, path string
		status       int
		allow        string
	}{
		"UnknownPath":     {http.MethodGet, "/v1/nothing", 404, ""},
		"WrongMethod":     {http.MethodDelete, "/v1/accounts/" + h.accA, 405, "GET, PATCH"},
		"WrongMethodList": {http.MethodPut, "/v1/accounts", 405, "GET, POST"},
	} {
		t.Run(name, func(t *testing.T) {
			r := h.do(t, tc.method, tc.path, h.opKey, nil)
			require.Equal(t, tc.status, r.status, string(r.body))
			r.errorOf(t)
			require.Equal(t, tc.allow, r.header.Get("Allow"))
		})
	}
	r := h.do(t, http.MethodGet, "/v1/accounts/"+h.accA, h.keyA, nil)
	for header, want := range map[string]string{
		"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Cache-Control": "no-store",
		"Content-Type": "application/json",
	} {
		require.Equal(t, want, r.header.Get(header), header)
	}
	require.NotEmpty(t, r.header.Get("Levqor-Correlation-Id"))
	require.NotEmpty(t, r.header.Get("Content-Security-Policy"))
}

func TestOperatorCommandsAreAudited(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	h := newHarness(t, st, options{})
	r := h.do(t, http.MethodPost, "/v1/accounts", h.opKey, map[string]string{"name": "Audited Ltd", "contact_email": "ops@audited.example"})
	require.Equal(t, http.StatusAccepted, r.status, string(r.body))
	opCmd := r.command(t).CommandID

	acc := h.account(t, "Own Co")
	own, _ := h.key(t, acc)
	r = h.do(t, http.MethodPatch, "/v1/accounts/"+acc, own, map[string]string{"contact_email": "new@own.example"})
	require.Equal(t, http.StatusAccepted, r.status, string(r.body))

	trail, err := st.ListAudit(t.Context(), store.ListAuditParams{Limit: 10})
	require.NoError(t, err)
	require.Len(t, trail, 1, "the operator's command is in the trail, the customer's own change is not")
	require.Equal(t, ops.ActionCommandPrefix+"accounts.create", trail[0].Action)
	require.Equal(t, store.AuditOutcomeAccepted, trail[0].Outcome)
	require.True(t, strings.HasPrefix(trail[0].Actor, "key:"), "the actor is the operator key's id: %s", trail[0].Actor)
	require.Contains(t, string(trail[0].Params), opCmd, "the entry names the command, whose outcome it has")
}
