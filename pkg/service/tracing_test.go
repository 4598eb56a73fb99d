package service_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/levqor/levqor/pkg/ingest"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/stripemock"
	"github.com/levqor/levqor/pkg/stripesim"
	"github.com/levqor/levqor/pkg/telemetry"
)

// TestOneWebhookIsOneTrace: a signed invoice.payment_failed, in dev
// mode's wiring with spans recorded in memory, is one trace from ingest's
// request through JetStream to the billing handler and its transaction,
// and on through the outbox to the support handler that opens the
// ticket, and its transaction. Not parallel: tracing is process-wide,
// and the parallel tests stay paused while it runs.
func TestOneWebhookIsOneTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	telemetry.Use(tp)
	t.Cleanup(func() { telemetry.Use(nil) })

	vars := devVars(t.TempDir())
	vars["STRIPE_API_BASE"] = stripemock.Start(t)
	vars["LEVQOR_SCHEDULE"] = "billing.reconcile=off"
	d, err := runDev(t, vars)
	require.NoError(t, err)
	c := devClient{info: d.info}

	status, body := c.do(t, http.MethodPost, "/v1/accounts?wait=15s", map[string]string{"name": "Ada Backups Ltd", "contact_email": "ops@ada.example"})
	require.Equal(t, http.StatusCreated, status, string(body))
	var created struct{ Result store.Account }
	require.NoError(t, json.Unmarshal(body, &created))
	acc, cus := created.Result.ID, created.Result.StripeCustomerID

	// A business account: its failed payments open a ticket.
	t1 := time.Now().Add(-time.Minute).Truncate(time.Second)
	c.webhook(t, "customer.subscription.created", stripesim.EventOptions{Created: t1, Customer: cus, ObjectID: "sub_trace", Price: "price_levqor_business_monthly"})
	require.Eventually(t, func() bool {
		b := c.billing(t, acc)
		return b.Tier != nil && *b.Tier == "business"
	}, 20*time.Second, 50*time.Millisecond)

	ev, err := stripesim.NewEvent("invoice.payment_failed", stripesim.EventOptions{Created: t1.Add(time.Second),
		Customer: cus, ObjectID: "in_trace_1", Subscription: "sub_trace", Price: "price_levqor_business_monthly"})
	require.NoError(t, err)
	res, err := (&stripesim.Sender{URL: c.info.WebhookURL, Secret: c.info.WebhookSecret}).Send(context.Background(), ev)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.Status, string(res.Body))
	traceID := res.Header.Get(ingest.HeaderTraceID)
	require.Len(t, traceID, 32, "ingest answers the request's trace id")

	// The ticket support opens for the failed payment.
	require.Eventually(t, func() bool {
		status, body := c.do(t, http.MethodGet, "/v1/tickets?account_id="+acc, nil)
		return status == http.StatusOK && strings.Contains(string(body), `"category":"billing"`)
	}, 20*time.Second, 50*time.Millisecond, "support opened a ticket")

	// Spans end after the work they time: wait until the support
	// handler's span, and every span above it, has ended.
	var spans []sdktrace.ReadOnlySpan
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	// path is the names from s up to the highest ended span above it.
	path := func(s sdktrace.ReadOnlySpan) []string {
		var names []string
		for s != nil {
			names = append(names, s.Name())
			s = byID[s.Parent().SpanID()]
		}
		return names
	}
	require.Eventually(t, func() bool {
		spans = spans[:0]
		clear(byID)
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID().String() == traceID {
				spans = append(spans, s)
				byID[s.SpanContext().SpanID()] = s
			}
		}
		support := find(spans, "process support-event")
		return support != nil && last(path(support)) == "POST /webhooks/stripe"
	}, 10*time.Second, 20*time.Millisecond, "the trace %s: %v", traceID, names(spans))

	root := find(spans, "POST /webhooks/stripe")
	require.NotNil(t, root, "ingest's request: %v", names(spans))
	require.Equal(t, trace.SpanKindServer, root.SpanKind())
	require.False(t, root.Parent().IsValid(), "the webhook starts the trace")

	billing := find(spans, "process billing-stripe")
	require.NotNil(t, billing, "the billing handler: %v", names(spans))
	require.Equal(t, "POST /webhooks/stripe", last(path(billing)), "billing's span descends from ingest's")
	require.Contains(t, path(billing), "publish levqor.stripe.invoice.payment_failed")

	support := find(spans, "process support-event")
	require.Contains(t, path(support), "process billing-stripe", "the event billing wrote to its outbox carries billing's trace")
	require.Equal(t, "POST /webhooks/stripe", last(path(support)))

	// Each handler's transaction is in the trace.
	var txUnder []string
	for _, s := range spans {
		if s.Name() == "db.transaction" {
			txUnder = append(txUnder, path(s)[1])
		}
	}
	require.Contains(t, txUnder, "process support-event", "support's transaction")
	require.True(t, len(txUnder) >= 2, "billing's transaction and support's: %v", names(spans))
}

func find(spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	for _, s := range spans {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

func last(s []string) string { return s[len(s)-1] }
