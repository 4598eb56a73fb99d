package ingest_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stripe/stripe-go/v76/webhook"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/bus/bustest"
	"github.com/levqor/levqor/pkg/ingest"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/stripesim"
	"github.com/levqor/levqor/pkg/telemetry"
)

// BenchmarkWebhook measures ingest's hot path in process: signature check,
// envelope parse, synchronous JetStream publish (file storage) and the JSON
// answer. Each iteration is a new event, so nothing is deduplicated.
func BenchmarkWebhook(b *testing.B) { benchmarkWebhook(b) }

// BenchmarkWebhookProved is BenchmarkWebhook with the bus key, as
// processes run: each message carries its Levqor-Proof (an HMAC of the
// event's bytes).
func BenchmarkWebhookProved(b *testing.B) {
	key, err := keys.ParseBusKey(strings.Repeat("ab", 32))
	if err != nil {
		b.Fatal(err)
	}
	benchmarkWebhook(b, bus.WithBusKey(key))
}

func benchmarkWebhook(b *testing.B, opts ...bus.PublisherOption) {
	env := bustest.Start(b)
	log := logrus.New()
	log.Out = io.Discard
	const secret = "whsec_bench"
	srv, err := ingest.New(ingest.Config{WebhookSecrets: []string{secret}}, bus.NewPublisher(env.JS, env.Topo, opts...), nil, log, telemetry.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	payloads := make([][]byte, b.N)
	sigs := make([]string, b.N)
	for i := range payloads {
		payloads[i], _ = stripesim.NewEvent("invoice.paid", stripesim.EventOptions{})
		sigs[i] = stripesim.Sign(payloads[i], secret, time.Now())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest(http.MethodPost, "/webhooks/stripe", bytes.NewReader(payloads[i]))
		req.Header.Set("Stripe-Signature", sigs[i])
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkWebhookParallel is BenchmarkWebhook with 64 concurrent requests
// (32 goroutines per CPU on the 2-core machine), as in the 64-connection
// system run: synchronous requests, then asynchronous publishes that each
// still wait for their own acknowledgement.
func BenchmarkWebhookParallel(b *testing.B) {
	for _, c := range []struct {
		name string
		opts []bus.PublisherOption
	}{{"Sync", nil}, {"Async", []bus.PublisherOption{bus.WithAsyncWindow(256)}}} {
		b.Run(c.name, func(b *testing.B) {
			env := bustest.Start(b)
			log := logrus.New()
			log.Out = io.Discard
			log.SetLevel(logrus.WarnLevel)
			const secret = "whsec_bench"
			srv, err := ingest.New(ingest.Config{WebhookSecrets: []string{secret}}, bus.NewPublisher(env.JS, env.Topo, c.opts...), nil, log, telemetry.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			h := srv.Handler()
			payloads := make([][]byte, b.N)
			sigs := make([]string, b.N)
			for i := range payloads {
				payloads[i], _ = stripesim.NewEvent("invoice.paid", stripesim.EventOptions{})
				sigs[i] = stripesim.Sign(payloads[i], secret, time.Now())
			}
			var next atomic.Int64
			b.SetParallelism(32)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1) - 1
					req := httptest.NewRequest(http.MethodPost, "/webhooks/stripe", bytes.NewReader(payloads[i]))
					req.Header.Set("Stripe-Signature", sigs[i])
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != http.StatusOK {
						b.Errorf("status %d: %s", rec.Code, rec.Body)
						return
					}
				}
			})
		})
	}
}

// BenchmarkWebhookTracing is BenchmarkWebhook with tracing off (as it
// runs unless OTEL_* ask for it) and on: every request sampled, its spans
// (ingest's request, the publish) batched to an exporter that drops them,
// and trace context written into each message's headers.
func BenchmarkWebhookTracing(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "Off"
		if on {
			name = "On"
		}
		b.Run(name, func(b *testing.B) {
			if on {
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
				telemetry.Use(tp)
				b.Cleanup(func() {
					telemetry.Use(nil)
					_ = tp.Shutdown(context.Background())
				})
			}
			benchmarkWebhook(b)
		})
	}
}

// BenchmarkVerifySignature is stripe-go's signature check on a typical
// event, the part of the hot path no implementation can skip.
func BenchmarkVerifySignature(b *testing.B) {
	payload, _ := stripesim.NewEvent("customer.subscription.updated", stripesim.EventOptions{})
	sig := stripesim.Sign(payload, "whsec_bench", time.Now())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := webhook.ValidatePayloadWithTolerance(payload, sig, "whsec_bench", 5*time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}
