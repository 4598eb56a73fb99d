package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/api"
	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/bus/bustest"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/ingest"
	"github.com/levqor/levqor/pkg/service"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/stripemock"
	"github.com/levqor/levqor/pkg/telemetry"
)

// harness is ingest with the product API, the accounts worker, embedded
// NATS, a real database and stripe-mock: what a client talks to.
type harness struct {
	nats   *bustest.Env
	st     *store.Store
	env    *service.Env
	ingest *ingest.Server
	url    string
	logs   *syncBuffer

	// opKey is an operator key; keyA and keyB belong to accounts accA and
	// accB, which exist in the database.
	opKey, keyA, keyB string
	keyAID            string
	accA, accB        string
}

type options struct {
	noStripe  bool   // the worker has no Stripe configured
	stripeURL string // overrides stripe-mock
	rate      float64
	burst     int
	maxDel    int
	// configure changes the configuration before ingest is built.
	configure func(c *config.Config)
}

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newHarness(t *testing.T, st *store.Store, o options) *harness {
	t.Helper()
	nenv := bustest.Start(t)
	cfg, err := config.FromEnv(func(string) string { return "" })
	require.NoError(t, err)
	cfg.WebhookSecrets = []string{"whsec_api_tests"}
	cfg.ShutdownTimeout = 2 * time.Second
	cfg.MaxDeliver = 3
	if o.maxDel > 0 {
		cfg.MaxDeliver = o.maxDel
	}
	cfg.APIRate, cfg.APIBurst = 1000, 1000
	// As config requires of ingest and the workers: it wraps the data
	// keys backups are encrypted under, and seals DSNs.
	cfg.MasterKeys = "4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d"
	cfg.APIAuthFailures = 10000 // the tests knock on every route without a key
	if o.rate > 0 {
		cfg.APIRate, cfg.APIBurst = o.rate, o.burst
	}
	if !o.noStripe {
		cfg.StripeAPIKey = stripemock.TestKey
		cfg.StripeAPIBase = o.stripeURL
		if cfg.StripeAPIBase == "" {
			cfg.StripeAPIBase = stripemock.Start(t)
		}
	}
	if o.configure != nil {
		o.configure(&cfg)
	}
	logs := &syncBuffer{}
	log := logrus.New()
	log.Out = logs
	log.Level = logrus.DebugLevel
	log.Formatter = &logrus.JSONFormatter{}
	env := &service.Env{Cfg: cfg, Log: log, Reg: telemetry.NewRegistry(), NC: nenv.NC, JS: nenv.JS, Store: st}
	srv, err := env.Ingest("")
	require.NoError(t, err)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	h := &harness{nats: nenv, st: st, env: env, ingest: srv, url: hs.URL, logs: logs}
	h.accA, h.accB = h.account(t, "Account A"), h.account(t, "Account B")
	h.opKey, _ = h.key(t, "")
	h.keyA, h.keyAID = h.key(t, h.accA)
	h.keyB, _ = h.key(t, h.accB)
	return h
}

// account inserts an account directly, as if created earlier.
func (h *harness) account(t *testing.T, name string) string {
	t.Helper()
	id, err := command.NewID("acc_")
	require.NoError(t, err)
	ctx := t.Context()
	require.NoError(t, h.st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.InsertAccount(ctx, store.Account{ID: id, Name: name, ContactEmail: "ops@" + strings.ReplaceAll(strings.ToLower(name), " ", "") + ".example", StripeCustomerID: "cus_" + name[len(name)-1:]})
		return err
	}))
	return id
}

// key makes an API key: an operator key for accountID "".
func (h *harness) key(t *testing.T, accountID string) (secret, id string) {
	t.Helper()
	k, err := auth.GenerateKey()
	require.NoError(t, err)
	require.NoError(t, h.st.CreateAPIKey(t.Context(), store.APIKey{
		ID: k.ID, Hash: k.Hash, Prefix: k.Prefix, Operator: accountID == "", AccountID: accountID,
	}))
	return k.Secret, k.ID
}

// runWorker starts the accounts worker until the test ends.
func (h *harness) runWorker(t *testing.T) {
	t.Helper()
	h.runWorkers(t, "accounts")
}

// runWorkers starts the named workers until the test ends.
func (h *harness) runWorkers(t *testing.T, names ...string) {
	t.Helper()
	r, err := h.env.Router(names)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	require.Eventually(t, r.Ready, 10*time.Second, 10*time.Millisecond)
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("worker did not stop")
		}
	})
}

// response is an answer, decoded.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.body, v), string(r.body))
}

// errorOf returns the error shape of the body, failing if it has another.
func (r response) errorOf(t *testing.T) map[string]string {
	t.Helper()
	var e struct {
		Error map[string]string `json:"error"`
	}
	r.json(t, &e)
	require.NotEmpty(t, e.Error["code"], "error shape: %s", r.body)
	require.NotEmpty(t, e.Error["message"], "error shape: %s", r.body)
	return e.Error
}

func (r response) command(t *testing.T) api.CommandView {
	t.Helper()
	var v api.CommandView
	r.json(t, &v)
	require.True(t, command.ValidID(v.CommandID, "cmd_"), string(r.body))
	return v
}

// do sends a request with key (none if ""); a non-nil body is sent as
// JSON. Extra headers are name, value pairs.
func (h *harness) do(t *testing.T, method, path, key string, body any, headers ...string) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	require.NoError(t, err)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// commandsPublished counts messages on the COMMANDS stream.
func (h *harness) commandsPublished(t *testing.T) uint64 {
	t.Helper()
	return h.nats.StreamMsgs(t, bus.Commands)
}
