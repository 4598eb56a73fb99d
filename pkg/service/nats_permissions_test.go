package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/housekeeping"
	"github.com/levqor/levqor/pkg/service"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/stripemock"
	"github.com/levqor/levqor/pkg/stripesim"
)

// violations keeps the NATS server's log lines about refused clients:
// permission violations and failed authentication.
type violations struct {
	mu    sync.Mutex
	lines []string
}

func (v *violations) Noticef(string, ...any) {}
func (v *violations) Warnf(string, ...any)   {}
func (v *violations) Fatalf(f string, a ...any) {
	v.Errorf(f, a...)
}
func (v *violations) Debugf(string, ...any) {}
func (v *violations) Tracef(string, ...any) {}
func (v *violations) Errorf(f string, a ...any) {
	line := fmt.Sprintf(f, a...)
	if strings.Contains(line, "Violation") || strings.Contains(line, "authentication error") {
		v.mu.Lock()
		v.lines = append(v.lines, line)
		v.mu.Unlock()
	}
}

func (v *violations) all() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.lines...)
}

// natsPasswords are the deploy configuration's users' passwords.
var natsPasswords = map[string]string{
	"LEVQOR_NATS_INGEST_PASSWORD":    "ingest-pw-test",
	"LEVQOR_NATS_WORKERS_PASSWORD":   "workers-pw-test",
	"LEVQOR_NATS_SCHEDULER_PASSWORD": "scheduler-pw-test",
	"LEVQOR_NATS_OPERATOR_PASSWORD":  "operator-pw-test",
}

