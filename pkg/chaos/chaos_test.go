package chaos_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/bus/bustest"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/loadgen"
	"github.com/levqor/levqor/pkg/netfault"
	"github.com/levqor/levqor/pkg/service"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/stripesim"
	"github.com/levqor/levqor/pkg/telemetry"
)

const chaosSecret = "whsec_chaos"

// chaosBusKey is the LEVQOR_BUS_KEY of ingest and the worker.
var chaosBusKey = strings.Repeat("ab", 32)

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
		return v
	}
	return def
}

// buildWorkers compiles cmd/workers so the test can run it as a real
// process and kill it with SIGKILL.
func buildWorkers(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	require.NoError(t, err)
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(t.TempDir(), "workers")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/workers")
	cmd.Dir = root
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, string(b))
	return bin
}

// workerEnvOf is the environment of a workers process on natsURL and
// dbURL, logging warnings only, with the chaos tests' keys, and extra.
func workerEnvOf(natsURL, dbURL string, extra ...string) []string {
	return append([]string{
		"LEVQOR_NATS_URL=" + natsURL,
		"LEVQOR_DATABASE_URL=" + dbURL,
		"LEVQOR_ADMIN_ADDR=127.0.0.1:0",
		"LEVQOR_LOG_LEVEL=warn",
		"LEVQOR_BUS_KEY=" + chaosBusKey,
		"LEVQOR_MASTER_KEYS=" + strings.Repeat("cd", 32),
	}, extra...)
}

// startLoad sends events signed Stripe webhooks to ingest at baseURL at
// rate a second (50 accounts, 5% duplicates, 5% out of order) and reports
// on the channel when done.
func startLoad(t *testing.T, baseURL string, events int, rate float64, seed uint64) <-chan loadgen.Report {
	done := make(chan loadgen.Report, 1)
	go func() {
		rep, err := loadgen.Run(context.Background(), loadgen.Config{
			URL: baseURL + "/webhooks/stripe", Secret: chaosSecret, Rate: rate, Connections: 8,
			Count: events, Accounts: 50, Duplicates: 0.05, OutOfOrder: 0.05, Seed: seed,
		}, nil)
		if err != nil {
			t.Errorf("load: %v", err)
		}
		done <- rep
	}()
	return done
}

type workerProc struct {
	cmd *exec.Cmd
	log *lockedBuffer
}

func startWorker(t *testing.T, bin string, env []string) *workerProc {
	t.Helper()
	w := &workerProc{cmd: exec.Command(bin), log: &lockedBuffer{}}
	w.cmd.Env = append(os.Environ(), env...)
	w.cmd.Stdout = io.Discard
	w.cmd.Stderr = w.log
	require.NoError(t, w.cmd.Start())
	t.Cleanup(func() {
		if w.cmd.ProcessState == nil {
			_ = w.cmd.Process.Kill()
			_ = w.cmd.Wait()
		}
	})
	return w
}

