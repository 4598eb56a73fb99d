package chaos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/loadgen"
	"github.com/levqor/levqor/pkg/netfault"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/service"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/telemetry"
)

// natsNode is one nats-server process of the test's cluster: a real
// process, so that it can be killed with SIGKILL. Its routes to the other
// nodes go through one proxy per ordered pair, so that the test can cut
// it off from the others while its clients still reach it.
type natsNode struct {
	name                            string
	clientPort, clusterPort, httpPt int
	dir                             string
	cmd                             *exec.Cmd
	log                             *lockedBuffer
	// out are the proxies this node routes to the others through; in
	// are the others' proxies to this node.
	out, in []*netfault.Proxy
}

// lockedBuffer is a process's output, read while the process writes it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (n *natsNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.clientPort) }

func (n *natsNode) start(t *testing.T, bin string) {
	t.Helper()
	n.log = &lockedBuffer{}
	n.cmd = exec.Command(bin, "-c", filepath.Join(n.dir, "node.conf"))
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	require.NoError(t, n.cmd.Start())
}

// kill ends the node with sig and waits for the process.
func (n *natsNode) kill(sig syscall.Signal) {
	if n.cmd == nil || n.cmd.ProcessState != nil {
		return
	}
	_ = n.cmd.Process.Signal(sig)
	_ = n.cmd.Wait()
}

// healthy reports the node's /healthz: JetStream up and, unless jsOnly,
// every stream and consumer it holds caught up.
func (n *natsNode) healthy(jsOnly bool) bool {
	u := fmt.Sprintf("http://127.0.0.1:%d/healthz", n.httpPt)
	if jsOnly {
		u += "?js-enabled-only=true"
	}
	resp, err := http.Get(u)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (n *natsNode) routes() int {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/routez", n.httpPt))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var rz struct {
		NumRoutes int `json:"num_routes"`
	}
	if json.NewDecoder(resp.Body).Decode(&rz) != nil {
		return -1
	}
	return rz.NumRoutes
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// buildNATSServer compiles the nats-server of go.mod's module version.
func buildNATSServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nats-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, string(b))
	return bin
}

