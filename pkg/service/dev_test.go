package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/service"
	"github.com/levqor/levqor/pkg/store"
)

// devRun is a dev mode started by a test.
type devRun struct {
	info service.DevInfo
	out  *bytes.Buffer
	stop func(t testing.TB)
}

// devVars are the settings of a dev mode on free ports in its own data
// dir, with no Stripe settings at all.
func devVars(dataDir string) map[string]string {
	return map[string]string{
		"LEVQOR_DATA_DIR":      dataDir,
		"LEVQOR_HTTP_ADDR":     "127.0.0.1:0",
		"LEVQOR_DEV_NATS_ADDR": "127.0.0.1:0",
	}
}

func runDev(t testing.TB, vars map[string]string) (*devRun, error) {
	t.Helper()
	cfg, err := config.FromEnv(func(k string) string { return vars[k] })
	require.NoError(t, err)
	log := logrus.New()
	log.SetOutput(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan service.DevInfo, 1)
	done := make(chan error, 1)
	d := &devRun{out: &bytes.Buffer{}}
	go func() {
		done <- service.RunDev(ctx, cfg, log, d.out, service.DevOptions{Ready: func(i service.DevInfo) { ready <- i }})
	}()
	stopped := false
	d.stop = func(t testing.TB) {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Error("dev mode did not stop")
		}
	}
	select {
	case d.info = <-ready:
		t.Cleanup(func() { d.stop(t) })
		return d, nil
	case err := <-done:
		cancel()
		return nil, err
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("dev mode did not start")
		return nil, nil
	}
}

func TestDevModeRefusesWhatIsTaken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := runDev(t, devVars(dir))
	require.NoError(t, err)

	t.Run("DataDir", func(t *testing.T) {
		start := time.Now()
		_, err := runDev(t, devVars(dir))
		require.Error(t, err)
		require.Less(t, time.Since(start), 3*time.Second)
		require.ErrorContains(t, err, dir+" is in use by another levqor dev (process "+strconv.Itoa(os.Getpid())+" holds levqor.lock)")
		require.ErrorContains(t, err, "LEVQOR_DATA_DIR")
	})
	t.Run("NATSAddr", func(t *testing.T) {
		vars := devVars(t.TempDir())
		vars["LEVQOR_DEV_NATS_ADDR"] = strings.TrimPrefix(first.info.NATSURL, "nats://")
		start := time.Now()
		_, err := runDev(t, vars)
		require.Error(t, err)
		require.Less(t, time.Since(start), 3*time.Second, "a taken port fails at once, not after a 10 s timeout")
		require.ErrorContains(t, err, "LEVQOR_DEV_NATS_ADDR="+vars["LEVQOR_DEV_NATS_ADDR"]+": address already in use")
	})
	t.Run("HTTPAddr", func(t *testing.T) {
		vars := devVars(t.TempDir())
		vars["LEVQOR_HTTP_ADDR"] = strings.TrimPrefix(first.info.IngestURL, "http://")
		_, err := runDev(t, vars)
		require.ErrorContains(t, err, "LEVQOR_HTTP_ADDR="+vars["LEVQOR_HTTP_ADDR"]+": address already in use")
	})
	t.Run("AdminAddrOfWorkers", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		cfg, err := config.FromEnv(func(k string) string {
			return map[string]string{
				"LEVQOR_NATS_URL": first.info.NATSURL, "LEVQOR_DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "w.db"), "LEVQOR_BUS_KEY": "abababababababababababababababababababababababababababababababab", "LEVQOR_MASTER_KEYS": "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
				"LEVQOR_ADMIN_ADDR": ln.Addr().String(), "LEVQOR_WORKERS": "housekeeping",
			}[k]
		})
		require.NoError(t, err)
		err = service.RunWorkers(context.Background(), cfg, logrus.New())
		require.ErrorContains(t, err, "LEVQOR_ADMIN_ADDR="+ln.Addr().String()+": address already in use")
	})
}

