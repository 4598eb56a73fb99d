package levqor_test

// The NATS servers of compose.yaml, started from deploy/nats as compose
// starts them (its resolved command and environment), refuse clients
// without credentials and keep each service to its own subjects.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/service"
)

// composeServices is the resolved services of the compose file under the
// given profiles.
func composeServices(t *testing.T, profiles ...string) map[string]map[string]any {
	t.Helper()
	bin := requireTool(t, "docker-compose")
	var args []string
	for _, p := range profiles {
		args = append(args, "--profile", p)
	}
	stdout, stderr, err := composeRun(t, bin, composeSecrets, append(args, "config")...)
	require.NoError(t, err, "docker-compose config:\n%s", stderr)
	var cfg struct {
		Services map[string]map[string]any `yaml:"services"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(stdout), &cfg))
	return cfg.Services
}

// composeNATS starts the NATS server of compose service svc: its -c file
// (found under deploy/nats, which compose mounts at /etc/nats), with the
// service's environment, on free loopback ports and a temporary store.
// routes maps a node's name to its cluster port, for the cluster profile.
// It returns the client URL.
func composeNATS(t *testing.T, svc map[string]any, clusterPort int, routes map[string]int) string {
	t.Helper()
	cmd := words(svc["command"])
	require.GreaterOrEqual(t, len(cmd), 2)
	require.Equal(t, "-c", cmd[0])
	require.True(t, strings.HasPrefix(cmd[1], "/etc/nats/"), "the config lives in the mounted deploy/nats: %s", cmd[1])
	// The server reads its users' passwords (and the node's name) from
	// its environment, as in the container.
	for k, v := range environment(svc["environment"]) {
		t.Setenv(k, v)
	}
	opts, err := server.ProcessConfigFile(filepath.Join("deploy/nats", strings.TrimPrefix(cmd[1], "/etc/nats/")))
	require.NoError(t, err)
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", -1, 0
	opts.StoreDir, opts.NoSigs, opts.NoLog = t.TempDir(), true, true
	if len(cmd) > 2 {
		require.Equal(t, []string{"--routes"}, cmd[2:3])
		var local []string
		for _, r := range strings.Split(cmd[3], ",") {
			u, err := url.Parse(r)
			require.NoError(t, err)
			port, ok := routes[u.Hostname()]
			require.True(t, ok, "route to an unknown node %s", u.Hostname())
			u.Host = fmt.Sprintf("127.0.0.1:%d", port)
			local = append(local, u.String())
		}
		opts.Routes = server.RoutesFromStr(strings.Join(local, ","))
		opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", clusterPort
	}
	s, err := server.NewServer(opts)
	require.NoError(t, err)
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	require.True(t, s.ReadyForConnections(10*time.Second))
	return s.ClientURL()
}

// natsUser is a service's NATS credentials as compose gives them.
type natsUser struct{ name, password string }

func composeNATSUser(t *testing.T, svc map[string]any, prefix string) natsUser {
	t.Helper()
	env := environment(svc["environment"])
	u := natsUser{env[prefix+"USER"], env[prefix+"PASSWORD"]}
	require.NotEmpty(t, u.name, "%sUSER", prefix)
	require.NotEmpty(t, u.password, "%sPASSWORD", prefix)
	return u
}

// permissionErrors collects a connection's permission violations.
type permissionErrors struct {
	mu   sync.Mutex
	errs []string
}

func (p *permissionErrors) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrPermissionViolation) {
		p.mu.Lock()
		p.errs = append(p.errs, err.Error())
		p.mu.Unlock()
	}
}

func (p *permissionErrors) saw(subject string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.errs {
		if strings.Contains(e, subject) {
			return true
		}
	}
	return false
}

// connectAs connects as u with the inbox prefix of role, as the services
// do.
func connectAs(t *testing.T, serverURL string, u natsUser, role string) (jetstream.JetStream, *permissionErrors, *nats.Conn) {
	t.Helper()
	pe := &permissionErrors{}
	nc, err := nats.Connect(serverURL, nats.UserInfo(u.name, u.password), nats.CustomInboxPrefix("_INBOX."+role), nats.ErrorHandler(pe.handler))
	require.NoError(t, err, "%s connects", u.name)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js, pe, nc
}

// requireNATSPermissions checks, on the server at serverURL, what a
// stranger and each service's user may do.
func requireNATSPermissions(t *testing.T, serverURL string, services map[string]map[string]any, suffix string, replicas int) {
	t.Helper()
	ctx := t.Context()
	ingest := composeNATSUser(t, services["ingest"+suffix], "LEVQOR_NATS_")
	operator := composeNATSUser(t, services["ingest"+suffix], "LEVQOR_NATS_OPERATOR_")
	workers := composeNATSUser(t, services["workers"+suffix], "LEVQOR_NATS_")
	scheduler := composeNATSUser(t, services["scheduler"+suffix], "LEVQOR_NATS_")

	_, err := nats.Connect(serverURL)
	require.ErrorIs(t, err, nats.ErrAuthorization, "a client without credentials is refused")
	_, err = nats.Connect(serverURL, nats.UserInfo(ingest.name, workers.password))
	require.ErrorIs(t, err, nats.ErrAuthorization, "another service's password is refused")

	topo := bus.Topology{Replicas: replicas}.WithDefaults()
	wjs, _, _ := connectAs(t, serverURL, workers, service.NATSRoleWorkers)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	// A new cluster answers once it has elected its leader: ask, as the
	// services do, until it does.
	require.Eventually(t, func() bool {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := wjs.AccountInfo(actx)
		return err == nil
	}, 30*time.Second, 100*time.Millisecond, "JetStream answers the workers")
	differ, err := topo.CreateMissingStreams(cctx, wjs)
	require.NoError(t, err, "the workers create the streams")
	require.Empty(t, differ)

	// A refused publish is never answered: refused ones wait briefly, and
	// the stream counts below show that nothing refused was stored.
	publish := func(js jetstream.JetStream, subject string) error {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := js.Publish(pctx, subject, []byte(`{}`))
		return err
	}
	refused := func(js jetstream.JetStream, subject string) error {
		pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := js.Publish(pctx, subject, []byte(`{}`))
		return err
	}
	stored := func(js jetstream.JetStream, k bus.Kind) uint64 {
		s, err := js.Stream(ctx, topo.StreamName(k))
		require.NoError(t, err)
		return s.CachedInfo().State.Msgs
	}

	ijs, ipe, inc := connectAs(t, serverURL, ingest, service.NATSRoleIngest)
	// No service may change a stream: a shorter retention purges it.
	short := topo.StreamConfig(bus.Stripe)
	short.MaxAge = time.Second
	uctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = ijs.UpdateStream(uctx, short)
	cancel()
	require.Error(t, err, "ingest may not change a stream")
	require.Eventually(t, func() bool { return ipe.saw("$JS.API.STREAM.UPDATE.STRIPE") }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, publish(ijs, "levqor.stripe.invoice.paid"), "ingest publishes Stripe events")
	require.NoError(t, publish(ijs, "levqor.cmd.accounts.create"), "and commands")
	require.Error(t, refused(ijs, "levqor.tick.billing.reconcile"), "ingest may not tick")
	require.Eventually(t, func() bool { return ipe.saw("levqor.tick.billing.reconcile") }, 5*time.Second, 10*time.Millisecond)
	require.Error(t, refused(ijs, "levqor.dlq.billing-stripe"), "nor dead-letter")
	_, err = inc.SubscribeSync("_INBOX.workers.>")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return ipe.saw("_INBOX.workers.>") }, 5*time.Second, 10*time.Millisecond,
		"ingest may not read the workers' deliveries")

	sjs, spe, _ := connectAs(t, serverURL, scheduler, service.NATSRoleScheduler)
	require.NoError(t, publish(sjs, "levqor.tick.billing.reconcile"), "the scheduler ticks")
	require.Error(t, refused(sjs, "levqor.stripe.invoice.paid"), "and may not publish a Stripe event")
	require.Eventually(t, func() bool { return spe.saw("levqor.stripe.invoice.paid") }, 5*time.Second, 10*time.Millisecond)

	require.Error(t, refused(wjs, "levqor.stripe.invoice.paid"), "the workers may not publish a Stripe event")
	require.Error(t, refused(wjs, "levqor.tick.billing.reconcile"), "nor tick")
	require.NoError(t, publish(wjs, "levqor.event.account.created"), "they publish events")

	ojs, _, _ := connectAs(t, serverURL, operator, service.NATSRoleOperator)
	require.NoError(t, publish(ojs, "levqor.tick.billing.reconcile"), "an operator publishes a tick by hand")

	require.Equal(t, uint64(1), stored(ojs, bus.Stripe), "only ingest's Stripe event is stored")
	require.Equal(t, uint64(2), stored(ojs, bus.Ticks), "only the scheduler's and the operator's ticks are stored")
	require.Equal(t, uint64(0), stored(ojs, bus.DLQ))
}

// TestComposeNATSRequiresEachServicesCredentials: the single NATS server of
// compose's default profile and the three nodes of its `cluster` profile,
// each run from deploy/nats with compose's command and environment, refuse
// a client without credentials, let each service do its work with the
// credentials compose gives it, and refuse what is another's: ingest
// publishing a tick, the scheduler a Stripe event.
func TestComposeNATSRequiresEachServicesCredentials(t *testing.T) {
	t.Run("single", func(t *testing.T) {
		services := composeServices(t)
		url := composeNATS(t, services["nats"], 0, nil)
		requireNATSPermissions(t, url, services, "", 1)
	})
	t.Run("cluster", func(t *testing.T) {
		services := composeServices(t, "cluster")
		ports := map[string]int{}
		for _, n := range clusterNodes {
			ports[n] = freePort(t)
		}
		var urls []string
		for _, n := range clusterNodes {
			urls = append(urls, composeNATS(t, services[n], ports[n], ports))
		}
		requireNATSPermissions(t, strings.Join(urls, ","), services, "-cluster", 3)

		// A server that routes without the route user's password never
		// joins.
		stranger := server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true, ServerName: "stranger",
			Cluster: server.ClusterOpts{Name: "levqor", Host: "127.0.0.1", Port: -1},
			Routes:  server.RoutesFromStr(fmt.Sprintf("nats-route://127.0.0.1:%d", ports["nats-1"]))}
		s, err := server.NewServer(&stranger)
		require.NoError(t, err)
		go s.Start()
		t.Cleanup(s.Shutdown)
		require.True(t, s.ReadyForConnections(10*time.Second))
		time.Sleep(2 * time.Second)
		require.Zero(t, s.NumRoutes(), "a route without credentials is refused")
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
