package ingest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/bus/bustest"
	"github.com/levqor/levqor/pkg/ingest"
	"github.com/levqor/levqor/pkg/stripesim"
	"github.com/levqor/levqor/pkg/telemetry"
)

const testSecret = "whsec_ingest_test"

type webhookSetup struct {
	env  *bustest.Env
	h    http.Handler
	reg  *prometheus.Registry
	logs *logtest.Hook
}

func setup(t *testing.T, opts ...bus.PublisherOption) webhookSetup {
	t.Helper()
	env := bustest.Start(t)
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.InfoLevel)
	reg := telemetry.NewRegistry()
	srv, err := ingest.New(ingest.Config{WebhookSecrets: []string{"whsec_old", testSecret}, MaxBodyBytes: 64 << 10},
		bus.NewPublisher(env.JS, env.Topo, opts...), nil, log, reg)
	require.NoError(t, err)
	return webhookSetup{env: env, h: srv.Handler(), reg: reg, logs: hook}
}

func (s webhookSetup) post(t *testing.T, body []byte, sig string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/webhooks/stripe", bytes.NewReader(body))
	if sig != "" {
		req.Header.Set("Stripe-Signature", sig)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	return rec
}

func (s webhookSetup) stripeCount(t *testing.T, result string) float64 {
	t.Helper()
	mfs, err := s.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "levqor_ingest_stripe_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func newEvent(t *testing.T, id string) []byte {
	t.Helper()
	b, err := stripesim.NewEvent("invoice.paid", stripesim.EventOptions{ID: id})
	require.NoError(t, err)
	return b
}

func TestWebhookStoresTheExactBytesAndAnswers(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string][]bus.PublisherOption{"Sync": nil, "Async": {bus.WithAsyncWindow(8)}} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := setup(t, opts...)
			body := newEvent(t, "evt_exact1")
			rec := s.post(t, body, stripesim.Sign(body, testSecret, time.Now()), bus.HeaderCorrelationID, "corr-from-caller")
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			require.Equal(t, `{"duplicate":false,"id":"evt_exact1","received":true}`+"\n", rec.Body.String())
			require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			require.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))
			require.Equal(t, "corr-from-caller", rec.Header().Get(bus.HeaderCorrelationID))

			msgs := s.env.Messages(t, bus.Stripe)
			require.Len(t, msgs, 1)
			require.Equal(t, body, msgs[0].Data, "the payload travels as the exact bytes Stripe sent")
			require.Equal(t, "evt_exact1", msgs[0].Header.Get(bus.HeaderMsgID))
			require.Equal(t, "corr-from-caller", msgs[0].Header.Get(bus.HeaderCorrelationID))
			require.Equal(t, s.env.Topo.Subject(bus.Stripe, "invoice.paid"), msgs[0].Subject)

			// The same event again: acknowledged as a duplicate, stored once,
			// and no log line on this success path at info level.
			rec = s.post(t, body, stripesim.Sign(body, testSecret, time.Now()))
			require.Equal(t, http.StatusOK, rec.Code)
			require.Equal(t, `{"duplicate":true,"id":"evt_exact1","received":true}`+"\n", rec.Body.String())
			require.Len(t, rec.Header().Get(bus.HeaderCorrelationID), 24, "a fresh correlation id when the caller sent none")
			require.EqualValues(t, 1, s.env.StreamMsgs(t, bus.Stripe))
			require.Equal(t, 1.0, s.stripeCount(t, "accepted"))
			require.Equal(t, 1.0, s.stripeCount(t, "duplicate"))
			require.Empty(t, s.logs.AllEntries())
		})
	}
}

