package billing_test

import (
	"context"
	"encoding/json"
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
	"github.com/levqor/levqor/pkg/bus/bustest"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/stripesim"
)

// accountHistory is one customer's events, oldest first.
func accountHistory(t *testing.T, cus, sub string) [][]byte {
	return [][]byte{
		subEvent(t, "customer.subscription.created", "evt_h1"+cus, sub, cus, "active", t0, item{"price_levqor_starter_monthly", 1}),
		invoiceEvent(t, "invoice.paid", "evt_h2"+cus, "in_a"+cus, cus, sub, t0.Add(1*time.Second)),
		subEvent(t, "customer.subscription.updated", "evt_h3"+cus, sub, cus, "active", t0.Add(2*time.Second), item{"price_levqor_growth_monthly", 1}, item{"price_levqor_extra_storage", 2}),
		invoiceEvent(t, "invoice.payment_failed", "evt_h4"+cus, "in_b"+cus, cus, sub, t0.Add(3*time.Second)),
		invoiceEvent(t, "invoice.paid", "evt_h5"+cus, "in_b"+cus, cus, sub, t0.Add(4*time.Second)),
		subEvent(t, "customer.subscription.updated", "evt_h6"+cus, sub, cus, "active", t0.Add(5*time.Second), item{"price_levqor_business_annual", 1}, item{"price_levqor_priority_support", 1}),
		invoiceEvent(t, "invoice.payment_failed", "evt_h7"+cus, "in_c"+cus, cus, sub, t0.Add(6*time.Second)),
	}
}

type accountState struct {
	Tier, Status, Ent string
}

func stateOf(t *testing.T, st *store.Store, acc string) accountState {
	t.Helper()
	a, err := st.GetAccount(context.Background(), acc)
	require.NoError(t, err)
	tier := ""
	if a.Tier != nil {
		tier = *a.Tier
	}
	var e map[string]any
	require.NoError(t, json.Unmarshal(a.Entitlements, &e))
	eb, _ := json.Marshal(e)
	return accountState{Tier: tier, Status: a.Status, Ent: string(eb)}
}

func stripeMessage(t *testing.T, payload []byte, seq uint64) *bus.Message {
	t.Helper()
	var env struct{ ID, Type string }
	require.NoError(t, json.Unmarshal(payload, &env))
	return &bus.Message{
		Subject: "levqor.stripe." + env.Type, Data: payload, Header: nats.Header{bus.HeaderMsgID: {env.ID}},
		Stream: "STRIPE", Consumer: billing.ConsumerStripe, StreamSeq: seq, Deliveries: 1, Published: time.Now().UTC(),
	}
}

// TestBatchesOfShuffledEventsReachTheStateOfOneAtATime applies many
// customers' histories, shuffled together, with duplicates and a poison
// event, in batches (one transaction each, events of one customer side by
// side in a batch, newer before older), and requires every account to end
// as it does when its events are applied one at a time in order.
func TestBatchesOfShuffledEventsReachTheStateOfOneAtATime(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ref := newHarness(t, storetest.SQLite(t))
		ref.account("acc_ref", "cus_ref")
		for _, ev := range accountHistory(t, "cus_ref", "sub_ref") {
			ref.must(ev)
		}
		want := stateOf(t, ref.st, "acc_ref")
		require.Equal(t, "business", want.Tier)
		require.Equal(t, "past_due", want.Status)

		h := newHarness(t, st)
		const customers = 12
		var events [][]byte
		for i := 0; i < customers; i++ {
			cus := fmt.Sprintf("cus_q%d", i)
			h.account(fmt.Sprintf("acc_q%d", i), cus)
			events = append(events, accountHistory(t, cus, fmt.Sprintf("sub_q%d", i))...)
		}
		unique := len(events)
		seed := uint64(time.Now().UnixNano())
		t.Logf("shuffle seed %d", seed)
		rng := rand.New(rand.NewPCG(seed, 3))
		for j := 0; j < 10; j++ {
			events = append(events, events[rng.IntN(unique)])
		}
		rng.Shuffle(len(events), func(a, b int) { events[a], events[b] = events[b], events[a] })
		poisonAt := rng.IntN(len(events))
		poison := []byte(`{"id":"evt_poison","object":"event","type":"invoice.paid","created":1700000000,"data":{"object":"not an invoice"}}`)
		events = append(events[:poisonAt], append([][]byte{poison}, events[poisonAt:]...)...)

		bh := h.w.StripeHandler()
		for i := 0; i < len(events); i += 16 {
			var msgs []*bus.Message
			for j := i; j < min(i+16, len(events)); j++ {
				msgs = append(msgs, stripeMessage(t, events[j], uint64(j+1)))
			}
			err := bh(context.Background(), msgs, func(ctx context.Context, m *bus.Message, fn bus.Handler) error {
				err := fn(ctx, m)
				if m.ID() == "evt_poison" {
					require.True(t, bus.IsPermanent(err), "the poison fails for good: %v", err)
				} else {
					require.NoError(t, err, "event %s", m.ID())
				}
				return err
			})
			require.NoError(t, err, "batch at %d commits", i)
		}
		for i := 0; i < customers; i++ {
			require.Equal(t, want, stateOf(t, st, fmt.Sprintf("acc_q%d", i)), "account %d (seed %d)", i, seed)
		}
		n, err := st.CountStripeEvents(context.Background())
		require.NoError(t, err)
		require.EqualValues(t, unique, n, "each event in the ledger once; the poison's entry rolled back")
	})
}

