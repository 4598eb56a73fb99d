package bus_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/bus/bustest"
)

func TestTopologyNamesAndSubjects(t *testing.T) {
	t.Parallel()
	def := bus.Topology{}.WithDefaults()
	require.NoError(t, def.Validate())
	require.Equal(t, "STRIPE", def.StreamName(bus.Stripe))
	require.Equal(t, "levqor.stripe.invoice.payment_failed", def.Subject(bus.Stripe, "invoice.payment_failed"))
	require.Equal(t, "levqor.cmd.>", def.Wildcard(bus.Commands))
	rest, ok := def.Unprefixed(bus.Stripe, "levqor.stripe.invoice.paid")
	require.True(t, ok)
	require.Equal(t, "invoice.paid", rest)

	staging := bus.Topology{Prefix: "staging.eu"}.WithDefaults()
	require.Equal(t, "STAGING_EU_DLQ", staging.StreamName(bus.DLQ))
	require.Equal(t, "staging.eu.tick.backup.sweep", staging.Subject(bus.Ticks, "backup.sweep"))
	k, ok := staging.KindOf("STAGING_EU_TICKS")
	require.True(t, ok)
	require.Equal(t, bus.Ticks, k)

	cfg := def.StreamConfig(bus.Stripe)
	require.Equal(t, 35*24*time.Hour, cfg.MaxAge)
	require.GreaterOrEqual(t, cfg.Duplicates, time.Hour)
	require.GreaterOrEqual(t, def.StreamConfig(bus.Commands).Duplicates, 24*time.Hour)
	require.Equal(t, jetstream.FileStorage, cfg.Storage)
}

func TestTopologyValidateRejectsBadSettings(t *testing.T) {
	t.Parallel()
	for name, topo := range map[string]bus.Topology{
		"BadPrefix":       {Prefix: "lev qor"},
		"WildcardPrefix":  {Prefix: "levqor.>"},
		"TooManyReplicas": {Replicas: 7},
		"DedupeBeyondAge": {Streams: map[bus.Kind]bus.StreamSettings{bus.Events: {MaxAge: time.Minute, Duplicates: time.Hour}}},
	} {
		t.Run(name, func(t *testing.T) {
			require.Error(t, topo.WithDefaults().Validate())
		})
	}
}

func TestEnsureStreamsIsIdempotentAndUpdates(t *testing.T) {
	t.Parallel()
	env := bustest.Start(t)
	ctx := context.Background()
	require.NoError(t, env.Topo.EnsureStreams(ctx, env.JS), "second run changes nothing and does not fail")

	changed := env.Topo
	changed.Streams = map[bus.Kind]bus.StreamSettings{bus.Events: {MaxAge: 48 * time.Hour}}
	changed = changed.WithDefaults()
	require.NoError(t, changed.EnsureStreams(ctx, env.JS))
	s, err := env.JS.Stream(ctx, "EVENTS")
	require.NoError(t, err)
	require.Equal(t, 48*time.Hour, s.CachedInfo().Config.MaxAge, "a changed definition updates the stream")

	spec := bus.ConsumerSpec{Name: "billing-stripe", Kind: bus.Stripe}
	_, err = env.Topo.EnsureConsumer(ctx, env.JS, spec)
	require.NoError(t, err)
	c, err := env.Topo.EnsureConsumer(ctx, env.JS, spec)
	require.NoError(t, err)
	info := c.CachedInfo()
	require.Equal(t, "levqor.stripe.>", info.Config.FilterSubject)
	require.Equal(t, jetstream.AckExplicitPolicy, info.Config.AckPolicy)
	require.Equal(t, "billing-stripe", info.Config.Durable)
}