// startCluster starts three nodes with `sync_interval: always`, as
// deploy/nats/cluster.conf runs them, and waits until they serve
// JetStream.
func startCluster(t *testing.T, bin string) []*natsNode {
	t.Helper()
	nodes := make([]*natsNode, 3)
	for i := range nodes {
		nodes[i] = &natsNode{name: fmt.Sprintf("n%d", i+1), clientPort: freePort(t), clusterPort: freePort(t), httpPt: freePort(t), dir: t.TempDir()}
	}
	for _, n := range nodes {
		var routes []string
		for _, o := range nodes {
			if o == n {
				continue
			}
			p, err := netfault.Start(fmt.Sprintf("127.0.0.1:%d", o.clusterPort))
			require.NoError(t, err)
			t.Cleanup(func() { p.Close() })
			n.out, o.in = append(n.out, p), append(o.in, p)
			routes = append(routes, "nats-route://"+p.Addr())
		}
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
max_payload: 8MB
jetstream { store_dir: %q, sync_interval: always }
cluster {
  name: levqor
  listen: 127.0.0.1:%d
  # Only the routes through the test's proxies: a node must not learn
  # and dial another's real address, which a partition would not cut.
  advertise: "127.0.0.1:1"
  routes: [%s]
}
`, n.name, n.clientPort, n.httpPt, filepath.Join(n.dir, "js"), n.clusterPort, strings.Join(routes, ", "))
		require.NoError(t, os.WriteFile(filepath.Join(n.dir, "node.conf"), []byte(conf), 0o600))
	}
	for _, n := range nodes {
		n.start(t, bin)
		t.Cleanup(func() { n.kill(syscall.SIGKILL) })
	}
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			if !n.healthy(false) {
				return false
			}
		}
		return true
	}, 120*time.Second, 100*time.Millisecond, "the cluster serves JetStream")
	return nodes
}

// streamLeader is the node leading stream name.
func streamLeader(ctx context.Context, js jetstream.JetStream, nodes []*natsNode, name string) (*natsNode, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.Cluster == nil {
		return nil, fmt.Errorf("stream %s has no cluster info", name)
	}
	for _, n := range nodes {
		if n.name == info.Cluster.Leader {
			return n, nil
		}
	}
	return nil, fmt.Errorf("stream %s: no leader (%q)", name, info.Cluster.Leader)
}

// TestClusterChaosNothingAcknowledgedIsLost runs ingest, a billing worker
// and a scheduler against three NATS servers with R3 streams under a
// sustained signed webhook load, and meanwhile SIGKILLs the STRIPE
// stream's leader, cuts one node off from the others, restarts every node
// one after another and SIGKILLs the worker. Then every acknowledged event
// is in the ledger exactly once, every tick slot is stored once, and no
// consumer is left with work pending. The counts are in
// docs/reliability.md; LEVQOR_CHAOS_CLUSTER_EVENTS and _RATE size the run.
func TestClusterChaosNothingAcknowledgedIsLost(t *testing.T) {
	events := envInt("LEVQOR_CHAOS_CLUSTER_EVENTS", 3000)
	rate := float64(envInt("LEVQOR_CHAOS_CLUSTER_RATE", 150))

	pgURL := storetest.PostgresURL(t)
	natsBin := buildNATSServer(t)
	workersBin := buildWorkers(t)
	nodes := startCluster(t, natsBin)
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.url())
	}
	natsURL := strings.Join(urls, ",")

	log := logrus.New()
	log.Out = io.Discard
	ctx := context.Background()
	st, err := store.Open(ctx, pgURL, log)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	require.NoError(t, st.Migrate(ctx))

	cfg, err := config.FromEnv(func(k string) string {
		return map[string]string{
			"LEVQOR_STREAM_REPLICAS": "3",
			// The scheduler ticks one job every second, so that slots
			// fall inside every fault.
			"LEVQOR_SCHEDULE": "housekeeping.watch=* * * * * *",
		}[k]
	})
	require.NoError(t, err)
	cfg.WebhookSecrets = []string{chaosSecret}
	cfg.BusKey = chaosBusKey

	// The test's own view, to find leaders and read the streams.
	onc, ojs, err := service.ConnectNATS(natsURL, "chaos-observer", log)
	require.NoError(t, err)
	t.Cleanup(onc.Close)
	require.Eventually(t, func() bool {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return cfg.Topology.EnsureStreams(cctx, ojs) == nil
	}, 60*time.Second, 500*time.Millisecond, "R3 streams created")

	workerEnv := workerEnvOf(natsURL, pgURL, "LEVQOR_STREAM_REPLICAS=3", "LEVQOR_WORKERS=billing,support", "LEVQOR_ACK_WAIT=5s", "LEVQOR_MAX_DELIVER=20")
	worker := startWorker(t, workersBin, workerEnv)

	// Ingest and the scheduler in process, each on its own connection to
	// all three nodes.
	inc, ijs, err := service.ConnectNATS(natsURL, "chaos-ingest", log)
	require.NoError(t, err)
	t.Cleanup(inc.Close)
	ing, err := (&service.Env{Cfg: cfg, Log: log, Reg: telemetry.NewRegistry(), NC: inc, JS: ijs, Store: st}).Ingest("chaos-operator-token-0123456789")
	require.NoError(t, err)
	hs := httptest.NewServer(ing.Handler())
	t.Cleanup(hs.Close)
	snc, sjs, err := service.ConnectNATS(natsURL, "chaos-scheduler", log)
	require.NoError(t, err)
	t.Cleanup(snc.Close)
	sched, err := (&service.Env{Cfg: cfg, Log: log, Reg: telemetry.NewRegistry(), NC: snc, JS: sjs}).Scheduler()
	require.NoError(t, err)
	sctx, stopSched := context.WithCancel(ctx)
	schedDone := make(chan struct{})
	go func() { defer close(schedDone); _ = sched.Run(sctx) }()
	t.Cleanup(func() { stopSched(); <-schedDone })

	loadDone := startLoad(t, hs.URL, events, rate, 7)
	// Commands beside the webhooks: an account's API key opens tickets,
	// five a second, each with its own Idempotency-Key, retried with the
	// same key on 503 as a client does.
	cmds := startCommandLoad(t, st, hs.URL)

	span := time.Duration(float64(events) / rate * float64(time.Second))
	step := span / 8
	var faults []string
	var mu sync.Mutex
	fault := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		faults = append(faults, s)
		t.Logf("%s chaos: %s", time.Now().Format("15:04:05.000"), s)
	}
	waitHealthy := func(n *natsNode) {
		if !assert.Eventually(t, func() bool { return n.healthy(false) }, 60*time.Second, 100*time.Millisecond, "%s caught up", n.name) {
			t.Fatalf("%s's log:\n%s", n.name, n.log.String())
		}
	}

	time.Sleep(step)
	leader, err := streamLeader(ctx, ojs, nodes, "STRIPE")
	require.NoError(t, err)
	leader.kill(syscall.SIGKILL)
	fault("SIGKILL " + leader.name + ", the STRIPE stream's leader")
	time.Sleep(step)
	leader.start(t, natsBin)
	waitHealthy(leader)
	fault(leader.name + " restarted and caught up")

	time.Sleep(step)
	cut := nodes[1]
	for _, p := range append(append([]*netfault.Proxy{}, cut.out...), cut.in...) {
		p.Block()
	}
	require.Eventually(t, func() bool { return cut.routes() == 0 }, 10*time.Second, 50*time.Millisecond, "%s cut off", cut.name)
	fault(cut.name + " cut off from the other nodes (its clients still reach it)")
	time.Sleep(max(step, 3*time.Second))
	for _, p := range append(append([]*netfault.Proxy{}, cut.out...), cut.in...) {
		p.Unblock()
	}
	waitHealthy(cut)
	fault(cut.name + " reconnected and caught up")

	for _, n := range nodes {
		n.kill(syscall.SIGTERM)
		n.start(t, natsBin)
		waitHealthy(n)
	}
	fault("rolling restart of n1, n2, n3 (SIGTERM, each caught up before the next)")

	time.Sleep(step / 2)
	require.NoError(t, worker.cmd.Process.Signal(syscall.SIGKILL))
	_ = worker.cmd.Wait()
	worker = startWorker(t, workersBin, workerEnv)
	fault("worker SIGKILLed mid-batch and restarted")

	rep := <-loadDone
	cmdRep := cmds.stop()
	e2e, err := loadgen.WaitCommitted(ctx, st, rep.Unique, 3*time.Minute)
	require.NoError(t, err)
	// Every accepted command ran, once: one ticket per key.
	var cmdsDone, tickets int
	require.Eventually(t, func() bool {
		if err := st.DB().GetContext(ctx, &cmdsDone, `SELECT count(*) FROM commands WHERE account_id = $1 AND status = 'succeeded'`, cmds.account); err != nil {
			return false
		}
		return cmdsDone >= cmdRep.accepted
	}, 2*time.Minute, 200*time.Millisecond, "the accepted commands ran")
	require.NoError(t, st.DB().GetContext(ctx, &tickets, `SELECT count(*) FROM support_tickets WHERE account_id = $1`, cmds.account))
	stopSched()
	<-schedDone

	lost := e2e.Expected - e2e.Committed
	var ledgerRows, inboxRows int64
	require.NoError(t, st.DB().GetContext(ctx, &ledgerRows, `SELECT count(*) FROM stripe_events`))
	require.NoError(t, st.DB().GetContext(ctx, &inboxRows, st.DB().Rebind(`SELECT count(*) FROM inbox WHERE consumer = ?`), billing.ConsumerStripe))

	// Ticks: one stored message per slot, none missing between the first
	// and the last.
	slots := map[time.Time]int{}
	tc, err := ojs.OrderedConsumer(ctx, "TICKS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"levqor.tick.housekeeping.watch"}})
	require.NoError(t, err)
	for {
		batch, err := tc.FetchNoWait(500)
		require.NoError(t, err)
		n := 0
		for m := range batch.Messages() {
			n++
			tick, err := scheduler.ParseTick(m.Data())
			require.NoError(t, err)
			slots[tick.Slot]++
		}
		if n == 0 {
			break
		}
	}
	var ordered []time.Time
	twice := 0
	for s, c := range slots {
		ordered = append(ordered, s)
		if c > 1 {
			twice++
		}
	}
	sort.Slice(ordered, func(i, j int) bool { return ordered[i].Before(ordered[j]) })
	missing := 0
	if len(ordered) > 1 {
		missing = int(ordered[len(ordered)-1].Sub(ordered[0])/time.Second) + 1 - len(ordered)
	}

	// No consumer left with work: every one drained what it was given.
	stuck := func() []string {
		var out []string
		for _, name := range []string{"STRIPE", "COMMANDS", "TICKS", "EVENTS"} {
			s, err := ojs.Stream(ctx, name)
			if err != nil {
				return []string{name + ": " + err.Error()}
			}
			for info := range s.ListConsumers(ctx).Info() {
				if info.NumPending > 0 || info.NumAckPending > 0 {
					out = append(out, fmt.Sprintf("%s/%s: %d pending, %d unacknowledged", name, info.Name, info.NumPending, info.NumAckPending))
				}
			}
		}
		return out
	}
	assert.Eventually(t, func() bool { return len(stuck()) == 0 }, 60*time.Second, 200*time.Millisecond, "consumers drained")
	require.Empty(t, stuck(), "no consumer is left with work")

	report := fmt.Sprintf(`cluster chaos: faults: %s
cluster chaos: sent %d, acknowledged %d (%d as duplicates), refused 503 %d, transport errors %d
cluster chaos: unique acknowledged %d, applied %d, lost %d, inbox rows %d, ledger rows %d (applied twice %d)
cluster chaos: commands: keys %d, accepted %d, answered 503 first %d, succeeded %d, tickets %d
cluster chaos: tick slots %d, stored twice %d, missing %d
cluster chaos: end-to-end p50 %s p99 %s max %s`,
		strings.Join(faults, "; "), rep.Sent, rep.Accepted, rep.Duplicates, rep.Status["503"], rep.Errors,
		e2e.Expected, e2e.Committed, lost, inboxRows, ledgerRows, ledgerRows-inboxRows,
		cmdRep.keys, cmdRep.accepted, cmdRep.retried, cmdsDone, tickets, len(ordered), twice, missing,
		e2e.Latency.P50, e2e.Latency.P99, e2e.Latency.Max)
	t.Log("\n" + report)
	if lost != 0 {
		t.Logf("worker log:\n%s", worker.log.String())
	}
	require.Zero(t, lost, "every acknowledged event is in the ledger")
	require.Equal(t, ledgerRows, inboxRows, "each recorded event was applied once")
	require.GreaterOrEqual(t, ledgerRows, int64(e2e.Expected))
	require.Greater(t, rep.Accepted, events/2, "most of the load got through the faults")
	require.Less(t, rep.Status["503"], events/10, "503s stay bounded: at most a tenth of the load")
	require.Equal(t, cmdRep.keys, cmdRep.accepted, "every command was accepted in the end")
	require.Equal(t, cmdRep.accepted, cmdsDone, "every accepted command succeeded")
	require.Equal(t, cmdRep.accepted, tickets, "each command took effect once")
	require.NotEmpty(t, ordered, "the scheduler ticked")
	require.Zero(t, twice, "each tick slot is stored once")
	require.Zero(t, missing, "no tick slot is missing")
}

// commandLoad opens tickets through the API while the faults run.
type commandLoad struct {
	account string
	done    chan struct{}
	result  chan commandReport
}

type commandReport struct {
	// keys tried, accepted (202) in the end, retried after a 503.
	keys, accepted, retried int
}

func (c *commandLoad) stop() commandReport {
	close(c.done)
	return <-c.result
}

func startCommandLoad(t *testing.T, st *store.Store, baseURL string) *commandLoad {
	t.Helper()
	ctx := t.Context()
	acc, err := command.NewID(store.AccountIDPrefix)
	require.NoError(t, err)
	require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.InsertAccount(ctx, store.Account{ID: acc, Name: "Chaos Ltd", ContactEmail: "ops@chaos.example", StripeCustomerID: "cus_chaos"})
		return err
	}))
	key, err := auth.GenerateKey()
	require.NoError(t, err)
	require.NoError(t, st.CreateAPIKey(ctx, store.APIKey{ID: key.ID, Hash: key.Hash, Prefix: key.Prefix, Name: "chaos", AccountID: acc}))
	c := &commandLoad{account: acc, done: make(chan struct{}), result: make(chan commandReport, 1)}
	go func() {
		var rep commandReport
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-c.done:
				c.result <- rep
				return
			case <-tick.C:
			}
			rep.keys++
			body := fmt.Sprintf(`{"subject":"chaos %d","body":"opened during the cluster chaos test"}`, i)
			for attempt := 0; attempt < 200; attempt++ {
				req, _ := http.NewRequest(http.MethodPost, baseURL+"/v1/tickets", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+key.Secret)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", fmt.Sprintf("chaos-ticket-%d", i))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					time.Sleep(200 * time.Millisecond)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusCreated {
					rep.accepted++
					break
				}
				if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusTooManyRequests {
					t.Errorf("ticket %d: %d %s", i, resp.StatusCode, b)
					break
				}
				if attempt == 0 {
					rep.retried++
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	}()
	return c
}
