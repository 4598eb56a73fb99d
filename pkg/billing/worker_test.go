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
	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/scheduler"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/store/storetest"
	"github.com/levqor/levqor/pkg/stripesim"
)

type harness struct {
	t   *testing.T
	st  *store.Store
	w   *billing.Worker
	seq uint64
}

func newHarness(t *testing.T, st *store.Store) *harness {
	t.Helper()
	cat, err := catalog.Load("")
	require.NoError(t, err)
	log := logrus.New()
	log.Out = io.Discard
	return &harness{t: t, st: st, w: &billing.Worker{Store: st, Catalog: cat, Topology: bus.Topology{}.WithDefaults(), Log: log}}
}

func (h *harness) account(id, customer string) {
	h.t.Helper()
	require.NoError(h.t, h.st.InTx(context.Background(), func(tx *store.Tx) error {
		_, err := tx.InsertAccount(context.Background(), store.Account{ID: id, Name: "Acme " + id, ContactEmail: id + "@example.com", StripeCustomerID: customer})
		return err
	}))
}

// deliver hands one Stripe event to the billing-stripe handler the way the
// router does: a batch of one.
func (h *harness) deliver(payload []byte) error {
	h.t.Helper()
	var env struct{ ID, Type string }
	require.NoError(h.t, json.Unmarshal(payload, &env))
	h.seq++
	m := &bus.Message{
		Subject: "levqor.stripe." + env.Type, Data: payload, Header: nats.Header{bus.HeaderMsgID: {env.ID}},
		Stream: "STRIPE", Consumer: billing.ConsumerStripe, StreamSeq: h.seq, Deliveries: 1, Published: time.Now().UTC(),
	}
	return bus.SingleHandler(h.w.StripeHandler())(context.Background(), m)
}

func (h *harness) must(payload []byte) {
	h.t.Helper()
	require.NoError(h.t, h.deliver(payload))
}

func (h *harness) get(id string) *store.Account {
	h.t.Helper()
	a, err := h.st.GetAccount(context.Background(), id)
	require.NoError(h.t, err)
	return a
}

func (h *harness) entitlements(id string) catalog.Entitlements {
	h.t.Helper()
	var e catalog.Entitlements
	require.NoError(h.t, json.Unmarshal(h.get(id).Entitlements, &e))
	return e
}

func (h *harness) tick(job string, slot time.Time) {
	h.t.Helper()
	b, _ := json.Marshal(scheduler.Tick{Job: job, Slot: slot})
	m := &bus.Message{Subject: "levqor.tick." + job, Data: b, Header: nats.Header{}, Consumer: billing.ConsumerTick}
	require.NoError(h.t, h.w.HandleTick(context.Background(), m))
}

type item struct {
	price string
	qty   int
}

// subEvent builds a subscription event for customer with the given items.
func subEvent(t *testing.T, typ, evID, sub, customer, status string, created time.Time, items ...item) []byte {
	t.Helper()
	var data []map[string]any
	for i, it := range items {
		data = append(data, map[string]any{
			"id": fmt.Sprintf("si_%s_%d", sub, i), "object": "subscription_item", "quantity": it.qty,
			"price": map[string]any{"id": it.price, "object": "price", "currency": "gbp", "metadata": map[string]any{}},
		})
	}
	patch, _ := json.Marshal(map[string]any{"status": status, "items": map[string]any{"object": "list", "data": data}})
	b, err := stripesim.NewEvent(typ, stripesim.EventOptions{ID: evID, Created: created, Customer: customer, ObjectID: sub, Data: patch})
	require.NoError(t, err)
	return b
}

func invoiceEvent(t *testing.T, typ, evID, inv, customer, sub string, created time.Time) []byte {
	t.Helper()
	b, err := stripesim.NewEvent(typ, stripesim.EventOptions{ID: evID, Created: created, Customer: customer, ObjectID: inv, Subscription: sub})
	require.NoError(t, err)
	return b
}

var t0 = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