func TestFindDev(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dataDir := filepath.Join(root, ".levqor")
	below := filepath.Join(root, "src", "deep")
	require.NoError(t, os.MkdirAll(below, 0o700))
	noEnv := func(string) string { return "" }

	d, err := runDev(t, devVars(dataDir))
	require.NoError(t, err)

	for name, start := range map[string]string{"InTheDirectory": root, "BelowIt": below} {
		inst, err := service.FindDev(start, noEnv)
		require.NoError(t, err, name)
		require.Equal(t, dataDir, inst.DataDir, name)
		require.True(t, inst.Running, name)
		require.Equal(t, os.Getpid(), inst.PID)
		require.Equal(t, d.info.IngestURL, inst.IngestURL)
		require.Equal(t, d.info.WebhookURL, inst.WebhookURL)
		require.True(t, inst.StripeStandIn)
		s, err := inst.Secrets()
		require.NoError(t, err)
		require.Equal(t, d.info.WebhookSecret, s.WebhookSecret, "the running dev mode's secret, never a new one")
		require.Equal(t, d.info.AdminToken, s.AdminToken)
	}

	t.Run("FromLEVQOR_DATA_DIR", func(t *testing.T) {
		inst, err := service.FindDev(t.TempDir(), func(k string) string { return map[string]string{"LEVQOR_DATA_DIR": dataDir}[k] })
		require.NoError(t, err)
		require.Equal(t, dataDir, inst.DataDir)
		require.True(t, inst.Running)

		_, err = service.FindDev(root, func(k string) string { return map[string]string{"LEVQOR_DATA_DIR": "nope"}[k] })
		require.ErrorIs(t, err, service.ErrNoDev)
		require.ErrorContains(t, err, "LEVQOR_DATA_DIR=nope")
	})

	t.Run("NoneSaysWhereToRun", func(t *testing.T) {
		empty := t.TempDir()
		for d := filepath.Dir(empty); ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, ".levqor")); err == nil {
				t.Skipf("%s has a .levqor of its own", d)
			}
			if filepath.Dir(d) == d {
				break
			}
		}
		_, err := service.FindDev(empty, noEnv)
		require.ErrorIs(t, err, service.ErrNoDev)
		require.ErrorContains(t, err, "run this in the directory where you ran `go run ./cmd/levqor dev`")
	})

	t.Run("ReadingSecretsNeverCreatesThem", func(t *testing.T) {
		empty := t.TempDir()
		_, err := service.ReadDevSecrets(empty)
		require.ErrorIs(t, err, fs.ErrNotExist)
		require.ErrorContains(t, err, "start dev mode on this data directory first")
		_, err = os.Stat(filepath.Join(empty, service.DevSecretsFile))
		require.ErrorIs(t, err, fs.ErrNotExist)
	})

	d.stop(t)
	inst, err := service.FindDev(below, noEnv)
	require.NoError(t, err)
	require.False(t, inst.Running, "a stopped dev mode is not running")
	require.Empty(t, inst.IngestURL)
	_, err = os.Stat(filepath.Join(dataDir, service.DevInstanceFile))
	require.ErrorIs(t, err, fs.ErrNotExist, "dev.json goes when dev mode stops")
}

// TestDevModeNeedsNoStripe is a newcomer with only Go: no STRIPE_API_KEY,
// no STRIPE_API_BASE, no stripe-mock. Accounts, Checkout and portal
// sessions work against the offline stand-in, also after a restart.
func TestDevModeNeedsNoStripe(t *testing.T) {
	t.Parallel()
	vars := devVars(t.TempDir())
	d, err := runDev(t, vars)
	require.NoError(t, err)
	c := devClient{info: d.info}
	out := d.out.String()
	require.Contains(t, out, "offline stand-in")
	reminder := out[strings.Index(out, "Levqor dev mode is ready"):]
	require.Contains(t, reminder, d.info.IngestURL, "the URLs are reprinted once start-up settles")
	require.Contains(t, reminder, filepath.Join(vars["LEVQOR_DATA_DIR"], service.DevSecretsFile))

	status, body := c.do(t, http.MethodPost, "/v1/accounts?wait=15s", map[string]string{"name": "Ada Backups Ltd", "contact_email": "ops@ada.example"})
	require.Equal(t, http.StatusCreated, status, string(body))
	var created struct{ Result store.Account }
	require.NoError(t, json.Unmarshal(body, &created))
	acc := created.Result.ID
	require.True(t, strings.HasPrefix(created.Result.StripeCustomerID, "cus_"), created.Result.StripeCustomerID)

	status, body = c.do(t, http.MethodPost, "/v1/billing/checkout-sessions?wait=15s", map[string]any{
		"account_id": acc, "items": []map[string]any{{"key": "growth_monthly", "quantity": 1}},
		"success_url": "http://localhost:3000/billing/done", "cancel_url": "http://localhost:3000/billing",
	})
	require.Equal(t, http.StatusCreated, status, string(body))
	var co struct{ Result billing.CheckoutResult }
	require.NoError(t, json.Unmarshal(body, &co))
	require.True(t, strings.HasPrefix(co.Result.ID, "cs_"), co.Result.ID)
	resp, err := http.Get(co.Result.URL)
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(page), "No payment is taken", "the Checkout URL opens and says what it is")

	portal := func(t *testing.T, c devClient) {
		status, body := c.do(t, http.MethodPost, "/v1/billing/portal-sessions?wait=15s", map[string]string{"account_id": acc, "return_url": "http://localhost:3000/account"})
		require.Equal(t, http.StatusCreated, status, string(body))
		var ps struct{ Result billing.PortalResult }
		require.NoError(t, json.Unmarshal(body, &ps))
		require.NotEmpty(t, ps.Result.URL)
	}
	portal(t, c)

	// The stand-in remembers its customers across a restart of dev mode.
	d.stop(t)
	d2, err := runDev(t, vars)
	require.NoError(t, err)
	portal(t, devClient{info: d2.info})
}
