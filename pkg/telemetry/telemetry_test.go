package telemetry_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/telemetry"
)

func TestReadinessChecksAreExportedAsMetrics(t *testing.T) {
	t.Parallel()
	dbDown := true
	checks := []telemetry.Check{
		{Name: "nats", Fn: func(context.Context) error { return nil }},
		{Name: "database", Fn: func(context.Context) error {
			if dbDown {
				return errors.New("connection refused")
			}
			return nil
		}},
	}
	reg := telemetry.NewRegistry()
	mux := http.NewServeMux()
	telemetry.Mount(mux, reg, checks...)
	telemetry.Mount(http.NewServeMux(), reg, checks...) // a second listener on the same registry
	get := getter(mux)

	code, body := get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "connection refused")
	_, metrics := get("/metrics")
	require.Contains(t, metrics, `levqor_check_up{check="nats"} 1`)
	require.Contains(t, metrics, `levqor_check_up{check="database"} 0`, "an alert sees the database down")

	dbDown = false
	_, metrics = get("/metrics")
	require.Contains(t, metrics, `levqor_check_up{check="database"} 1`, "evaluated at scrape time")
}

func TestADegradingCheckKeepsTheProcessReady(t *testing.T) {
	t.Parallel()
	silent := true
	reg := telemetry.NewRegistry()
	mux := http.NewServeMux()
	telemetry.Mount(mux, reg,
		telemetry.Check{Name: "nats", Fn: func(context.Context) error { return nil }},
		telemetry.Check{Name: "ticks", Degrades: true, Fn: func(context.Context) error {
			if silent {
				return errors.New("no tick for 4m0s")
			}
			return nil
		}})
	get := getter(mux)
	code, body := get("/readyz")
	require.Equal(t, http.StatusOK, code, "nothing restarts a worker because the scheduler stopped")
	require.JSONEq(t, `{"ready":true,"degraded":true,"checks":{"nats":"ok","ticks":"degraded: no tick for 4m0s"}}`, body)
	_, metrics := get("/metrics")
	require.Contains(t, metrics, `levqor_check_up{check="ticks"} 0`)

	silent = false
	code, body = get("/readyz")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"ready":true,"checks":{"nats":"ok","ticks":"ok"}}`, body)
}

// getter serves GET requests to mux and returns status and body.
func getter(mux *http.ServeMux) func(path string) (int, string) {
	return func(path string) (int, string) {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
}