func TestSubscriptionLifecycle(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		h.account("acc_life", "cus_life")
		require.Equal(t, "active", h.get("acc_life").Status)
		require.Nil(t, h.get("acc_life").Tier)

		h.must(subEvent(t, "customer.subscription.created", "evt_l1", "sub_life", "cus_life", "active", t0, item{"price_levqor_growth_monthly", 1}))
		a := h.get("acc_life")
		require.Equal(t, "growth", *a.Tier)
		require.Equal(t, "active", a.Status)
		e := h.entitlements("acc_life")
		require.Equal(t, 500, e.StorageGB)
		require.Equal(t, 14, e.Retention.KeepDaily)

		h.must(subEvent(t, "customer.subscription.updated", "evt_l2", "sub_life", "cus_life", "active", t0.Add(time.Minute),
			item{"price_levqor_growth_monthly", 1}, item{"price_levqor_extra_storage", 2}))
		require.Equal(t, 700, h.entitlements("acc_life").StorageGB, "add-on raises the quota")

		h.must(subEvent(t, "customer.subscription.paused", "evt_l3", "sub_life", "cus_life", "paused", t0.Add(2*time.Minute), item{"price_levqor_growth_monthly", 1}))
		require.Equal(t, "paused", h.get("acc_life").Status)
		require.Nil(t, h.get("acc_life").Tier)

		h.must(subEvent(t, "customer.subscription.resumed", "evt_l4", "sub_life", "cus_life", "active", t0.Add(3*time.Minute), item{"price_levqor_growth_monthly", 1}))
		require.Equal(t, "active", h.get("acc_life").Status)
		require.Equal(t, "growth", *h.get("acc_life").Tier)

		h.must(subEvent(t, "customer.subscription.deleted", "evt_l5", "sub_life", "cus_life", "active", t0.Add(4*time.Minute), item{"price_levqor_growth_monthly", 1}))
		require.Equal(t, "canceled", h.get("acc_life").Status)
		require.Nil(t, h.get("acc_life").Tier)
		require.JSONEq(t, `{}`, string(h.get("acc_life").Entitlements))

		// Every change was announced through the outbox.
		rows, err := st.UnpublishedOutbox(context.Background(), 100)
		require.NoError(t, err)
		kinds := map[string]int{}
		for _, r := range rows {
			kinds[r.Subject]++
			require.Equal(t, "acc_life", r.Headers[bus.HeaderAccount])
		}
		require.Equal(t, 5, kinds["levqor.event.billing.entitlements_changed"])
		require.GreaterOrEqual(t, kinds["levqor.event.billing.account_status_changed"], 3)
	})
}

func TestOlderEventChangesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t))
	h.account("acc_old", "cus_old")
	h.must(subEvent(t, "customer.subscription.updated", "evt_new", "sub_old", "cus_old", "active", t0.Add(time.Hour), item{"price_levqor_business_annual", 1}))
	h.must(subEvent(t, "customer.subscription.created", "evt_older", "sub_old", "cus_old", "active", t0, item{"price_levqor_starter_monthly", 1}))
	require.Equal(t, "business", *h.get("acc_old").Tier, "the older event arrived last and was ignored")
}

func TestUnknownPriceLeavesEntitlementsAlone(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	h := newHarness(t, st)
	h.account("acc_unk", "cus_unk")
	h.must(subEvent(t, "customer.subscription.created", "evt_u1", "sub_unk", "cus_unk", "active", t0, item{"price_levqor_starter_monthly", 1}))
	before := h.get("acc_unk")
	h.must(subEvent(t, "customer.subscription.updated", "evt_u2", "sub_unk", "cus_unk", "active", t0.Add(time.Minute), item{"price_made_up_in_dashboard", 1}))
	after := h.get("acc_unk")
	require.Equal(t, *before.Tier, *after.Tier)
	require.JSONEq(t, string(before.Entitlements), string(after.Entitlements))
	var sub *store.Subscription
	require.NoError(t, st.InTx(context.Background(), func(tx *store.Tx) error {
		var err error
		sub, err = tx.GetSubscription(context.Background(), "sub_unk")
		return err
	}))
	require.Equal(t, []string{"price_made_up_in_dashboard"}, sub.UnknownPrices, "recorded with the subscription")
	rows, err := st.UnpublishedOutbox(context.Background(), 100)
	require.NoError(t, err)
	found := false
	for _, r := range rows {
		found = found || r.Subject == "levqor.event.billing.unknown_price"
	}
	require.True(t, found, "raised to operators")
	require.Equal(t, before.Status, after.Status)
}

