package billing_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/bus"
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

// BenchmarkBillingStripeEvents applies realistic Stripe events to
// PostgreSQL (TEST_DATABASE_URL), one transaction per event (PerEvent) and
// in batches of 64 (Batch64), half the customers linked to accounts.
// ns/op is per event.
func BenchmarkBillingStripeEvents(b *testing.B) {
	for _, size := range []int{1, 64} {
		name := "PerEvent"
		if size > 1 {
			name = fmt.Sprintf("Batch%d", size)
		}
		b.Run(name, func(b *testing.B) {
			st := storetest.Postgres(b)
			cat, err := catalog.Load("")
			require.NoError(b, err)
			log := logrus.New()
			log.Out = io.Discard
			w := &billing.Worker{Store: st, Catalog: cat, Topology: bus.Topology{}.WithDefaults(), Log: log}
			const customers = 1000
			ctx := context.Background()
			require.NoError(b, st.InTx(ctx, func(tx *store.Tx) error {
				for c := 0; c < customers; c += 2 {
					if _, err := tx.InsertAccount(ctx, store.Account{ID: fmt.Sprintf("acc_b%d", c), Name: "Acme", ContactEmail: "ops@example.com", StripeCustomerID: fmt.Sprintf("cus_b%d", c)}); err != nil {
						return err
					}
				}
				return nil
			}))
			msgs := loadEvents(b, b.N, customers)
			h := inbox.BatchHandler(st, w.HandleStripe)
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
