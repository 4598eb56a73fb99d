package billing_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/inbox"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/stripesim"
)

// randomEvents makes n Stripe events of every type billing handles, over
// a few customers (two without an account), with created times that
// collide and arrive out of order, repeated deliveries and one poison
// event.
func randomEvents(t *testing.T, rng *rand.Rand, n int) [][]byte {
	t.Helper()
	prices := []string{"price_levqor_starter_monthly", "price_levqor_growth_monthly", "price_levqor_business_annual",
		"price_levqor_extra_storage", "price_levqor_priority_support", "price_not_in_the_catalog"}
	statuses := []string{"active", "active", "trialing", "past_due", "canceled", "paused", "incomplete"}
	subTypes := []string{"customer.subscription.created", "customer.subscription.updated", "customer.subscription.updated",
		"customer.subscription.deleted", "customer.subscription.paused", "customer.subscription.resumed"}
	invTypes := []string{"invoice.paid", "invoice.payment_failed", "invoice.payment_failed", "invoice.payment_action_required"}
	var out [][]byte
	for i := 0; i < n; i++ {
		c := rng.IntN(8)
		cus := fmt.Sprintf("cus_e%d", c)
		sub := fmt.Sprintf("sub_e%d_%d", c, rng.IntN(2))
		created := t0.Add(time.Duration(rng.IntN(300)) * time.Second)
		id := fmt.Sprintf("evt_e%d", i)
		opts := stripesim.EventOptions{ID: id, Created: created, Customer: cus, Subscription: sub}
		var typ string
		switch k := rng.IntN(20); {
		case k < 8:
			typ = subTypes[rng.IntN(len(subTypes))]
			var items []map[string]any
			for j := 0; j <= rng.IntN(3); j++ {
				items = append(items, map[string]any{"id": fmt.Sprintf("si_%d_%d", i, j), "object": "subscription_item", "quantity": 1 + rng.IntN(2),
					"price": map[string]any{"id": prices[rng.IntN(len(prices))], "object": "price", "currency": "gbp", "metadata": map[string]any{}}})
			}
			opts.ObjectID = sub
			opts.Data, _ = json.Marshal(map[string]any{"status": statuses[rng.IntN(len(statuses))], "items": map[string]any{"object": "list", "data": items}})
		case k < 14:
			typ = invTypes[rng.IntN(len(invTypes))]
			opts.ObjectID = fmt.Sprintf("in_e%d_%d", c, rng.IntN(3))
		case k < 15:
			typ = "checkout.session.completed"
			opts.ObjectID = fmt.Sprintf("cs_e%d", rng.IntN(6))
			opts.AccountRef = fmt.Sprintf("acc_e%d", c)
			if rng.IntN(4) == 0 {
				opts.AccountRef = fmt.Sprintf("acc_e%d", rng.IntN(8)) // another customer's, or none
			}
			opts.Data, _ = json.Marshal(map[string]any{"mode": "payment", "payment_status": "paid",
				"metadata": map[string]any{"levqor_products": "dfy_onboarding:1,dfy_migration:2"}})
		case k < 16:
			typ = "charge.refunded"
			opts.ObjectID = fmt.Sprintf("ch_e%d", rng.IntN(4))
		case k < 17:
			typ = "charge.dispute.created"
			charge := fmt.Sprintf("ch_e%d", rng.IntN(4))
			if rng.IntN(2) == 0 {
				opts.Data, _ = json.Marshal(map[string]any{"charge": charge})
			} else {
				opts.Data, _ = json.Marshal(map[string]any{"charge": map[string]any{"id": charge, "object": "charge", "customer": cus}})
			}
		case k < 18:
			typ = []string{"customer.deleted", "customer.updated"}[rng.IntN(2)]
			opts.ObjectID = cus
		case k < 19:
			typ = "customer.subscription.trial_will_end"
			opts.ObjectID = sub
		default:
			typ = "invoice.created" // recorded only
			opts.ObjectID = fmt.Sprintf("in_e%d_%d", c, rng.IntN(3))
		}
		b, err := stripesim.NewEvent(typ, opts)
		require.NoError(t, err, typ)
		out = append(out, b)
	}
	unique := len(out)
	for j := 0; j < n/10; j++ {
		at := rng.IntN(len(out) + 1)
		out = append(out[:at], append([][]byte{out[rng.IntN(unique)]}, out[at:]...)...)
	}
	poison := []byte(`{"id":"evt_poison","object":"event","type":"invoice.paid","created":1700000000,"data":{"object":{"id":7}}}`)
	at := rng.IntN(len(out))
	return append(out[:at], append([][]byte{poison}, out[at:]...)...)
}