// A subscription holding only prices the catalog does not know must not
// change what the customer gets: Stripe says it is active, so the account
// is neither canceled nor given a tier on a guess.
func TestOnlyUnknownPricesChangeNothing(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		h.account("acc_only", "cus_only")
		before := h.get("acc_only")
		h.must(subEvent(t, "customer.subscription.created", "evt_o1", "sub_only", "cus_only", "active", t0, item{"price_made_up_in_dashboard", 1}))
		after := h.get("acc_only")
		require.Equal(t, before.Status, after.Status, "not canceled while Stripe says active")
		require.Nil(t, after.Tier)
		require.JSONEq(t, string(before.Entitlements), string(after.Entitlements))

		// Same for an account that had a tier: its tier, entitlements and
		// status all stay.
		h.account("acc_had", "cus_had")
		h.must(subEvent(t, "customer.subscription.created", "evt_o2", "sub_had", "cus_had", "active", t0, item{"price_levqor_growth_monthly", 1}))
		had := h.get("acc_had")
		h.must(subEvent(t, "customer.subscription.updated", "evt_o3", "sub_had", "cus_had", "active", t0.Add(time.Minute), item{"price_made_up_in_dashboard", 1}))
		now := h.get("acc_had")
		require.Equal(t, had.Status, now.Status)
		require.Equal(t, *had.Tier, *now.Tier)
		require.JSONEq(t, string(had.Entitlements), string(now.Entitlements))

		rows, err := st.UnpublishedOutbox(context.Background(), 100)
		require.NoError(t, err)
		raised := 0
		for _, r := range rows {
			switch r.Subject {
			case "levqor.event.billing.account_status_changed":
				require.NotEqual(t, "acc_only", r.Headers[bus.HeaderAccount], "no status change announced on a guess")
			case "levqor.event.billing.unknown_price":
				raised++
			}
		}
		require.Equal(t, 2, raised, "each unknown price is raised to operators")
	})
}

func TestDunningOverTime(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		h.account("acc_dun", "cus_dun")
		h.must(subEvent(t, "customer.subscription.created", "evt_d1", "sub_dun", "cus_dun", "active", t0, item{"price_levqor_business_monthly", 1}))
		h.must(invoiceEvent(t, "invoice.payment_failed", "evt_d2", "in_dun1", "cus_dun", "sub_dun", t0.Add(time.Hour)))
		require.Equal(t, "past_due", h.get("acc_dun").Status)
		require.Equal(t, "business", *h.get("acc_dun").Tier, "still entitled during grace")

		h.tick(billing.JobDunning, t0.Add(time.Hour+6*24*time.Hour))
		require.Equal(t, "past_due", h.get("acc_dun").Status, "six days in: still in grace")
		h.tick(billing.JobDunning, t0.Add(time.Hour+7*24*time.Hour))
		require.Equal(t, "suspended", h.get("acc_dun").Status, "grace over without payment")
		h.tick(billing.JobDunning, t0.Add(time.Hour+8*24*time.Hour))
		require.Equal(t, "suspended", h.get("acc_dun").Status, "a later tick changes nothing more")

		h.must(invoiceEvent(t, "invoice.paid", "evt_d3", "in_dun1", "cus_dun", "sub_dun", t0.Add(9*24*time.Hour)))
		require.Equal(t, "active", h.get("acc_dun").Status, "paying restores the account")
		d, err := st.GetDunning(context.Background(), "acc_dun")
		require.NoError(t, err)
		require.Equal(t, store.DunningSettled, d.State)
	})
}

