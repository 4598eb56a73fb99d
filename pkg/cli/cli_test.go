package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/cli"
	"github.com/levqor/levqor/pkg/service"
)

func getenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

type devRun struct {
	info   service.DevInfo
	cancel context.CancelFunc
	done   chan error
	out    *bytes.Buffer
}

func startDev(t *testing.T, env map[string]string) *devRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan service.DevInfo, 1)
	d := &devRun{cancel: cancel, done: make(chan error, 1), out: &bytes.Buffer{}}
	go func() {
		d.done <- cli.RunWith(ctx, []string{"dev"}, d.out, &bytes.Buffer{}, cli.Options{
			Getenv:   getenv(env),
			DevReady: func(i service.DevInfo) { ready <- i },
		})
	}()
	select {
	case d.info = <-ready:
	case err := <-d.done:
		t.Fatalf("dev mode exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("dev mode did not start in 30s")
	}
	t.Cleanup(func() { d.stop(t) })
	return d
}

// stop sends the equivalent of Ctrl-C and returns how long shutdown took.
func (d *devRun) stop(t *testing.T) time.Duration {
	t.Helper()
	if d.cancel == nil {
		return 0
	}
	start := time.Now()
	d.cancel()
	d.cancel = nil
	select {
	case err := <-d.done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("dev mode did not stop in 20s")
	}
	return time.Since(start)
}