// billingDump is everything billing writes, as comparable text, with the
// times of the writes themselves left out.
func billingDump(t *testing.T, st *store.Store) map[string][]string {
	t.Helper()
	db := st.DB()
	queries := map[string]string{
		"accounts":      `SELECT id, COALESCE(tier, ''), status, entitlements, canceled_at IS NULL FROM accounts ORDER BY id`,
		"subscriptions": `SELECT id, COALESCE(account_id, ''), customer_id, status, items, unknown_prices, cancel_at_period_end, source_event_id FROM billing_subscriptions ORDER BY id`,
		"invoices":      `SELECT id, COALESCE(account_id, ''), customer_id, subscription_id, status, amount_due, attempt_count, source_event_id FROM billing_invoices ORDER BY id`,
		"charges":       `SELECT id, COALESCE(account_id, ''), customer_id, invoice_id, amount, amount_refunded, dispute_id, dispute_status, source_event_id FROM billing_charges ORDER BY id`,
		"dunning":       `SELECT account_id, state, invoice_id, past_due_since, grace_until, event_created FROM billing_dunning ORDER BY account_id`,
		"purchases":     `SELECT checkout_session_id, account_id, package, quantity, source_event_id FROM billing_dfy_purchases ORDER BY checkout_session_id`,
		"ledger":        `SELECT id, type, stream_seq FROM stripe_events ORDER BY id`,
		"inbox":         `SELECT consumer, msg_id FROM inbox ORDER BY consumer, msg_id`,
		"outbox":        `SELECT subject, headers, payload FROM outbox ORDER BY id`,
	}
	out := map[string][]string{}
	for table, q := range queries {
		rows, err := db.QueryxContext(context.Background(), q)
		require.NoError(t, err, table)
		for rows.Next() {
			cols, err := rows.SliceScan()
			require.NoError(t, err)
			line := ""
			for _, c := range cols {
				switch v := c.(type) {
				case []byte:
					if table == "outbox" {
						// The events' bytes, exactly: consumers get these.
						line += "|" + string(v)
						continue
					}
					line += "|" + normalJSON(v)
				case string:
					line += "|" + normalJSON([]byte(v))
				case time.Time:
					line += "|" + v.UTC().Format(time.RFC3339)
				default:
					line += fmt.Sprintf("|%v", v)
				}
			}
			out[table] = append(out[table], line)
		}
		require.NoError(t, rows.Err())
		rows.Close()
	}
	return out
}

// normalJSON renders JSON with sorted keys (PostgreSQL's jsonb reorders
// them); anything else as it is.
func normalJSON(b []byte) string {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return string(b)
	}
	n, _ := json.Marshal(v)
	return string(n)
}

// TestSetBasedBatchesWriteWhatOneAtATimeWrites is the batch path's
// property: applying events in set-based batches of any size writes
// exactly what applying them one at a time, each in its own transaction,
// writes: every billing table, the ledger, the inbox and the outbox
// events in their order. The events cover every type billing handles,
// out of order, with ties, repeats, unknown prices, unlinked customers,
// mismatched checkouts and a poison event.
func TestSetBasedBatchesWriteWhatOneAtATimeWrites(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{store.DialectSQLite, store.DialectPostgres} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			open := storetest.SQLite
			if dialect == store.DialectPostgres {
				open = storetest.Postgres
			}
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			events := randomEvents(t, rand.New(rand.NewPCG(seed, 11)), 400)
			rng := rand.New(rand.NewPCG(seed, 12))

			setup := func(st *store.Store) *harness {
				h := newHarness(t, st)
				for c := 0; c < 6; c++ {
					h.account(fmt.Sprintf("acc_e%d", c), fmt.Sprintf("cus_e%d", c))
				}
				return h
			}
			ref, got := setup(open(t)), setup(open(t))
			ctx := context.Background()

			// Some events fail once after their handler ran, as when a
			// later step of the middleware fails: everything they did must
			// be undone, and their redelivery, at the end, applies them.
			failOnce := func(fails map[string]bool, m *bus.Message) bool {
				h := fnv.New32a()
				fmt.Fprintf(h, "%d/%s", seed, m.ID())
				if m.ID() == "evt_poison" || fails[m.ID()] || h.Sum32()%20 != 0 {
					return false
				}
				fails[m.ID()] = true
				return true
			}
			injected := errors.New("injected failure after the handler ran")

			refFails := map[string]bool{}
			var refRetry []*bus.Message
			one := inbox.Handler(ref.st, func(ctx context.Context, tx *store.Tx, m *bus.Message) error {
				if err := ref.w.HandleStripe(ctx, tx, m); err != nil {
					return err
				}
				if failOnce(refFails, m) {
					return injected
				}
				return nil
			})
			deliver := func(i int, m *bus.Message) {
				err := one(ctx, m)
				switch {
				case errors.Is(err, injected):
					refRetry = append(refRetry, m)
				case err != nil:
					require.True(t, bus.IsPermanent(err), "event %d fails only for good: %v", i, err)
				}
			}
			for i, ev := range events {
				deliver(i, stripeMessage(t, ev, uint64(i+1)))
			}
			for i, m := range refRetry {
				deliver(i, m)
			}

			fails := map[string]bool{}
			var retry []*bus.Message
			batch := got.w.StripeHandler()
			run := func(msgs []*bus.Message) {
				err := batch(ctx, msgs, func(ctx context.Context, m *bus.Message, fn bus.Handler) error {
					err := fn(ctx, m)
					if err == nil && failOnce(fails, m) {
						retry = append(retry, m)
						return injected
					}
					if err != nil {
						require.True(t, bus.IsPermanent(err), "%s fails only for good: %v", m.ID(), err)
					}
					return err
				})
				require.NoError(t, err, "the batch commits")
			}
			for i := 0; i < len(events); {
				var msgs []*bus.Message
				for j := i; j < min(i+1+rng.IntN(40), len(events)); j++ {
					msgs = append(msgs, stripeMessage(t, events[j], uint64(j+1)))
				}
				i += len(msgs)
				run(msgs)
			}
			run(retry)
			require.NotEmpty(t, retry, "some events failed once")

			want, have := billingDump(t, ref.st), billingDump(t, got.st)
			require.NotEmpty(t, want["outbox"], "the events changed something")
			require.NotEmpty(t, want["dunning"])
			require.NotEmpty(t, want["purchases"])
			for table := range want {
				require.Equal(t, want[table], have[table], "%s (seed %d)", table, seed)
			}
		})
	}
}
