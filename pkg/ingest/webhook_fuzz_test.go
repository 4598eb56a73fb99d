package ingest_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/bus/bustest"
	"github.com/levqor/levqor/pkg/ingest"
	"github.com/levqor/levqor/pkg/stripesim"
	"github.com/levqor/levqor/pkg/telemetry"
)

// FuzzStripeWebhook drives the webhook handler's parsing path with
// correctly signed arbitrary bodies: it must answer 200 (stored) or 400
// (refused) — never crash, never 5xx with JetStream up — and store exactly
// what it accepted.
func FuzzStripeWebhook(f *testing.F) {
	env := bustest.Start(f)
	log := logrus.New()
	log.Out = io.Discard
	const secret = "whsec_fuzz"
	srv, err := ingest.New(ingest.Config{WebhookSecrets: []string{secret}},
		bus.NewPublisher(env.JS, env.Topo), nil, log, telemetry.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	for _, typ := range stripesim.SupportedTypes() {
		b, _ := stripesim.NewEvent(typ, stripesim.EventOptions{})
		f.Add(b)
	}
	f.Add([]byte(`{"id":"evt_1","object":"event","type":"invoice.paid","created":1}`))
	f.Add([]byte(`{"id":"evt_1","object":"event","type":"invoice..paid","created":1}`))
	f.Add([]byte{0xff, 0xfe})
	f.Fuzz(func(t *testing.T, body []byte) {
		before := env.StreamMsgs(t, bus.Stripe)
		req := httptest.NewRequest(http.MethodPost, "/webhooks/stripe", bytes.NewReader(body))
		req.Header.Set("Stripe-Signature", stripesim.Sign(body, secret, time.Now()))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		after := env.StreamMsgs(t, bus.Stripe)
		switch rec.Code {
		case http.StatusOK:
			if after > before+1 {
				t.Fatalf("one webhook stored %d messages", after-before)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if after != before {
				t.Fatalf("refused webhook (%d) was stored", rec.Code)
			}
		default:
			t.Fatalf("unexpected status %d: %s", rec.Code, rec.Body.String())
		}
	})
}
