package accounts_test

import (
	"context"
	"encoding/json"
	"errors"
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

	"github.com/levqor/levqor/pkg/accounts"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/stripeapi"
	"github.com/levqor/levqor/pkg/stripemock"
)

// recordingProxy sits in front of stripe-mock and records the
// Idempotency-Key of every request.
type recordingProxy struct {
	mu   sync.Mutex
	keys []string
	url  string
}

func newProxy(t *testing.T, target string) *recordingProxy {
	t.Helper()
	u, err := url.Parse(target)
	require.NoError(t, err)
	p := &recordingProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.keys = append(p.keys, r.Method+" "+r.URL.Path+" "+r.Header.Get("Idempotency-Key"))
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

func (p *recordingProxy) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.keys...)
}

func newWorker(t *testing.T, st *store.Store, stripeURL string) *accounts.Worker {
	t.Helper()
	w := &accounts.Worker{Store: st, Runtime: &command.Runtime{Store: st, Prefix: "levqor"}}
	if stripeURL != "" {
		w.Stripe = stripeapi.New(stripeapi.Config{Key: stripemock.TestKey, BaseURL: stripeURL, Log: storetest.Logger(t)})
	}
	return w
}

// queue records a command as ingest does and returns its message as the
// accounts-cmd consumer would receive it.
func queue(t *testing.T, st *store.Store, action, accountID string, params any) *bus.Message {
	t.Helper()
	id, err := command.NewID(command.IDPrefix)
	require.NoError(t, err)
	raw, err := json.Marshal(params)
	require.NoError(t, err)
	env := command.Envelope{ID: id, Domain: accounts.Domain, Action: action, AccountID: accountID, KeyID: "key_test", Params: raw, CreatedAt: time.Now()}
	payload, err := json.Marshal(env)
	require.NoError(t, err)
	_, _, err = st.CreateCommand(t.Context(), store.Command{ID: id, Scope: "operator", AccountID: accountID, Domain: accounts.Domain, Action: action, RequestHash: "h", Payload: payload})
	require.NoError(t, err)
	return &bus.Message{
		Subject: "levqor.cmd.accounts." + action, Header: nats.Header{bus.HeaderMsgID: {id}}, Data: payload,
		Stream: "COMMANDS", Consumer: accounts.ConsumerCommands, StreamSeq: 1, Deliveries: 1,
	}
}

func commandOf(t *testing.T, st *store.Store, m *bus.Message) *store.Command {
	t.Helper()
	c, err := st.GetCommand(t.Context(), m.ID())
	require.NoError(t, err)
	return c
}

func TestCreateIsExactlyOnce(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		proxy := newProxy(t, stripemock.Start(t))
		w := newWorker(t, st, proxy.url)
		h := w.Runtime.Handler(w.Handle)
		m := queue(t, st, accounts.ActionCreate, "", accounts.CreateParams{Name: "Ada", ContactEmail: "ops@ada.example"})

		require.NoError(t, h(t.Context(), m))
		c := commandOf(t, st, m)
		require.Equal(t, store.CommandSucceeded, c.Status)
		require.Equal(t, http.StatusCreated, c.HTTPStatus)
		var a store.Account
		require.NoError(t, json.Unmarshal(c.Result, &a))
		require.Equal(t, accounts.AccountIDFor(m.ID()), a.ID)
		stored, err := st.GetAccount(t.Context(), a.ID)
		require.NoError(t, err)
		require.Equal(t, "Ada", stored.Name)
		require.NotEmpty(t, stored.StripeCustomerID)

		// Redelivered after the commit: acknowledged, nothing done twice,
		// not even a call to Stripe.
		m.Header.Set(bus.HeaderMsgID, m.ID())
		m.Deliveries = 2
		require.NoError(t, h(t.Context(), m))
		require.Len(t, proxy.seen(), 1)
		list, err := st.ListAccounts(t.Context(), store.ListAccountsParams{Limit: 10})
		require.NoError(t, err)
		require.Len(t, list, 1)
	})
}

func TestRetryBeforeCommitReusesTheStripeIdempotencyKey(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	proxy := newProxy(t, stripemock.Start(t))
	w := newWorker(t, st, proxy.url)
	m := queue(t, st, accounts.ActionCreate, "", accounts.CreateParams{Name: "Bo", ContactEmail: "bo@bo.example"})
	env, err := command.DecodeEnvelope(m.Data)
	require.NoError(t, err)
	// A worker that dies after Stripe answered, before committing, and the
	// one that gets the redelivery: both ask Stripe with the same key, so
	// Stripe answers the second with the first customer.
	_, err = w.Handle(t.Context(), env)
	require.NoError(t, err)
	_, err = w.Handle(t.Context(), env)
	require.NoError(t, err)
	seen := proxy.seen()
	require.Len(t, seen, 2)
	require.Equal(t, seen[0], seen[1])
	require.Contains(t, seen[0], "POST /v1/customers levqor-"+env.ID)
}

