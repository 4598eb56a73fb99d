package bus

import (
	"context"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/levqor/levqor/pkg/telemetry"
)

// Spans of the router, while tracing is on (telemetry.Tracing). A
// delivery's span, "process <consumer>", continues the trace its message
// carries (ingest's request, or the handler whose outbox wrote it), so one
// Stripe event is one trace from the webhook to every handler it leads to.
// A batch is one span with a link to each message's trace; a batch of one
// is part of its message's trace.

func messageAttributes(consumer string, m *Message) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.destination.name", m.Subject),
		attribute.String("messaging.consumer.group.name", consumer),
		attribute.String("messaging.message.id", m.ID()),
		attribute.String("levqor.stream_seq", strconv.FormatUint(m.StreamSeq, 10)),
		attribute.Int64("levqor.deliveries", int64(m.Deliveries)),
	}
}

// startConsumerSpan starts m's span under the trace its headers carry.
func startConsumerSpan(ctx context.Context, consumer string, m *Message) (context.Context, trace.Span) {
	ctx = telemetry.Extract(ctx, telemetry.HeaderCarrier(m.Header))
	return telemetry.StartSpan(ctx, "process "+consumer, trace.SpanKindConsumer, messageAttributes(consumer, m)...)
}

// startBatchSpan starts the span of a batch of msgs.
func startBatchSpan(ctx context.Context, consumer string, msgs []*Message) (context.Context, trace.Span) {
	if len(msgs) == 1 {
		ctx = telemetry.Extract(ctx, telemetry.HeaderCarrier(msgs[0].Header))
	}
	links := make([]trace.Link, 0, len(msgs))
	for _, m := range msgs {
		sc := trace.SpanContextFromContext(telemetry.Extract(context.Background(), telemetry.HeaderCarrier(m.Header)))
		if sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	return telemetry.Tracer().Start(ctx, "process batch "+consumer, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(links...),
		trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.consumer.group.name", consumer),
			attribute.Int("messaging.batch.message_count", len(msgs))))
}