func TestPaymentBeforeGraceEndsPreventsSuspension(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t))
	h.account("acc_ok", "cus_ok")
	h.must(subEvent(t, "customer.subscription.created", "evt_o1", "sub_ok", "cus_ok", "active", t0, item{"price_levqor_growth_monthly", 1}))
	h.must(invoiceEvent(t, "invoice.payment_failed", "evt_o2", "in_ok", "cus_ok", "sub_ok", t0.Add(time.Hour)))
	h.must(invoiceEvent(t, "invoice.paid", "evt_o3", "in_ok", "cus_ok", "sub_ok", t0.Add(2*time.Hour)))
	h.tick(billing.JobDunning, t0.Add(30*24*time.Hour))
	require.Equal(t, "active", h.get("acc_ok").Status)
}

func TestDuplicateDeliveryHasOneEffect(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	h := newHarness(t, st)
	h.account("acc_dup", "cus_dup")
	ev := subEvent(t, "customer.subscription.created", "evt_dup", "sub_dup", "cus_dup", "active", t0, item{"price_levqor_growth_monthly", 1})
	h.must(ev)
	h.must(ev)
	h.must(ev)
	rows, err := st.UnpublishedOutbox(context.Background(), 100)
	require.NoError(t, err)
	n := 0
	for _, r := range rows {
		if r.Subject == "levqor.event.billing.entitlements_changed" {
			n++
		}
	}
	require.Equal(t, 1, n)
}

