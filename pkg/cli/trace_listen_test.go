package cli_test

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/levqor/levqor/pkg/cli"
)

// lockedBuffer is a bytes.Buffer safe for a writer and a reader at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestTraceListenPrintsATraceAsATree: spans exported over OTLP/HTTP by
// the SDK, as Levqor's processes export them, come out as one tree per
// trace, each span under its parent, once the trace is quiet.
func TestTraceListenPrintsATraceAsATree(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- cli.RunWith(ctx, []string{"trace", "listen", "--addr", "127.0.0.1:0", "--quiet", "300ms"}, &out, &bytes.Buffer{}, cli.Options{})
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	var addr string
	require.Eventually(t, func() bool {
		m := regexp.MustCompile(`listening on http://(\S+)/v1/traces`).FindStringSubmatch(out.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	}, 10*time.Second, 10*time.Millisecond)

	exp, err := otlptracehttp.New(t.Context(), otlptracehttp.WithEndpoint(addr), otlptracehttp.WithInsecure())
	require.NoError(t, err)
	res := resource.NewSchemaless(attribute.String("service.name", "levqor-ingest"))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(res))
	tr := tp.Tracer("test")
	rctx, root := tr.Start(context.Background(), "POST /webhooks/stripe")
	pctx, publish := tr.Start(rctx, "publish levqor.stripe.invoice.paid")
	_, process := tr.Start(pctx, "process billing-stripe")
	process.End()
	publish.End()
	root.End()
	_, other := tr.Start(context.Background(), "GET /v1/accounts")
	other.End()
	require.NoError(t, tp.Shutdown(t.Context()))

	require.Eventually(t, func() bool { return strings.Count(out.String(), "trace ") == 2 }, 10*time.Second, 20*time.Millisecond)
	text := out.String()
	tree := regexp.MustCompile(`(?m)^trace [0-9a-f]{32}: 3 spans, \S+\n` +
		`  POST /webhooks/stripe \[levqor-ingest\] \S+\n` +
		`    publish levqor.stripe.invoice.paid \S+\n` +
		`      process billing-stripe \S+\n`)
	require.Regexp(t, tree, text)
	require.Regexp(t, `(?m)^trace [0-9a-f]{32}: 1 spans, \S+\n  GET /v1/accounts \[levqor-ingest\] \S+\n`, text, "each trace on its own")
}
