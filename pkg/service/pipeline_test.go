package service_test

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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/bus/bustest"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/inbox"
	"github.com/levqor/levqor/pkg/ingest"
	"github.com/levqor/levqor/pkg/service"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/stripesim"
	"github.com/levqor/levqor/pkg/telemetry"
)

const (
	testSecret    = "whsec_test_pipeline_secret"
	testOldSecret = "whsec_test_rotated_out"
	testToken     = "operator-token-for-tests-0123456789"
)

type pipeline struct {
	nats      *bustest.Env
	st        *store.Store
	env       *service.Env
	ingestURL string
	sender    *stripesim.Sender
}

func newPipeline(t *testing.T, st *store.Store) *pipeline {
	t.Helper()
	nenv := bustest.Start(t)
	cfg, err := config.FromEnv(func(string) string { return "" })
	require.NoError(t, err)
	cfg.WebhookSecrets = []string{testSecret, testOldSecret}
	cfg.AdminToken = testToken
	cfg.ShutdownTimeout = 2 * time.Second
	cfg.MaxDeliver = 3
	log := logrus.New()
	log.Out = io.Discard
	env := &service.Env{Cfg: cfg, Log: log, Reg: telemetry.NewRegistry(), NC: nenv.NC, JS: nenv.JS, Store: st}
	srv, err := env.Ingest(testToken)
	require.NoError(t, err)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &pipeline{
		nats: nenv, st: st, env: env, ingestURL: hs.URL,
		sender: &stripesim.Sender{URL: hs.URL + "/webhooks/stripe", Secret: testSecret},
	}
}