// TestTheServicesCreateMissingStreamsAndChangeNone: what the services run
// at start creates a deleted stream again, and reports, without
// changing it, a stream whose settings differ (a shorter retention would
// purge it).
func TestTheServicesCreateMissingStreamsAndChangeNone(t *testing.T) {
	t.Parallel()
	env := bustest.Start(t)
	ctx := context.Background()
	require.NoError(t, env.JS.DeleteStream(ctx, "TICKS"))
	differ, err := env.Topo.CreateMissingStreams(ctx, env.JS)
	require.NoError(t, err)
	require.Empty(t, differ)
	_, err = env.JS.Stream(ctx, "TICKS")
	require.NoError(t, err, "the missing stream is created")

	shorter := env.Topo
	shorter.Streams = map[bus.Kind]bus.StreamSettings{bus.Events: {MaxAge: time.Minute, Duplicates: time.Minute}}
	shorter = shorter.WithDefaults()
	differ, err = shorter.CreateMissingStreams(ctx, env.JS)
	require.NoError(t, err)
	require.Len(t, differ, 1)
	require.Contains(t, differ[0], "EVENTS (max age 336h0m0s, want 1m0s")
	s, err := env.JS.Stream(ctx, "EVENTS")
	require.NoError(t, err)
	require.Equal(t, bus.EventsMaxAgeDefault, s.CachedInfo().Config.MaxAge, "the stream is left as it was")
}

func TestEnsureConsumerCreatesMissingStreams(t *testing.T) {
	t.Parallel()
	env := bustest.Start(t)
	ctx := context.Background()
	require.NoError(t, env.JS.DeleteStream(ctx, "COMMANDS"))
	_, err := env.Topo.EnsureConsumer(ctx, env.JS, bus.ConsumerSpec{Name: "x-cmd", Kind: bus.Commands})
	require.NoError(t, err)
}

// TestWorksWithNATSServer29 runs the topology and a router against the
// nats-server binary on PATH (Debian ships 2.9), the oldest server Levqor
// supports.
func TestWorksWithNATSServer29(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if os.Getenv("LEVQOR_TEST_REQUIRE_TOOLS") == "1" {
			t.Fatal("nats-server binary not on PATH (install Debian's nats-server)")
		}
		t.Skip("nats-server binary not on PATH; install Debian's nats-server to run this test")
	}
	out, err := exec.Command(bin, "--version").Output()
	require.NoError(t, err)
	t.Logf("testing against %s", out)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", t.TempDir())
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	var nc *nats.Conn
	require.Eventually(t, func() bool {
		nc, err = nats.Connect(url)
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	topo := bus.Topology{}.WithDefaults()
	require.NoError(t, topo.EnsureStreams(ctx, js))
	require.NoError(t, topo.EnsureStreams(ctx, js))

	log, _ := test.NewNullLogger()
	r, err := bus.NewRouter(js, bus.RouterConfig{Topology: topo, Logger: log, FetchWait: 200 * time.Millisecond, NakBaseDelay: 10 * time.Millisecond, MaxDeliver: 2})
	require.NoError(t, err)
	var ok, bad atomic.Int32
	r.Handle(bus.ConsumerSpec{Name: "compat-stripe", Kind: bus.Stripe}, func(ctx context.Context, m *bus.Message) error {
		if string(m.Data) == "poison" {
			bad.Add(1)
			return bus.Permanentf("poison")
		}
		ok.Add(1)
		return nil
	})
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	pub := bus.NewPublisher(js, topo)
	_, err = pub.Publish(ctx, topo.Subject(bus.Stripe, "invoice.paid"), "evt_1", nil, []byte("{}"))
	require.NoError(t, err)
	res, err := pub.Publish(ctx, topo.Subject(bus.Stripe, "invoice.paid"), "evt_1", nil, []byte("{}"))
	require.NoError(t, err)
	require.True(t, res.Duplicate)
	_, err = pub.Publish(ctx, topo.Subject(bus.Stripe, "invoice.paid"), "evt_2", nil, []byte("poison"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return ok.Load() == 1 && bad.Load() == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		s, err := js.Stream(ctx, "DLQ")
		if err != nil {
			return false
		}
		i, err := s.Info(ctx)
		return err == nil && i.State.Msgs == 1
	}, 10*time.Second, 20*time.Millisecond)
	stop()
	require.NoError(t, <-done)
}