func TestFailuresAreRecordedWithTheirStatus(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	ctx := t.Context()
	for name, tc := range map[string]struct {
		stripe    bool
		action    string
		accountID string
		params    any
		status    int
		code      string
		field     string
	}{
		"InvalidEmail":        {true, accounts.ActionCreate, "", map[string]string{"name": "A", "contact_email": "a@"}, 422, "invalid_field", "contact_email"},
		"UnknownParam":        {true, accounts.ActionCreate, "", map[string]string{"name": "A", "contact_email": "a@a.example", "x": "y"}, 422, "invalid_params", ""},
		"UnknownAction":       {true, "delete", "", map[string]string{}, 422, "unsupported_command", ""},
		"UpdateMissing":       {true, accounts.ActionUpdate, "acc_" + strings.Repeat("a", 26), map[string]string{"name": "B"}, 404, "not_found", "id"},
		"StripeNotConfigured": {false, accounts.ActionCreate, "", map[string]string{"name": "A", "contact_email": "a@a.example"}, 503, "stripe_not_configured", ""},
	} {
		t.Run(name, func(t *testing.T) {
			url := ""
			if tc.stripe {
				url = stripemock.Start(t)
			}
			w := newWorker(t, st, url)
			m := queue(t, st, tc.action, tc.accountID, tc.params)
			require.NoError(t, w.Runtime.Handler(w.Handle)(ctx, m), "answered, so acknowledged")
			c := commandOf(t, st, m)
			require.Equal(t, store.CommandFailed, c.Status)
			require.Equal(t, tc.status, c.HTTPStatus)
			require.Equal(t, tc.code, c.Error.Code)
			require.Equal(t, tc.field, c.Error.Field)
		})
	}
}

func TestStripeOutageIsRetried(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	w := newWorker(t, st, "http://127.0.0.1:1")
	m := queue(t, st, accounts.ActionCreate, "", map[string]string{"name": "A", "contact_email": "a@a.example"})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err := w.Runtime.Handler(w.Handle)(ctx, m)
	require.Error(t, err)
	require.False(t, bus.IsPermanent(err), "an outage is transient: the bus retries")
	var ce *command.Error
	require.False(t, errors.As(err, &ce))
	c := commandOf(t, st, m)
	require.Equal(t, store.CommandRunning, c.Status, "still pending: the client keeps waiting")
}

func TestParamsValidation(t *testing.T) {
	t.Parallel()
	str := func(s string) *string { return &s }
	for name, tc := range map[string]struct {
		p     interface{ Validate() error }
		field string
	}{
		"CreateOK":          {&accounts.CreateParams{Name: "A", ContactEmail: "a@a.example"}, ""},
		"CreateNoName":      {&accounts.CreateParams{ContactEmail: "a@a.example"}, "name"},
		"CreateControl":     {&accounts.CreateParams{Name: "A\nB", ContactEmail: "a@a.example"}, "name"},
		"CreateNoEmail":     {&accounts.CreateParams{Name: "A"}, "contact_email"},
		"CreateNoDot":       {&accounts.CreateParams{Name: "A", ContactEmail: "a@localhost"}, "contact_email"},
		"CreateDisplayName": {&accounts.CreateParams{Name: "A", ContactEmail: "A <a@a.example>"}, "contact_email"},
		"CreateLongEmail":   {&accounts.CreateParams{Name: "A", ContactEmail: strings.Repeat("a", 250) + "@a.example"}, "contact_email"},
		"CreateLongName":    {&accounts.CreateParams{Name: strings.Repeat("é", 201), ContactEmail: "a@a.example"}, "name"},
		"CreateNameAtLimit": {&accounts.CreateParams{Name: strings.Repeat("é", 200), ContactEmail: "a@a.example"}, ""},
		"UpdateNothing":     {&accounts.UpdateParams{}, "name"},
		"UpdateEmailOnly":   {&accounts.UpdateParams{ContactEmail: str("b@b.example")}, ""},
		"UpdateBadEmail":    {&accounts.UpdateParams{ContactEmail: str("b")}, "contact_email"},
	} {
		t.Run(name, func(t *testing.T) {
			err := tc.p.Validate()
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			var ce *command.Error
			require.ErrorAs(t, err, &ce)
			require.Equal(t, http.StatusUnprocessableEntity, ce.Status)
			require.Equal(t, tc.field, ce.Field)
		})
	}
}
