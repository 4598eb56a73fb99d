package billing_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/bus/bustest"
	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/inbox"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/stripesim"
)

// lifecycles are the event sequences of the load generator's customers.
var lifecycles = [][]string{
	{"customer.subscription.created", "customer.subscription.updated", "customer.subscription.updated", "customer.subscription.deleted"},
	{"invoice.paid", "invoice.payment_failed", "invoice.paid"},
	{"checkout.session.completed"},
}

// loadEvents makes n realistic Stripe events over customers customers, as
// the load generator sends them, as messages of billing-stripe.
func loadEvents(tb testing.TB, n, customers int) []*bus.Message {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	next := make([][3]int, customers)
	base := time.Now().Add(-time.Hour)
	msgs := make([]*bus.Message, n)
	for i := range msgs {
		c := rng.IntN(customers)
		kind := rng.IntN(9)
		switch {
		case kind < 4:
			kind = 0
		case kind < 8:
			kind = 1
		default:
			kind = 2
		}
		life := lifecycles[kind]
		typ := life[next[c][kind]%len(life)]
		next[c][kind]++
		id := fmt.Sprintf("evt_bench%d", i)
		b, err := stripesim.NewEvent(typ, stripesim.EventOptions{
			ID: id, Created: base.Add(time.Duration(i) * time.Millisecond),
			Customer: fmt.Sprintf("cus_b%d", c), Subscription: fmt.Sprintf("sub_b%d", c), AccountRef: fmt.Sprintf("acc_b%d", c),
			Price: "price_levqor_growth_monthly",
		})
		require.NoError(tb, err)
		msgs[i] = &bus.Message{
			Subject: "levqor.stripe." + typ, Data: b, Header: nats.Header{bus.HeaderMsgID: {id}},
			Stream: "STRIPE", Consumer: billing.ConsumerStripe, StreamSeq: uint64(i + 1), Deliveries: 1, Published: time.Now().UTC(),
		}
	}
	return msgs
}

// benchCustomers is how many Stripe customers the benchmarks' events are
// spread over; every other one has an account.
const benchCustomers = 1000

// benchWorker is a billing worker on st (logging warnings only, to
// nowhere) whose accounts are linked to half of benchCustomers.
func benchWorker(b *testing.B, st *store.Store, topo bus.Topology) *billing.Worker {
	b.Helper()
	cat, err := catalog.Load("")
	require.NoError(b, err)
	log := logrus.New()
	log.Out = io.Discard
	log.SetLevel(logrus.WarnLevel)
	ctx := context.Background()
	require.NoError(b, st.InTx(ctx, func(tx *store.Tx) error {
		for c := 0; c < benchCustomers; c += 2 {
			if _, err := tx.InsertAccount(ctx, store.Account{ID: fmt.Sprintf("acc_b%d", c), Name: "Acme", ContactEmail: "ops@example.com", StripeCustomerID: fmt.Sprintf("cus_b%d", c)}); err != nil {
				return err
			}
		}
		return nil
	}))
	return &billing.Worker{Store: st, Catalog: cat, Topology: topo, Log: log}
}

// BenchmarkBillingStripeEvents applies realistic Stripe events to
// PostgreSQL (TEST_DATABASE_URL): one transaction per event (PerEvent);
// batches of 64, one transaction each, a statement at a time under a
// savepoint per event (Savepoints64); and batches of 64 with set-based
// statements, the worker's path (Batch64). Half the customers are linked
// to accounts. ns/op is per event.
func BenchmarkBillingStripeEvents(b *testing.B) {
	for _, c := range []struct {
		name     string
		size     int
		setBased bool
	}{{"PerEvent", 1, false}, {"Savepoints64", 64, false}, {"Batch64", 64, true}} {
		size := c.size
		b.Run(c.name, func(b *testing.B) {
			st := storetest.Postgres(b)
			w := benchWorker(b, st, bus.Topology{}.WithDefaults())
			ctx := context.Background()
			msgs := loadEvents(b, b.N, benchCustomers)
			h := inbox.BatchHandler(st, w.HandleStripe)
			if c.setBased {
				h = w.StripeHandler()
			}
			step := func(ctx context.Context, m *bus.Message, fn bus.Handler) error { return fn(ctx, m) }
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < len(msgs); i += size {
				batch := msgs[i:min(i+size, len(msgs))]
				if err := h(ctx, batch, step); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			n, err := st.CountStripeEvents(ctx)
			require.NoError(b, err)
			require.EqualValues(b, b.N, n, "every event in the ledger")
		})
	}
}

// BenchmarkBillingDrain is the worker's whole path for b.N realistic
// Stripe events already in the stream: JetStream fetches, the router's
// lanes (8, batches of 64), the set-based apply against PostgreSQL
// (TEST_DATABASE_URL), acks. The NATS server runs in the process, so a
// CPU profile shows its share too. ns/op is per event.
func BenchmarkBillingDrain(b *testing.B) {
	env := bustest.Start(b)
	st := storetest.Postgres(b)
	w := benchWorker(b, st, env.Topo)
	log := w.Log
	ctx := context.Background()
	pub := bus.NewPublisher(env.JS, env.Topo)
	for _, m := range loadEvents(b, b.N, benchCustomers) {
		if _, err := pub.Publish(ctx, env.Topo.Subject(bus.Stripe, strings.TrimPrefix(m.Subject, "levqor.stripe.")), m.ID(), nil, m.Data); err != nil {
			b.Fatal(err)
		}
	}
	r, err := bus.NewRouter(env.JS, bus.RouterConfig{Topology: env.Topo, Logger: log, Concurrency: 8, FetchWait: 100 * time.Millisecond})
	require.NoError(b, err)
	w.Register(r)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	go func() { _ = r.Run(rctx) }()
	for {
		n, err := st.CountStripeEvents(ctx)
		require.NoError(b, err)
		if n == int64(b.N) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