func TestChaosNothingAcknowledgedIsLostNothingAppliedTwice(t *testing.T) {
	events := envInt("LEVQOR_CHAOS_EVENTS", 2000)
	rate := float64(envInt("LEVQOR_CHAOS_RATE", 400))
	const poison = 10

	nenv := bustest.Start(t)
	pgURL := storetest.PostgresURL(t)
	u, err := url.Parse(pgURL)
	require.NoError(t, err)
	if u.Host == "" {
		t.Skip("the chaos test cuts Postgres with a TCP proxy: TEST_DATABASE_URL must use host:port, not a socket")
	}
	log := logrus.New()
	log.Out = io.Discard
	ctx := context.Background()
	st, err := store.Open(ctx, pgURL, log)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	require.NoError(t, st.Migrate(ctx))

	proxy, err := netfault.Start(u.Host)
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })
	wu := *u
	wu.Host = proxy.Addr()

	bin := buildWorkers(t)
	workerEnv := workerEnvOf(nenv.Server.ClientURL(), wu.String(), "LEVQOR_WORKERS=billing", "LEVQOR_ACK_WAIT=3s", "LEVQOR_MAX_DELIVER=10")
	worker := startWorker(t, bin, workerEnv)

	// Ingest in process, on its own production-style connection.
	cfg, err := config.FromEnv(func(string) string { return "" })
	require.NoError(t, err)
	cfg.WebhookSecrets = []string{chaosSecret}
	cfg.BusKey = chaosBusKey
	nc, js, err := service.ConnectNATS(nenv.Server.ClientURL(), "chaos-ingest", log)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	env := &service.Env{Cfg: cfg, Log: log, Reg: telemetry.NewRegistry(), NC: nc, JS: js, Store: st}
	ing, err := env.Ingest("chaos-operator-token-0123456789")
	require.NoError(t, err)
	hs := httptest.NewServer(ing.Handler())
	t.Cleanup(hs.Close)

	// Poison: events whose payload id contradicts their dedupe id, as a
	// broken replay tool would publish them. No retry can fix them.
	pub := bus.NewPublisher(nenv.JS, nenv.Topo)
	busKey, err := keys.ParseBusKey(chaosBusKey)
	require.NoError(t, err)
	poisonIDs := map[string]bool{}
	for i := 0; i < poison; i++ {
		b, err := stripesim.NewEvent("invoice.paid", stripesim.EventOptions{})
		require.NoError(t, err)
		id := fmt.Sprintf("evt_poison%d", i)
		poisonIDs[id] = true
		// Proved as ingest proves: poison for its ids, not for want of a proof.
		_, err = pub.Publish(ctx, nenv.Topo.Subject(bus.Stripe, "invoice.paid"), id, nats.Header{keys.HeaderBusProof: {busKey.ProveMessage(b)}}, b)
		require.NoError(t, err)
	}

	loadDone := startLoad(t, hs.URL, events, rate, 42)

	span := time.Duration(float64(events) / rate * float64(time.Second))
	step := span / 6
	faults := []string{}
	sleep := func() { time.Sleep(step) }
	sleep()
	require.NoError(t, nenv.Server.Restart())
	faults = append(faults, "NATS restarted")
	sleep()
	proxy.Block()
	faults = append(faults, "Postgres unreachable")
	time.Sleep(max(step, 3*time.Second))
	proxy.Unblock()
	sleep()
	require.NoError(t, worker.cmd.Process.Signal(syscall.SIGKILL))
	_ = worker.cmd.Wait()
	worker = startWorker(t, bin, workerEnv)
	faults = append(faults, "worker SIGKILLed and restarted")
	sleep()
	require.NoError(t, nenv.Server.Restart())
	faults = append(faults, "NATS restarted again")

	rep := <-loadDone
	e2e, err := loadgen.WaitCommitted(ctx, st, rep.Unique, 2*time.Minute)
	require.NoError(t, err)

	// Everything acknowledged is in the ledger.
	lost := e2e.Expected - e2e.Committed
	var ledgerRows, inboxRows int64
	require.NoError(t, st.DB().GetContext(ctx, &ledgerRows, `SELECT count(*) FROM stripe_events`))
	require.NoError(t, st.DB().GetContext(ctx, &inboxRows, st.DB().Rebind(`SELECT count(*) FROM inbox WHERE consumer = ?`), billing.ConsumerStripe))
	var poisonInLedger int64
	require.NoError(t, st.DB().GetContext(ctx, &poisonInLedger, `SELECT count(*) FROM stripe_events WHERE id LIKE 'evt_poison%'`))

	// Poison is in the DLQ and nowhere else.
	require.Eventually(t, func() bool { return nenv.StreamMsgs(t, bus.DLQ) >= poison }, 30*time.Second, 100*time.Millisecond)
	dlq := nenv.Messages(t, bus.DLQ)
	dead := 0
	for _, m := range dlq {
		require.True(t, poisonIDs[m.Header.Get(bus.HeaderOriginalMsgID)], "only poison is dead-lettered, got %s: %s", m.Header.Get(bus.HeaderOriginalMsgID), m.Header.Get(bus.HeaderDlqReason))
		dead++
	}

	status503 := rep.Status["503"]
	report := fmt.Sprintf(`chaos: faults: %s
chaos: sent %d, acknowledged %d (%d as duplicates), refused 503 %d, transport errors %d
chaos: unique acknowledged %d, in ledger %d, inbox rows %d (one effect per event), ledger rows %d
chaos: poison %d, dead-lettered %d, poison in ledger %d, lost %d
chaos: end-to-end p50 %s p99 %s max %s`,
		strings.Join(faults, "; "), rep.Sent, rep.Accepted, rep.Duplicates, status503, rep.Errors,
		e2e.Expected, e2e.Committed, inboxRows, ledgerRows, poison, dead, poisonInLedger, lost,
		e2e.Latency.P50, e2e.Latency.P99, e2e.Latency.Max)
	t.Log("\n" + report)
	if lost != 0 {
		t.Logf("worker log:\n%s", worker.log.String())
	}
	require.Zero(t, lost, "every acknowledged event is in the ledger")
	require.Equal(t, ledgerRows, inboxRows, "each recorded event was applied once")
	require.GreaterOrEqual(t, ledgerRows, int64(e2e.Expected), "the ledger holds at least what was acknowledged (a 503 may still have been stored)")
	require.Zero(t, poisonInLedger)
	require.Equal(t, poison, dead)
	require.Greater(t, rep.Accepted, events/2, "most of the load got through the faults")

	// A clean stop of the restarted worker.
	require.NoError(t, worker.cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- worker.cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, worker.log.String())
	case <-time.After(20 * time.Second):
		t.Fatal("worker did not stop within 20s of SIGTERM")
	}
}