// TestStripeEventsDrainThroughTheBatchRoute runs the billing worker's
// routes on JetStream against the store: events for several customers,
// one malformed, all published before the worker starts, as in a drain.
func TestStripeEventsDrainThroughTheBatchRoute(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		env := bustest.Start(t)
		h := newHarness(t, st)
		pub := bus.NewPublisher(env.JS, env.Topo)
		ctx := t.Context()
		publish := func(id, typ string, payload []byte) {
			_, err := pub.Publish(ctx, env.Topo.Subject(bus.Stripe, typ), id, nil, payload)
			require.NoError(t, err)
		}
		const customers = 20
		unique := 0
		for i := 0; i < customers; i++ {
			cus := fmt.Sprintf("cus_d%d", i)
			h.account(fmt.Sprintf("acc_d%d", i), cus)
			for _, ev := range accountHistory(t, cus, fmt.Sprintf("sub_d%d", i)) {
				var e struct{ ID, Type string }
				require.NoError(t, json.Unmarshal(ev, &e))
				publish(e.ID, e.Type, ev)
				unique++
			}
		}
		publish("evt_bad", "invoice.paid", []byte(`{"id":"evt_other","object":"event","type":"invoice.paid","created":1}`))

		log := logrus.New()
		log.Out = io.Discard
		r, err := bus.NewRouter(env.JS, bus.RouterConfig{Topology: env.Topo, Logger: log, Concurrency: 4, BatchSize: 32,
			BatchWait: 20 * time.Millisecond, FetchWait: 200 * time.Millisecond})
		require.NoError(t, err)
		h.w.Topology = env.Topo
		h.w.Register(r)
		require.NotNil(t, r.Routes()[0].Batch, "Stripe events are handled in batches")
		rctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(rctx) }()
		t.Cleanup(func() { cancel(); <-done })

		require.Eventually(t, func() bool {
			n, err := st.CountStripeEvents(ctx)
			return err == nil && n == int64(unique) && env.StreamMsgs(t, bus.DLQ) == 1
		}, 30*time.Second, 50*time.Millisecond, "every event in the ledger, the malformed one in the DLQ")
		dl := env.Messages(t, bus.DLQ)
		require.Equal(t, "evt_bad", dl[0].Header.Get(bus.HeaderOriginalMsgID))
		require.Contains(t, dl[0].Header.Get(bus.HeaderDlqReason), "does not match message id")
		for i := 0; i < customers; i++ {
			s := stateOf(t, st, fmt.Sprintf("acc_d%d", i))
			require.Equal(t, "business", s.Tier, "account %d", i)
			require.Equal(t, "past_due", s.Status, "account %d", i)
		}
	})
}

func TestStripeEventKeyIsTheCustomer(t *testing.T) {
	t.Parallel()
	msg := func(payload string) *bus.Message {
		return &bus.Message{Data: []byte(payload), Header: nats.Header{bus.HeaderMsgID: {"evt_1"}}}
	}
	sub, err := stripesim.NewEvent("customer.subscription.updated", stripesim.EventOptions{Customer: "cus_42"})
	require.NoError(t, err)
	inv, err := stripesim.NewEvent("invoice.payment_failed", stripesim.EventOptions{Customer: "cus_42"})
	require.NoError(t, err)
	require.Equal(t, "cus_42", billing.StripeEventKey(&bus.Message{Data: sub}))
	require.Equal(t, "cus_42", billing.StripeEventKey(&bus.Message{Data: inv}), "a customer's events share a key")
	require.Equal(t, "cus_7", billing.StripeEventKey(msg(`{"data":{"object":{"customer" : {"id": "cus_7", "object": "customer"}}}}`)), "expanded")
	require.Equal(t, "evt_1", billing.StripeEventKey(msg(`{"data":{"object":{"customer":null}}}`)), "none: the event's own id")
	require.Equal(t, "evt_1", billing.StripeEventKey(msg(`{"data":{"object":{"id":"cus_9","object":"customer"}}}`)))
	require.Equal(t, "evt_1", billing.StripeEventKey(msg(`{"customer"`)), "truncated")
}

