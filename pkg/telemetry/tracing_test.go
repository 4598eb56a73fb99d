package telemetry_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/telemetry"
)

// TestTracingIsOnlyWhatTheOTELVariablesAsk: off unless an exporter or an
// endpoint is named; a protocol or exporter Levqor does not speak is
// refused, naming the variable.
func TestTracingIsOnlyWhatTheOTELVariablesAsk(t *testing.T) {
	for name, tc := range map[string]struct {
		env  map[string]string
		want string // error; "" for none
	}{
		"Unset":            {env: map[string]string{}},
		"Disabled":         {env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}},
		"ExporterNone":     {env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}},
		"Zipkin":           {env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, want: "OTEL_TRACES_EXPORTER"},
		"GRPC":             {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, want: "OTEL_EXPORTER_OTLP_PROTOCOL"},
		"TracesProtocol":   {env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, want: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
		"EndpointIsEnough": {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}},
	} {
		t.Run(name, func(t *testing.T) {
			stop, err := telemetry.StartTracing(t.Context(), "levqor-test", func(k string) string { return tc.env[k] })
			if tc.want != "" {
				require.ErrorContains(t, err, tc.want)
				require.False(t, telemetry.Tracing())
				return
			}
			require.NoError(t, err)
			on := name == "EndpointIsEnough"
			require.Equal(t, on, telemetry.Tracing(), "tracing on only when an exporter is asked for")
			require.NoError(t, stop(t.Context()))
			require.False(t, telemetry.Tracing(), "stopped")
		})
	}
}
