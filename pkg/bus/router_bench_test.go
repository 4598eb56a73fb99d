package bus_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/bus/bustest"
)

// BenchmarkPublish is one synchronous, deduplicated JetStream publish: what
// ingest waits for before it answers.
func BenchmarkPublish(b *testing.B) {
	env := bustest.Start(b)
	pub := bus.NewPublisher(env.JS, env.Topo)
	subject := env.Topo.Subject(bus.Stripe, "invoice.paid")
	data := make([]byte, 1500)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := pub.Publish(ctx, subject, "evt_bench"+strconv.Itoa(i), nil, data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRouterDispatch is the router's cost per message with a handler
// that does nothing: fetch, middleware, ack.
func BenchmarkRouterDispatch(b *testing.B) {
	env := bustest.Start(b)
	pub := bus.NewPublisher(env.JS, env.Topo)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		if _, err := pub.Publish(ctx, env.Topo.Subject(bus.Commands, "bench.x"), "m"+strconv.Itoa(i), nil, []byte("{}")); err != nil {
			b.Fatal(err)
		}
	}
	log, _ := test.NewNullLogger()
	r, err := bus.NewRouter(env.JS, bus.RouterConfig{Topology: env.Topo, Logger: log, FetchWait: 100 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	done := make(chan struct{})
	r.Handle(bus.ConsumerSpec{Name: "bench-cmd", Kind: bus.Commands}, func(ctx context.Context, m *bus.Message) error {
		if n.Add(1) == int64(b.N) {
			close(done)
		}
		return nil
	})
	rctx, cancel := context.WithCancel(ctx)
	b.ReportAllocs()
	b.ResetTimer()
	go func() { _ = r.Run(rctx) }()
	<-done
	b.StopTimer()
	cancel()
}