func TestDevModeEndToEnd(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"LEVQOR_DATA_DIR":      t.TempDir(),
		"LEVQOR_HTTP_ADDR":     "127.0.0.1:0",
		"LEVQOR_DEV_NATS_ADDR": "127.0.0.1:0",
		"LEVQOR_LOG_LEVEL":     "warn",
	}
	d := startDev(t, env)
	require.Contains(t, d.out.String(), "STRIPE_WEBHOOK_SECRET=whsec_")
	require.Contains(t, d.out.String(), d.info.WebhookURL)

	// The README's loop: send a signed test event with no secret given; it
	// is found in the data dir.
	var out bytes.Buffer
	err := cli.RunWith(context.Background(), []string{"webhook", "send", "customer.subscription.created", "--url", d.info.WebhookURL}, &out, &bytes.Buffer{}, cli.Options{Getenv: getenv(env)})
	require.NoError(t, err, out.String())
	id := regexp.MustCompile(`evt_[A-Za-z0-9]+`).FindString(out.String())
	require.NotEmpty(t, id, out.String())
	require.Contains(t, out.String(), "200")

	waitProcessed(t, d.info, id)

	// From another directory, naming only the data directory: the running
	// dev mode's URL and secret are found (dev.json), nothing is invented.
	out.Reset()
	err = cli.RunWith(context.Background(), []string{"webhook", "send", "invoice.paid", "--json"}, &out, &bytes.Buffer{},
		cli.Options{Getenv: getenv(map[string]string{"LEVQOR_DATA_DIR": env["LEVQOR_DATA_DIR"]})})
	require.NoError(t, err, out.String())
	var sent struct {
		EventID string `json:"event_id"`
		Status  int    `json:"status"`
		Body    struct {
			Received bool `json:"received"`
		} `json:"body"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &sent), out.String())
	require.Equal(t, http.StatusOK, sent.Status, "signed with dev mode's own secret and sent to its port")
	require.True(t, sent.Body.Received)
	require.True(t, strings.HasPrefix(sent.EventID, "evt_"))

	took := d.stop(t)
	t.Logf("dev mode stopped in %s", took)
	require.Less(t, took, 10*time.Second, "Ctrl-C shuts everything down within seconds")

	// State and secrets survive a restart.
	d2 := startDev(t, env)
	require.Equal(t, d.info.WebhookSecret, d2.info.WebhookSecret)
	require.Equal(t, d.info.AdminToken, d2.info.AdminToken)
	waitProcessed(t, d2.info, id)
}

func waitProcessed(t *testing.T, info service.DevInfo, id string) {
	t.Helper()
	require.Eventually(t, func() bool {
		req, _ := http.NewRequest(http.MethodGet, info.IngestURL+"/admin/stripe-events/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+info.AdminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var v struct {
			Consumers []struct{ Consumer, State string }
		}
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&v) != nil {
			return false
		}
		return len(v.Consumers) == 1 && v.Consumers[0].State == "processed"
	}, 15*time.Second, 50*time.Millisecond, "event %s recorded by billing-stripe", id)
}

func TestDevModeSecretsFromEnvironmentWin(t *testing.T) {
	t.Parallel()
	d := startDev(t, map[string]string{
		"LEVQOR_DATA_DIR":       t.TempDir(),
		"LEVQOR_HTTP_ADDR":      "127.0.0.1:0",
		"LEVQOR_DEV_NATS_ADDR":  "127.0.0.1:0",
		"LEVQOR_LOG_LEVEL":      "warn",
		"STRIPE_WEBHOOK_SECRET": "whsec_from_env",
		"LEVQOR_ADMIN_TOKEN":    "token-from-the-environment",
	})
	require.Equal(t, "whsec_from_env", d.info.WebhookSecret)
	require.Equal(t, "token-from-the-environment", d.info.AdminToken)
}

func TestUsageErrorsExitTwo(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	require.Equal(t, 2, cli.Main(context.Background(), []string{"frobnicate"}, &out, &errOut))
	require.Contains(t, errOut.String(), `unknown command "frobnicate"`)
	require.Equal(t, 2, cli.Main(context.Background(), nil, &out, &errOut))
	err := cli.Run(context.Background(), []string{"webhook", "send", "not.a.type"}, &out, &errOut)
	require.True(t, errors.Is(err, cli.ErrUsage))
	require.ErrorContains(t, err, "customer.subscription.created", "the error lists the known types")
}

func TestProductionProcessesNameMissingConfiguration(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"ingest", "workers", "scheduler", "migrate"} {
		t.Run(cmd, func(t *testing.T) {
			err := cli.RunWith(context.Background(), []string{cmd}, &bytes.Buffer{}, &bytes.Buffer{}, cli.Options{Getenv: getenv(nil)})
			require.Error(t, err)
			if cmd == "migrate" {
				require.ErrorContains(t, err, "LEVQOR_DATABASE_URL")
			} else {
				require.ErrorContains(t, err, "LEVQOR_NATS_URL")
			}
		})
	}
	err := cli.RunWith(context.Background(), []string{"workers", "--workers", "billing,nope"}, &bytes.Buffer{}, &bytes.Buffer{}, cli.Options{Getenv: getenv(map[string]string{
		"LEVQOR_NATS_URL": "nats://127.0.0.1:1", "LEVQOR_DATABASE_URL": "sqlite:" + t.TempDir() + "/x.db", "LEVQOR_BUS_KEY": "abababababababababababababababababababababababababababababababab", "LEVQOR_MASTER_KEYS": "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
	})})
	require.ErrorContains(t, err, `unknown worker "nope"`)
}

func TestProbe(t *testing.T) {
	t.Parallel()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ok.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer bad.Close()
	require.Equal(t, 0, cli.Main(context.Background(), []string{"probe", ok.URL}, &bytes.Buffer{}, &bytes.Buffer{}))
	require.Equal(t, 1, cli.Main(context.Background(), []string{"probe", bad.URL}, &bytes.Buffer{}, &bytes.Buffer{}))
}

func TestWebhookSendNeverInventsASecret(t *testing.T) {
	t.Parallel()
	empty := t.TempDir()
	err := cli.RunWith(context.Background(), []string{"webhook", "send", "invoice.paid", "--url", "http://127.0.0.1:1/webhooks/stripe"},
		&bytes.Buffer{}, &bytes.Buffer{}, cli.Options{Getenv: getenv(map[string]string{"LEVQOR_DATA_DIR": empty})})
	require.Error(t, err)
	require.Contains(t, err.Error(), "start dev mode", "the error says what to do")
	entries, err := os.ReadDir(empty)
	require.NoError(t, err)
	require.Empty(t, entries, "no secret was generated in a data directory dev mode never used")
}
