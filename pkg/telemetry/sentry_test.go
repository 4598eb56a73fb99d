package telemetry_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/telemetry"
)

// sentryServer is a Sentry-compatible endpoint on loopback that keeps the
// envelopes it receives.
type sentryServer struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies []string
}

func startSentry(t *testing.T) *sentryServer {
	s := &sentryServer{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.bodies = append(s.bodies, string(b))
		s.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sentryServer) dsn() string { return "http://public@" + s.srv.Listener.Addr().String() + "/42" }

func (s *sentryServer) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...)
}

func TestErrorsAndPanicsAreReportedWithoutSecrets(t *testing.T) {
	t.Parallel()
	srv := startSentry(t)
	log := logrus.New()
	log.SetOutput(io.Discard)
	flush, err := telemetry.ReportErrors(log, srv.dsn(), "test", "levqor@test")
	require.NoError(t, err)

	log.WithFields(logrus.Fields{"correlation_id": "corr-1", "dsn": "postgres://app:hunter2@db:5432/levqor"}).
		WithError(errors.New("checking lvq_abc123secret failed: Bearer sk_test_zzz")).Error("cannot check API key")
	log.Warn("a warning is not an error")
	handler := bus.Recoverer(func(context.Context, *bus.Message) error { panic("nil map in the billing handler") })
	require.ErrorContains(t, handler(bus.WithLogger(context.Background(), log.WithField("consumer", "billing-stripe")), &bus.Message{}), "handler panicked")
	flush()

	// The transport sends in the background: under load a report can land
	// just after Flush has returned.
	require.Eventually(t, func() bool { return len(srv.received()) >= 2 }, 10*time.Second, 20*time.Millisecond,
		"the error and the panic are reported")
	time.Sleep(100 * time.Millisecond) // and nothing more: the warning is not
	got := strings.Join(srv.received(), "\n")
	require.Len(t, srv.received(), 2, "the error and the panic, not the warning")
	for _, want := range []string{"cannot check API key", "corr-1", "postgres://app:[redacted]@db:5432/levqor", "lvq_[redacted]",
		"handler panicked", "nil map in the billing handler", "billing-stripe", `"environment":"test"`} {
		require.Contains(t, got, want)
	}
	for _, secret := range []string{"hunter2", "abc123secret", "sk_test_zzz", "a warning is not an error"} {
		require.NotContains(t, got, secret)
	}
}

func TestWithoutADSNNothingIsReported(t *testing.T) {
	t.Parallel()
	log := logrus.New()
	flush, err := telemetry.ReportErrors(log, "", "", "")
	require.NoError(t, err)
	flush()
	require.Empty(t, log.Hooks)
	_, err = telemetry.ReportErrors(log, "not a dsn", "", "")
	require.ErrorContains(t, err, "SENTRY_DSN")
}