func TestCheckoutRecordsDFYForTheAccountsOwnCustomerOnly(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	h := newHarness(t, st)
	h.account("acc_co", "cus_original")
	patch := []byte(`{"mode":"payment","metadata":{"levqor_products":"dfy_onboarding:1,dfy_recovery_drill:2"}}`)
	b, err := stripesim.NewEvent("checkout.session.completed", stripesim.EventOptions{ID: "evt_co", Customer: "cus_original", AccountRef: "acc_co", Data: patch})
	require.NoError(t, err)
	h.must(b)
	ps, err := st.DFYPurchases(context.Background(), "acc_co")
	require.NoError(t, err)
	require.Len(t, ps, 2)
	h.must(b) // duplicate delivery
	ps, _ = st.DFYPurchases(context.Background(), "acc_co")
	require.Len(t, ps, 2)

	// Paid by a bank debit: the session completes unpaid and counts only
	// once Stripe says the money arrived; a failed debit records nothing.
	unpaid := []byte(`{"mode":"payment","payment_status":"unpaid","metadata":{"levqor_products":"dfy_onboarding:1"}}`)
	later, err := stripesim.NewEvent("checkout.session.completed", stripesim.EventOptions{ID: "evt_co_debit", Customer: "cus_original", AccountRef: "acc_co", ObjectID: "cs_debit", Data: unpaid})
	require.NoError(t, err)
	h.must(later)
	ps, _ = st.DFYPurchases(context.Background(), "acc_co")
	require.Len(t, ps, 2, "not paid yet")
	bounced, err := stripesim.NewEvent("checkout.session.async_payment_failed", stripesim.EventOptions{ID: "evt_co_debit_failed", Customer: "cus_original", AccountRef: "acc_co", ObjectID: "cs_bounced", Data: unpaid})
	require.NoError(t, err)
	h.must(bounced)
	ps, _ = st.DFYPurchases(context.Background(), "acc_co")
	require.Len(t, ps, 2, "a failed debit buys nothing")
	paid, err := stripesim.NewEvent("checkout.session.async_payment_succeeded", stripesim.EventOptions{ID: "evt_co_debit_paid", Customer: "cus_original", AccountRef: "acc_co", ObjectID: "cs_debit",
		Data: []byte(`{"mode":"payment","payment_status":"paid","metadata":{"levqor_products":"dfy_onboarding:1"}}`)})
	require.NoError(t, err)
	h.must(paid)
	h.must(paid)
	ps, _ = st.DFYPurchases(context.Background(), "acc_co")
	require.Len(t, ps, 3, "paid: the purchase counts, once")
	free, err := stripesim.NewEvent("checkout.session.completed", stripesim.EventOptions{ID: "evt_co_coupon", Customer: "cus_original", AccountRef: "acc_co", ObjectID: "cs_coupon",
		Data: []byte(`{"mode":"payment","payment_status":"no_payment_required","metadata":{"levqor_products":"dfy_onboarding:1"}}`)})
	require.NoError(t, err)
	h.must(free)
	ps, _ = st.DFYPurchases(context.Background(), "acc_co")
	require.Len(t, ps, 4, "a coupon paid it all: nothing will follow, it counts now")

	// A signed session naming the account but paid by another customer (a
	// payment link, or someone who knows the account id): the account keeps
	// its customer, nothing is recorded for it, and operators are told.
	other, err := stripesim.NewEvent("checkout.session.completed", stripesim.EventOptions{ID: "evt_co_other", Customer: "cus_intruder", AccountRef: "acc_co", Data: patch})
	require.NoError(t, err)
	h.must(other)
	require.Equal(t, "cus_original", h.get("acc_co").StripeCustomerID, "a webhook never replaces an account's customer")
	ps, _ = st.DFYPurchases(context.Background(), "acc_co")
	require.Len(t, ps, 4, "the other customer's purchases are not the account's")
	rows, err := st.UnpublishedOutbox(context.Background(), 100)
	require.NoError(t, err)
	var mismatches []events.CustomerMismatch
	for _, r := range rows {
		if r.Subject == "levqor.event.billing.customer_mismatch" {
			var ev events.CustomerMismatch
			require.NoError(t, json.Unmarshal(r.Payload, &ev))
			mismatches = append(mismatches, ev)
		}
	}
	require.Len(t, mismatches, 1)
	require.Equal(t, "acc_co", mismatches[0].AccountID)
	require.Equal(t, [2]string{"cus_original", "cus_intruder"}, [2]string{mismatches[0].AccountCustomerID, mismatches[0].SessionCustomerID})
	require.Contains(t, mismatches[0].Reason, "was not relinked")

	// A session for no Levqor account (a payment link, another
	// environment): recorded in the ledger, not dead-lettered, and no
	// account is linked to its customer.
	foreign, err := stripesim.NewEvent("checkout.session.completed", stripesim.EventOptions{ID: "evt_co_foreign", AccountRef: "acc_nobody", Customer: "cus_foreign"})
	require.NoError(t, err)
	h.must(foreign)
	_, err = st.GetStripeEvent(context.Background(), "evt_co_foreign")
	require.NoError(t, err, "in the ledger")
	_, err = st.GetAccount(context.Background(), "acc_nobody")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.Equal(t, "cus_original", h.get("acc_co").StripeCustomerID, "no other account changed")
}

func TestRefundsAndDisputes(t *testing.T) {
	t.Parallel()
	st := storetest.SQLite(t)
	h := newHarness(t, st)
	h.account("acc_ch", "cus_ch")
	ref, err := stripesim.NewEvent("charge.refunded", stripesim.EventOptions{ID: "evt_r1", Customer: "cus_ch", ObjectID: "ch_1", Created: t0})
	require.NoError(t, err)
	h.must(ref)
	dis, err := stripesim.NewEvent("charge.dispute.created", stripesim.EventOptions{ID: "evt_r2", Created: t0.Add(time.Minute), Data: []byte(`{"charge":"ch_1"}`)})
	require.NoError(t, err)
	h.must(dis)
	var c *store.Charge
	require.NoError(t, st.InTx(context.Background(), func(tx *store.Tx) error {
		c, err = tx.GetCharge(context.Background(), "ch_1")
		return err
	}))
	require.Equal(t, "acc_ch", c.AccountID)
	require.NotEmpty(t, c.DisputeID)
	require.Positive(t, c.AmountRefunded)
}