// runWorkers starts the billing worker and returns a stop function.
func (p *pipeline) runWorkers(t *testing.T, mw ...bus.Middleware) (stop func()) {
	t.Helper()
	r, err := p.env.Router([]string{"billing"})
	require.NoError(t, err)
	r.Use(mw...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	require.Eventually(t, r.Ready, 10*time.Second, 10*time.Millisecond)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Error("workers did not stop within 10s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func (p *pipeline) send(t *testing.T, payload []byte) stripesim.Result {
	t.Helper()
	res, err := p.sender.Send(context.Background(), payload)
	require.NoError(t, err)
	return res
}

func event(t *testing.T, typ string, opts stripesim.EventOptions) []byte {
	t.Helper()
	b, err := stripesim.NewEvent(typ, opts)
	require.NoError(t, err)
	return b
}

func (p *pipeline) ledgerCount(t *testing.T) int64 {
	t.Helper()
	n, err := p.st.CountStripeEvents(context.Background())
	require.NoError(t, err)
	return n
}

func (p *pipeline) adminGet(t *testing.T, path, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.ingestURL+path, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (p *pipeline) waitProcessed(t *testing.T, id string) ingest.StripeEventView {
	t.Helper()
	var v ingest.StripeEventView
	require.Eventually(t, func() bool {
		code, body := p.adminGet(t, "/admin/stripe-events/"+id, testToken)
		if code != http.StatusOK {
			return false
		}
		require.NoError(t, json.Unmarshal(body, &v))
		for _, c := range v.Consumers {
			if c.Consumer == billing.ConsumerStripe && c.State == store.ConsumerStateProcessed {
				return true
			}
		}
		return false
	}, 15*time.Second, 20*time.Millisecond, "event %s processed by billing-stripe", id)
	return v
}

func TestPipeline(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		t.Run("SignedWebhookRecordedOnce", func(t *testing.T) {
			p := newPipeline(t, st)
			p.runWorkers(t)
			payload := event(t, "customer.subscription.created", stripesim.EventOptions{Customer: "cus_pipeline1"})
			var env struct{ ID string }
			require.NoError(t, json.Unmarshal(payload, &env))

			res := p.send(t, payload)
			require.Equal(t, http.StatusOK, res.Status, string(res.Body))
			require.Equal(t, env.ID, res.EventID)

			v := p.waitProcessed(t, env.ID)
			require.Equal(t, "customer.subscription.created", v.Type)
			require.JSONEq(t, string(payload), string(v.Payload), "the ledger keeps the exact event")
			ev, err := st.GetStripeEvent(context.Background(), env.ID)
			require.NoError(t, err)
			require.Equal(t, payload, []byte(ev.Payload), "byte for byte")
			require.False(t, ev.ReceivedAt.IsZero())
		})

		t.Run("SameEventThreeTimesIsOneRow", func(t *testing.T) {
			p := newPipeline(t, st)
			p.runWorkers(t)
			before := p.ledgerCount(t)
			payload := event(t, "invoice.paid", stripesim.EventOptions{})
			var dupes []bool
			for i := 0; i < 3; i++ {
				res := p.send(t, payload)
				require.Equal(t, http.StatusOK, res.Status)
				var body struct{ Duplicate bool }
				require.NoError(t, json.Unmarshal(res.Body, &body))
				dupes = append(dupes, body.Duplicate)
			}
			require.Equal(t, []bool{false, true, true}, dupes)
			var env struct{ ID string }
			require.NoError(t, json.Unmarshal(payload, &env))
			p.waitProcessed(t, env.ID)
			require.Equal(t, before+1, p.ledgerCount(t))
			require.EqualValues(t, 1, p.nats.StreamMsgs(t, bus.Stripe), "JetStream stored it once")
		})

		t.Run("RotatedSecretStillAccepted", func(t *testing.T) {
			p := newPipeline(t, st)
			old := &stripesim.Sender{URL: p.sender.URL, Secret: testOldSecret}
			res, err := old.Send(context.Background(), event(t, "charge.refunded", stripesim.EventOptions{}))
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, res.Status)
		})

		t.Run("AdminEndpointNeedsOperatorToken", func(t *testing.T) {
			p := newPipeline(t, st)
			code, body := p.adminGet(t, "/admin/stripe-events/evt_x", "")
			require.Equal(t, http.StatusUnauthorized, code)
			require.Contains(t, string(body), `"code":"unauthenticated"`)
			code, _ = p.adminGet(t, "/admin/stripe-events/evt_x", "wrong-token")
			require.Equal(t, http.StatusUnauthorized, code)
			code, body = p.adminGet(t, "/admin/stripe-events/evt_missing", testToken)
			require.Equal(t, http.StatusNotFound, code)
			require.Contains(t, string(body), `"field":"id"`)
		})

		t.Run("PoisonEventDeadLettered", func(t *testing.T) {
			p := newPipeline(t, st)
			p.runWorkers(t)
			// Published past ingest (as a replay tool could): its id does
			// not match its payload, which no retry can fix.
			payload := event(t, "invoice.paid", stripesim.EventOptions{ID: "evt_inside"})
			h := nats.Header{}
			h.Set(bus.HeaderCorrelationID, "corr-poison")
			pub := bus.NewPublisher(p.nats.JS, p.nats.Topo)
			_, err := pub.Publish(context.Background(), p.nats.Topo.Subject(bus.Stripe, "invoice.paid"), "evt_outside", h, payload)
			require.NoError(t, err)
			require.Eventually(t, func() bool { return p.nats.StreamMsgs(t, bus.DLQ) == 1 }, 10*time.Second, 20*time.Millisecond)
			dl := p.nats.Messages(t, bus.DLQ)[0]
			require.Equal(t, "levqor.dlq.billing-stripe", dl.Subject)
			require.Equal(t, "evt_outside", dl.Header.Get(bus.HeaderOriginalMsgID))
			require.Equal(t, "levqor.stripe.invoice.paid", dl.Header.Get(bus.HeaderDlqSubject))
			require.Equal(t, "corr-poison", dl.Header.Get(bus.HeaderCorrelationID))
			require.Contains(t, dl.Header.Get(bus.HeaderDlqReason), "does not match")
			require.Equal(t, payload, dl.Data)
			states, err := st.ConsumerStates(context.Background(), "evt_outside")
			require.NoError(t, err)
			require.Len(t, states, 1)
			require.Equal(t, store.ConsumerStateDeadLettered, states[0].State, "operators can see why")
		})

		t.Run("WorkerCrashAfterCommitIsProcessedOnce", func(t *testing.T) {
			p := newPipeline(t, st)
			ctx := context.Background()
			p.env.Cfg.AckWait = 500 * time.Millisecond
			spec := billing.StripeConsumer()
			spec.AckWait = p.env.Cfg.AckWait
			cons, err := p.nats.Topo.EnsureConsumer(ctx, p.nats.JS, spec)
			require.NoError(t, err)
			payload := event(t, "customer.updated", stripesim.EventOptions{})
			var env struct{ ID string }
			require.NoError(t, json.Unmarshal(payload, &env))
			require.Equal(t, http.StatusOK, p.send(t, payload).Status)
			before := p.ledgerCount(t)

			// A worker receives the event, commits its effects, and dies
			// before it can acknowledge.
			batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
			require.NoError(t, err)
			for jm := range batch.Messages() {
				m := messageFrom(t, jm)
				require.NoError(t, inbox.Handler(st, billing.RecordStripeEvent)(ctx, m))
			}
			require.Equal(t, before+1, p.ledgerCount(t))

			// A fresh worker gets the redelivery and changes nothing.
			r, err := p.env.Router([]string{"billing"})
			require.NoError(t, err)
			var deliveries []uint64
			var mu sync.Mutex
			r.Use(func(next bus.Handler) bus.Handler {
				return func(ctx context.Context, m *bus.Message) error {
					mu.Lock()
					deliveries = append(deliveries, m.Deliveries)
					mu.Unlock()
					return next(ctx, m)
				}
			})
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- r.Run(rctx) }()
			defer func() { cancel(); <-done }()
			require.Eventually(t, func() bool {
				info, err := cons.Info(ctx)
				return err == nil && info.NumAckPending == 0 && info.NumPending == 0 && info.NumRedelivered == 0
			}, 15*time.Second, 50*time.Millisecond)
			mu.Lock()
			require.Equal(t, []uint64{2}, deliveries, "redelivered once after the crash")
			mu.Unlock()
			require.Equal(t, before+1, p.ledgerCount(t), "no second effect")
		})

		t.Run("WorkerStoppedMidMessageHandsItOver", func(t *testing.T) {
			p := newPipeline(t, st)
			started := make(chan struct{}, 1)
			block := func(next bus.Handler) bus.Handler {
				return func(ctx context.Context, m *bus.Message) error {
					started <- struct{}{}
					<-ctx.Done() // stuck until the shutdown deadline
					return ctx.Err()
				}
			}
			stop := p.runWorkers(t, block)
			payload := event(t, "invoice.payment_failed", stripesim.EventOptions{})
			var env struct{ ID string }
			require.NoError(t, json.Unmarshal(payload, &env))
			require.Equal(t, http.StatusOK, p.send(t, payload).Status)
			<-started
			stop()
			p.runWorkers(t)
			p.waitProcessed(t, env.ID)
		})
	})
}

