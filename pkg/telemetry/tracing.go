package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing follows one request through ingest, JetStream, the workers,
// their transactions, the Stripe API and the outbox, with OpenTelemetry.
// It is configured only by the standard OTEL_* variables and is off
// unless they ask for an exporter; off, each publish and each delivery
// costs one atomic load, and the tracer is the SDK's no-op one.

// instrumentation names Levqor's spans' tracer.
const instrumentation = "github.com/levqor/levqor"

var (
	tracingOn atomic.Bool
	tracer    atomic.Pointer[trace.Tracer]
)

// Tracing reports whether spans are recorded and trace context travels in
// message headers.
func Tracing() bool { return tracingOn.Load() }

// Tracer is the tracer Levqor's spans start from.
func Tracer() trace.Tracer {
	if t := tracer.Load(); t != nil {
		return *t
	}
	return otel.Tracer(instrumentation)
}

// noSpan is the span StartSpan returns while tracing is off: it records
// nothing, whatever span the context holds.
var noSpan = trace.SpanFromContext(context.Background())

// propagator writes and reads W3C trace context (traceparent,
// tracestate).
var propagator = propagation.TraceContext{}

// HeaderCarrier carries trace context in a NATS message's headers, or any
// map of header values. Keys are written as the W3C names them
// (traceparent), and read in that form or in its canonical MIME form.
type HeaderCarrier map[string][]string

// Get returns the first value of key.
func (c HeaderCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	if v := c[textproto.CanonicalMIMEHeaderKey(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set replaces key's values with value.
func (c HeaderCarrier) Set(key, value string) { c[key] = []string{value} }

// Keys lists the keys.
func (c HeaderCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

// Inject writes ctx's trace context into h when tracing is on.
func Inject(ctx context.Context, h propagation.TextMapCarrier) {
	if Tracing() {
		propagator.Inject(ctx, h)
	}
}

// Extract returns ctx with the remote trace context h carries, when
// tracing is on.
func Extract(ctx context.Context, h propagation.TextMapCarrier) context.Context {
	if !Tracing() {
		return ctx
	}
	return propagator.Extract(ctx, h)
}

// StartSpan starts a span of Levqor's tracer; off, it returns ctx and a
// span that records nothing, without allocating.
func StartSpan(ctx context.Context, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !Tracing() {
		return ctx, noSpan
	}
	return Tracer().Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
}

// EndSpan ends span, recording err (if any) as its error status.
func EndSpan(span trace.Span, err error) {
	if !span.IsRecording() {
		return
	}
	if err != nil {
		msg := Redact(err.Error())
		span.RecordError(errors.New(msg))
		span.SetStatus(codes.Error, msg)
	}
	span.End()
}

// TraceID is the trace id of ctx's span, "" when there is none.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

// StartTracing sets tracing up for process (the default service name,
// "levqor-ingest" for instance) from the OTEL_* variables getenv reads:
//
//   - OTEL_SDK_DISABLED=true, or OTEL_TRACES_EXPORTER=none: off;
//   - OTEL_TRACES_EXPORTER=otlp, or unset with OTEL_EXPORTER_OTLP_ENDPOINT
//     or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set: spans are exported over
//     OTLP/HTTP (http/protobuf, the only protocol Levqor speaks; the
//     exporter reads its endpoint, headers and timeout from the standard
//     variables); unset otherwise: off;
//   - OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES describe the
//     process; OTEL_TRACES_SAMPLER(_ARG) and OTEL_BSP_* are read by the
//     SDK.
//
// The returned stop flushes what is buffered; call it before exiting.
func StartTracing(ctx context.Context, process string, getenv func(string) string) (stop func(context.Context) error, err error) {
	none := func(context.Context) error { return nil }
	exporter := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))
	endpoint := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") + getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	switch {
	case strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true"), exporter == "none":
		return none, nil
	case exporter == "" && endpoint == "":
		return none, nil
	case exporter != "" && exporter != "otlp":
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER: %q: Levqor exports traces with otlp (or none)", exporter)
	}
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := strings.TrimSpace(getenv(k)); p != "" && p != "http/protobuf" {
			return nil, fmt.Errorf("%s: %q: Levqor speaks http/protobuf (the collector's port 4318)", k, p)
		}
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: the OTLP exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", process)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing: OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	Use(tp)
	return func(ctx context.Context) error {
		tracingOn.Store(false)
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return tp.Shutdown(ctx)
	}, nil
}

// Use makes tp the provider of Levqor's spans and turns tracing on: for
// StartTracing, and for tests that record spans in memory. Use(nil) turns
// tracing off again.
func Use(tp trace.TracerProvider) {
	if tp == nil {
		tracingOn.Store(false)
		otel.SetTracerProvider(noop.NewTracerProvider())
		tracer.Store(nil)
		return
	}
	otel.SetTracerProvider(tp)
	t := tp.Tracer(instrumentation)
	tracer.Store(&t)
	otel.SetTextMapPropagator(propagator)
	tracingOn.Store(true)
}