// TestACancellationInABatchCountsFromItself: an account canceled before,
// then resumed and canceled again within one batch, counts its
// cancellation (which offboarding's grace runs from) from the batch, as
// it would one event at a time, not from the first cancellation.
func TestACancellationInABatchCountsFromItself(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		h.account("acc_c", "cus_c")
		canceledAt := func() time.Time {
			var at *time.Time
			require.NoError(t, st.DB().Get(&at, st.DB().Rebind(`SELECT canceled_at FROM accounts WHERE id = ?`), "acc_c"))
			require.NotNil(t, at, "the account is canceled")
			return *at
		}
		growth := item{"price_levqor_growth_monthly", 1}
		h.must(subEvent(t, "customer.subscription.created", "evt_c1", "sub_c", "cus_c", "active", t0, growth))
		h.must(subEvent(t, "customer.subscription.deleted", "evt_c2", "sub_c", "cus_c", "canceled", t0.Add(time.Second), growth))
		first := canceledAt()

		time.Sleep(20 * time.Millisecond)
		msgs := []*bus.Message{
			stripeMessage(t, subEvent(t, "customer.subscription.updated", "evt_c3", "sub_c", "cus_c", "active", t0.Add(2*time.Second), growth), 3),
			stripeMessage(t, subEvent(t, "customer.subscription.deleted", "evt_c4", "sub_c", "cus_c", "canceled", t0.Add(3*time.Second), growth), 4),
		}
		require.NoError(t, h.w.StripeHandler()(context.Background(), msgs, func(ctx context.Context, m *bus.Message, fn bus.Handler) error {
			return fn(ctx, m)
		}))
		require.Equal(t, "canceled", h.get("acc_c").Status)
		require.True(t, canceledAt().After(first), "canceled again at %s, first at %s", canceledAt(), first)
	})
}

// TestEntitlementsEventsCarryTheSameBytesEitherWay: the entitlements an
// event reports as previous are, byte for byte, those the event before
// reported as new, whether the two were applied in one batch (where the
// previous ones are the worker's own) or one after the other (where they
// come back from the database, jsonb on PostgreSQL).
func TestEntitlementsEventsCarryTheSameBytesEitherWay(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		for _, batched := range []bool{true, false} {
			h := newHarness(t, st)
			cus := fmt.Sprintf("cus_b%v", batched)
			h.account("acc_"+cus, cus)
			evs := [][]byte{
				subEvent(t, "customer.subscription.created", "evt_1"+cus, "sub_"+cus, cus, "active", t0, item{"price_levqor_growth_monthly", 1}),
				subEvent(t, "customer.subscription.updated", "evt_2"+cus, "sub_"+cus, cus, "active", t0.Add(time.Second),
					item{"price_levqor_business_annual", 1}, item{"price_levqor_extra_storage", 2}),
			}
			if batched {
				msgs := []*bus.Message{stripeMessage(t, evs[0], 1), stripeMessage(t, evs[1], 2)}
				require.NoError(t, h.w.StripeHandler()(context.Background(), msgs, func(ctx context.Context, m *bus.Message, fn bus.Handler) error {
					return fn(ctx, m)
				}))
			} else {
				h.must(evs[0])
				h.must(evs[1])
			}
			var payloads [][]byte
			require.NoError(t, st.DB().Select(&payloads, st.DB().Rebind(`SELECT payload FROM outbox WHERE subject = ? AND CAST(headers AS TEXT) LIKE ? ORDER BY id`),
				"levqor.event.billing.entitlements_changed", "%acc_"+cus+"%"))
			require.Len(t, payloads, 2, "batched: %v", batched)
			var first, second struct {
				Entitlements         json.RawMessage `json:"entitlements"`
				PreviousEntitlements json.RawMessage `json:"previous_entitlements"`
			}
			require.NoError(t, json.Unmarshal(payloads[0], &first))
			require.NoError(t, json.Unmarshal(payloads[1], &second))
			require.Equal(t, string(first.Entitlements), string(second.PreviousEntitlements), "batched: %v", batched)
		}
	})
}