// messageFrom turns a raw delivery into a bus.Message the way the router
// does, for tests that play a worker by hand.
func messageFrom(t *testing.T, jm jetstream.Msg) *bus.Message {
	t.Helper()
	meta, err := jm.Metadata()
	require.NoError(t, err)
	return &bus.Message{
		Subject: jm.Subject(), Header: jm.Headers(), Data: jm.Data(),
		Stream: meta.Stream, Consumer: meta.Consumer, StreamSeq: meta.Sequence.Stream,
		Deliveries: meta.NumDelivered, Published: meta.Timestamp,
	}
}

func TestWebhookRejectsBadInputAndPublishesNothing(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, storetest.SQLite(t))
	good := event(t, "invoice.paid", stripesim.EventOptions{})
	post := func(body []byte, sig string) (int, map[string]map[string]string) {
		req, err := http.NewRequest(http.MethodPost, p.sender.URL, bytes.NewReader(body))
		require.NoError(t, err)
		if sig != "" {
			req.Header.Set("Stripe-Signature", sig)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	now := time.Now()
	for name, tc := range map[string]struct {
		body   []byte
		sig    string
		status int
		code   string
	}{
		"MissingSignature": {good, "", 400, "signature_missing"},
		"WrongSecret":      {good, stripesim.Sign(good, "whsec_wrong", now), 400, "signature_invalid"},
		"TamperedBody":     {append([]byte(nil), bytes.Replace(good, []byte("invoice.paid"), []byte("invoice.void"), 1)...), stripesim.Sign(good, testSecret, now), 400, "signature_invalid"},
		"StaleTimestamp":   {good, stripesim.Sign(good, testSecret, now.Add(-6*time.Minute)), 400, "signature_expired"},
		"GarbageHeader":    {good, "nonsense", 400, "signature_malformed"},
		"NotJSON":          {[]byte("hello"), stripesim.Sign([]byte("hello"), testSecret, now), 400, "malformed_event"},
		"NoType":           {[]byte(`{"id":"evt_1","object":"event","created":1}`), stripesim.Sign([]byte(`{"id":"evt_1","object":"event","created":1}`), testSecret, now), 400, "malformed_event"},
		"SubjectInjection": {[]byte(`{"id":"evt_1","object":"event","created":1,"type":"invoice.>"}`), stripesim.Sign([]byte(`{"id":"evt_1","object":"event","created":1,"type":"invoice.>"}`), testSecret, now), 400, "malformed_event"},
	} {
		t.Run(name, func(t *testing.T) {
			status, out := post(tc.body, tc.sig)
			require.Equal(t, tc.status, status)
			require.Equal(t, tc.code, out["error"]["code"])
			require.NotEmpty(t, out["error"]["message"])
		})
	}
	t.Run("OversizedBody", func(t *testing.T) {
		big := []byte(`{"id":"evt_big","object":"event","type":"invoice.paid","created":1,"pad":"` + strings.Repeat("x", 1<<20) + `"}`)
		status, out := post(big, stripesim.Sign(big, testSecret, now))
		require.Equal(t, http.StatusRequestEntityTooLarge, status)
		require.Equal(t, "payload_too_large", out["error"]["code"])
	})
	require.Zero(t, p.nats.StreamMsgs(t, bus.Stripe), "nothing rejected reached JetStream")
}

func TestIngestAnswers503WhileNATSIsDownAndRecovers(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, storetest.SQLite(t))
	p.runWorkers(t)
	p.nats.Server.Stop()
	require.Eventually(t, func() bool { return !p.nats.NC.IsConnected() }, 5*time.Second, 10*time.Millisecond)

	down := event(t, "invoice.paid", stripesim.EventOptions{})
	res := p.send(t, down)
	require.Equal(t, http.StatusServiceUnavailable, res.Status, string(res.Body))
	require.Contains(t, string(res.Body), `"code":"unavailable"`)
	code, body := p.adminGet(t, "/readyz", "")
	require.Equal(t, http.StatusServiceUnavailable, code, string(body))

	require.NoError(t, p.nats.Server.Restart())
	// Stripe retries: the same event now goes through, and workers that
	// were never restarted process it.
	require.Eventually(t, func() bool { return p.send(t, down).Status == http.StatusOK }, 15*time.Second, 100*time.Millisecond)
	var env struct{ ID string }
	require.NoError(t, json.Unmarshal(down, &env))
	p.waitProcessed(t, env.ID)
	code, _ = p.adminGet(t, "/readyz", "")
	require.Equal(t, http.StatusOK, code)
}

func TestResponsesCarrySecurityHeadersAndCorrelationID(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, storetest.SQLite(t))
	resp, err := http.Get(p.ingestURL + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	require.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"))
	require.NotEmpty(t, resp.Header.Get("Levqor-Correlation-Id"))
	resp, err = http.Get(p.ingestURL + "/metrics")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "metrics on the public listener are for operators")
	req, err := http.NewRequest(http.MethodGet, p.ingestURL+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(b), "levqor_ingest_requests_total")
	resp, err = http.Get(p.ingestURL + "/nope")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

}