// TestServicesRunWithinTheirNATSPermissions runs ingest, the workers and
// the scheduler as production runs them, each with its own user on a NATS
// server configured by deploy/nats/levqor.conf, and does through them
// what users and operators do: a command answered with ?wait, a Stripe
// webhook applied, a ticket, the operators' status, pause and resume, the
// DLQ, a tick published by hand, the scheduler's ticks. The server refuses
// nothing: the permissions are enough for every path taken.
func TestServicesRunWithinTheirNATSPermissions(t *testing.T) {
	for k, v := range natsPasswords {
		t.Setenv(k, v)
	}
	opts, err := server.ProcessConfigFile("../../deploy/nats/levqor.conf")
	require.NoError(t, err)
	opts.Host, opts.Port, opts.HTTPPort, opts.StoreDir, opts.NoSigs = "127.0.0.1", -1, 0, t.TempDir(), true
	ns, err := server.NewServer(opts)
	require.NoError(t, err)
	refused := &violations{}
	ns.SetLoggerV2(refused, false, false, false)
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	require.True(t, ns.ReadyForConnections(10*time.Second))

	dbURL := storetest.PostgresURL(t)
	stripeURL := stripemock.Start(t)
	httpAddr := freeAddr(t)
	const webhookSecret = "whsec_permissions_test"
	base := map[string]string{
		"LEVQOR_NATS_URL":       ns.ClientURL(),
		"LEVQOR_DATABASE_URL":   dbURL,
		"LEVQOR_BUS_KEY":        strings.Repeat("ab", 32),
		"LEVQOR_MASTER_KEYS":    strings.Repeat("cd", 32),
		"LEVQOR_ADMIN_ADDR":     "127.0.0.1:0",
		"LEVQOR_LOG_LEVEL":      "warn",
		"STRIPE_API_BASE":       stripeURL,
		"STRIPE_API_KEY":        "sk_test_permissions",
		"LEVQOR_BLOB_DIR":       t.TempDir(),
		"LEVQOR_MAIL_DIR":       t.TempDir(),
		"LEVQOR_SCHEDULE":       "housekeeping.watch=*/2 * * * * *;billing.reconcile=off",
		"STRIPE_WEBHOOK_SECRET": webhookSecret,
		"LEVQOR_HTTP_ADDR":      httpAddr,
	}
	as := func(user, password string, extra ...string) config.Config {
		vars := map[string]string{"LEVQOR_NATS_USER": user, "LEVQOR_NATS_PASSWORD": password}
		for k, v := range base {
			vars[k] = v
		}
		for i := 0; i+1 < len(extra); i += 2 {
			vars[extra[i]] = extra[i+1]
		}
		cfg, err := config.FromEnv(func(k string) string { return vars[k] })
		require.NoError(t, err)
		return cfg
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := func(name string, fn func(context.Context, config.Config, logrus.FieldLogger) error, cfg config.Config) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx, cfg, log); err != nil && ctx.Err() == nil {
				t.Errorf("%s stopped: %v", name, err)
			}
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	// Ingest migrates the database first; the workers would too, but two
	// first migrations at once only wait on each other's lock.
	run("ingest", service.RunIngest, as("levqor-ingest", natsPasswords["LEVQOR_NATS_INGEST_PASSWORD"],
		"LEVQOR_NATS_OPERATOR_USER", "levqor-operator", "LEVQOR_NATS_OPERATOR_PASSWORD", natsPasswords["LEVQOR_NATS_OPERATOR_PASSWORD"]))
	run("workers", service.RunWorkers, as("levqor-workers", natsPasswords["LEVQOR_NATS_WORKERS_PASSWORD"]))
	run("scheduler", service.RunScheduler, as("levqor-scheduler", natsPasswords["LEVQOR_NATS_SCHEDULER_PASSWORD"]))

	ingestURL := "http://" + httpAddr
	require.Eventually(t, func() bool {
		resp, err := http.Get(ingestURL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "ingest ready")

	st, err := store.Open(ctx, dbURL, log)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	key, err := auth.GenerateKey()
	require.NoError(t, err)
	require.NoError(t, st.CreateAPIKey(ctx, store.APIKey{ID: key.ID, Hash: key.Hash, Prefix: key.Prefix, Name: "ops", Operator: true}))
	call := func(method, path string, body any) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, err := json.Marshal(body)
			require.NoError(t, err)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, ingestURL+path, rd)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key.Secret)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	// The workers' consumers come up; an operator sees them (ingest's
	// operator connection).
	require.Eventually(t, func() bool {
		code, body := call(http.MethodGet, "/admin/consumers", nil)
		return code == http.StatusOK && strings.Contains(string(body), `"accounts-cmd"`) && strings.Contains(string(body), `"support-cmd"`)
	}, 30*time.Second, 100*time.Millisecond, "the workers' consumers are listed")

	// A command, answered (?wait) through the workers' notice to ingest.
	code, body := call(http.MethodPost, "/v1/accounts?wait=20s", map[string]string{"name": "Ada Backups Ltd", "contact_email": "ops@ada.example"})
	require.Equal(t, http.StatusCreated, code, string(body))
	var created struct {
		Result struct {
			ID               string `json:"id"`
			StripeCustomerID string `json:"stripe_customer_id"`
		} `json:"result"`
	}
	require.NoError(t, json.Unmarshal(body, &created))
	require.NotEmpty(t, created.Result.ID)

	code, body = call(http.MethodPost, "/v1/tickets?wait=20s", map[string]string{"account_id": created.Result.ID, "subject": "Restore help", "body": "Where is last night's snapshot?"})
	require.Equal(t, http.StatusCreated, code, string(body))

	// A signed Stripe webhook, applied by billing.
	ev, err := stripesim.NewEvent("customer.subscription.created", stripesim.EventOptions{Customer: created.Result.StripeCustomerID})
	require.NoError(t, err)
	res, err := (&stripesim.Sender{URL: ingestURL + "/webhooks/stripe", Secret: webhookSecret}).Send(ctx, ev)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.Status, string(res.Body))
	require.Eventually(t, func() bool {
		code, body := call(http.MethodGet, "/admin/stripe-events/"+res.EventID, nil)
		return code == http.StatusOK && strings.Contains(string(body), `"processed"`)
	}, 20*time.Second, 100*time.Millisecond, "the Stripe event is applied")

	// The operators' tools, through ingest's operator connection.
	code, body = call(http.MethodPost, "/admin/consumers/billing-stripe/pause", map[string]string{"reason": "permissions test"})
	require.Equal(t, http.StatusOK, code, string(body))
	code, body = call(http.MethodPost, "/admin/consumers/billing-stripe/resume", map[string]string{})
	require.Equal(t, http.StatusOK, code, string(body))
	code, body = call(http.MethodGet, "/admin/dlq", nil)
	require.Equal(t, http.StatusOK, code, string(body))
	code, body = call(http.MethodGet, "/admin/stuck", nil)
	require.Equal(t, http.StatusOK, code, string(body))
	code, body = call(http.MethodPost, "/admin/schedule/housekeeping.prune/backfill", map[string]string{"since": "30h", "until": "1m"})
	require.Equal(t, http.StatusOK, code, string(body))

	// The scheduler's ticks, run by the workers' tick consumers.
	ojs := operatorJetStream(t, ns.ClientURL())
	require.Eventually(t, func() bool {
		s, err := ojs.Stream(ctx, "TICKS")
		if err != nil {
			return false
		}
		m, err := s.GetLastMsgForSubject(ctx, "levqor.tick.housekeeping.watch")
		return err == nil && m != nil
	}, 20*time.Second, 100*time.Millisecond, "the scheduler ticks")
	require.Eventually(t, func() bool {
		c, err := ojs.Consumer(ctx, "TICKS", housekeeping.ConsumerTick)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.AckFloor.Stream > 0
	}, 20*time.Second, 100*time.Millisecond, "the workers run the scheduler's ticks (refused: %v)", refused.all())

	// A Stripe event published by a holder of the operator's credentials,
	// without ingest's proof, is dead-lettered (the workers may publish
	// there) and never applied.
	forged, err := stripesim.NewEvent("customer.subscription.deleted", stripesim.EventOptions{Customer: created.Result.StripeCustomerID})
	require.NoError(t, err)
	var forgedID struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal(forged, &forgedID))
	_, err = ojs.PublishMsg(ctx, &nats.Msg{Subject: "levqor.stripe.customer.subscription.deleted", Data: forged, Header: nats.Header{"Nats-Msg-Id": {forgedID.ID}}})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		s, err := ojs.Stream(ctx, "DLQ")
		if err != nil {
			return false
		}
		m, err := s.GetLastMsgForSubject(ctx, "levqor.dlq.billing-stripe")
		return err == nil && bytes.Equal(m.Data, forged)
	}, 20*time.Second, 100*time.Millisecond, "the forged event is dead-lettered (refused: %v)", refused.all())
	n, err := st.CountStripeEvents(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "only the signed webhook reached the ledger")

	// Let the workers' periodic paths (the pauses' watch, the tick watch)
	// run a while longer before reading the server's refusals.
	time.Sleep(3 * time.Second)
	require.Empty(t, refused.all(), "NATS refused a service something its work needs")
}

// operatorJetStream connects as the operator, as the CLI does.
func operatorJetStream(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserInfo("levqor-operator", natsPasswords["LEVQOR_NATS_OPERATOR_PASSWORD"]), nats.CustomInboxPrefix("_INBOX.operator"))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}