// TestShuffledEventsReachOneFinalState feeds one account's history in many
// random orders, with duplicates, and requires the same final state every
// time: Stripe delivers out of order and more than once.
func TestShuffledEventsReachOneFinalState(t *testing.T) {
	t.Parallel()
	history := func(t *testing.T, cus, sub string) [][]byte {
		return [][]byte{
			subEvent(t, "customer.subscription.created", "evt_s1"+cus, sub, cus, "active", t0, item{"price_levqor_starter_monthly", 1}),
			invoiceEvent(t, "invoice.paid", "evt_s2"+cus, "in_a"+cus, cus, sub, t0.Add(1*time.Second)),
			subEvent(t, "customer.subscription.updated", "evt_s3"+cus, sub, cus, "active", t0.Add(2*time.Second), item{"price_levqor_growth_monthly", 1}, item{"price_levqor_extra_storage", 2}),
			invoiceEvent(t, "invoice.payment_failed", "evt_s4"+cus, "in_b"+cus, cus, sub, t0.Add(3*time.Second)),
			invoiceEvent(t, "invoice.paid", "evt_s5"+cus, "in_b"+cus, cus, sub, t0.Add(4*time.Second)),
			subEvent(t, "customer.subscription.updated", "evt_s6"+cus, sub, cus, "active", t0.Add(5*time.Second), item{"price_levqor_business_annual", 1}, item{"price_levqor_priority_support", 1}),
			invoiceEvent(t, "invoice.payment_failed", "evt_s7"+cus, "in_c"+cus, cus, sub, t0.Add(6*time.Second)),
		}
	}
	type final struct {
		Tier, Status string
		Ent          string
		Sub          string
	}
	st := storetest.SQLite(t)
	h := newHarness(t, st)
	state := func(acc, sub string) final {
		a := h.get(acc)
		var s *store.Subscription
		require.NoError(t, st.InTx(context.Background(), func(tx *store.Tx) error {
			var err error
			s, err = tx.GetSubscription(context.Background(), sub)
			return err
		}))
		tier := ""
		if a.Tier != nil {
			tier = *a.Tier
		}
		var e map[string]any
		require.NoError(t, json.Unmarshal(a.Entitlements, &e))
		eb, _ := json.Marshal(e)
		return final{Tier: tier, Status: a.Status, Ent: string(eb), Sub: fmt.Sprint(s.Status, s.Items, s.Source.ID[:6])}
	}

	h.account("acc_ref", "cus_ref")
	for _, ev := range history(t, "cus_ref", "sub_ref") {
		h.must(ev)
	}
	want := state("acc_ref", "sub_ref")
	require.Equal(t, "business", want.Tier)
	require.Equal(t, "past_due", want.Status, "the last event is a failed payment")

	seed := uint64(time.Now().UnixNano())
	t.Logf("shuffle seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	for i := 0; i < 100; i++ {
		cus, sub, acc := fmt.Sprintf("cus_p%d", i), fmt.Sprintf("sub_p%d", i), fmt.Sprintf("acc_p%d", i)
		h.account(acc, cus)
		evs := history(t, cus, sub)
		for j := 0; j < 3; j++ { // duplicates
			evs = append(evs, evs[rng.IntN(len(evs))])
		}
		rng.Shuffle(len(evs), func(a, b int) { evs[a], evs[b] = evs[b], evs[a] })
		for _, ev := range evs {
			h.must(ev)
		}
		got := state(acc, sub)
		require.Equal(t, want.Tier, got.Tier, "permutation %d (seed %d)", i, seed)
		require.Equal(t, want.Status, got.Status, "permutation %d", i)
		require.Equal(t, want.Ent, got.Ent, "permutation %d", i)
	}
}

func isPermanent(err error) bool { return bus.IsPermanent(err) }