func TestWebhookRefusesWithTheField(t *testing.T) {
	t.Parallel()
	s := setup(t)
	valid := newEvent(t, "evt_refused1")
	big := append(append([]byte(`{"id":"evt_big","type":"a.b","created":1,"pad":"`), bytes.Repeat([]byte("x"), 70<<10)...), `"}`...)
	for name, tc := range map[string]struct {
		body        []byte
		sig         string
		code        int
		errCode     string
		field       string
		messagePart string
	}{
		"NoSignature":      {valid, "", 400, "signature_missing", "Stripe-Signature", "missing"},
		"WrongSecret":      {valid, stripesim.Sign(valid, "whsec_other", time.Now()), 400, "signature_invalid", "Stripe-Signature", "no signature"},
		"Expired":          {valid, stripesim.Sign(valid, testSecret, time.Now().Add(-time.Hour)), 400, "signature_expired", "Stripe-Signature", "older than"},
		"NotJSON":          {[]byte(`{"id":"evt_1",`), "", 400, "malformed_event", "", "not a JSON object"},
		"TrailingGarbage":  {append(append([]byte{}, valid...), []byte(" }")...), "", 400, "malformed_event", "", "not a JSON object"},
		"CreatedNotNumber": {[]byte(`{"id":"evt_c","type":"a.b","created":"yesterday"}`), "", 400, "malformed_event", "created", "created"},
		"BadType":          {[]byte(`{"id":"evt_t","type":"a.>","created":1}`), "", 400, "malformed_event", "type", "type"},
		"TooBig":           {big, "", 413, "payload_too_large", "", "exceeds"},
	} {
		t.Run(name, func(t *testing.T) {
			sig := tc.sig
			if sig == "" && name != "NoSignature" {
				sig = stripesim.Sign(tc.body, testSecret, time.Now())
			}
			rec := s.post(t, tc.body, sig)
			require.Equal(t, tc.code, rec.Code, rec.Body.String())
			var e struct {
				Error struct{ Code, Message, Field string } `json:"error"`
			}
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &e))
			require.Equal(t, tc.errCode, e.Error.Code)
			require.Equal(t, tc.field, e.Error.Field)
			require.Contains(t, e.Error.Message, tc.messagePart)
		})
	}
	require.Zero(t, s.env.StreamMsgs(t, bus.Stripe), "nothing refused is stored")
	require.Equal(t, 8.0, s.stripeCount(t, "rejected"))
}

// TestWebhookConcurrentBodiesStayApart sends many different events at once:
// pooled body buffers must never let one request's bytes leak into
// another's stored message.
func TestWebhookConcurrentBodiesStayApart(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string][]bus.PublisherOption{"Sync": nil, "Async": {bus.WithAsyncWindow(4)}} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := setup(t, opts...)
			const n = 200
			bodies := make(map[string][]byte, n)
			for i := 0; i < n; i++ {
				id := fmt.Sprintf("evt_conc%03d", i)
				b := newEvent(t, id)
				if i%3 == 0 { // different sizes, so buffers are reused across sizes
					b = bytes.Replace(b, []byte(`"object": "event"`), []byte(`"object": "event", "pad": "`+strings.Repeat("p", i*37)+`"`), 1)
				}
				bodies[id] = b
			}
			var wg sync.WaitGroup
			ch := make(chan string)
			for w := 0; w < 16; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for id := range ch {
						rec := s.post(t, bodies[id], stripesim.Sign(bodies[id], testSecret, time.Now()))
						if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"id":"`+id+`"`) {
							t.Errorf("%s: %d %s", id, rec.Code, rec.Body)
						}
					}
				}()
			}
			for id := range bodies {
				ch <- id
			}
			close(ch)
			wg.Wait()
			msgs := s.env.Messages(t, bus.Stripe)
			require.Len(t, msgs, n)
			for _, m := range msgs {
				id := m.Header.Get(bus.HeaderMsgID)
				require.Equal(t, bodies[id], m.Data, "stored payload of %s", id)
			}
		})
	}
}

func TestWebhookUnavailableAnswers503(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.env.Server.Stop()
	body := newEvent(t, "evt_down1")
	rec := s.post(t, body, stripesim.Sign(body, testSecret, time.Now()))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
	require.Equal(t, "5", rec.Header().Get("Retry-After"))
	require.Equal(t, 1.0, s.stripeCount(t, "unavailable"))
	require.NotEmpty(t, s.logs.AllEntries(), "a refused publish is logged")
}
