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

// BenchmarkRouterBatchDispatch is the batch route's cost per message with a
// handler that does nothing but step through its batch: fetch, lanes,
// middleware per message, ack. Compare with BenchmarkRouterDispatch.
func BenchmarkRouterBatchDispatch(b *testing.B) {
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
	nop := func(context.Context, *bus.Message) error { return nil }
	r.HandleBatch(bus.ConsumerSpec{Name: "bench-cmd", Kind: bus.Commands}, func(ctx context.Context, msgs []*bus.Message, step bus.Step) error {
		for _, m := range msgs {
			_ = step(ctx, m, nop)
		}
		if n.Add(int64(len(msgs))) == int64(b.N) {
			close(done)
		}
		return nil
	}, bus.BatchOptions{})
	rctx, cancel := context.WithCancel(ctx)
	b.ReportAllocs()
	b.ResetTimer()
	go func() { _ = r.Run(rctx) }()
	<-done
	b.StopTimer()
	cancel()
}
