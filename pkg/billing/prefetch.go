package billing

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/stripe/stripe-go/v76"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/stripeapi"
)

// fetched is what prefetch got from Stripe for one batch, keyed by object
// id. A failed fetch is kept as its classified error and fails only the
// events that need it.
type fetched struct {
	subscriptions map[string]fetchedSubscription
	lineItems     map[string]fetchedLineItems
}

type fetchedSubscription struct {
	sub *stripe.Subscription // nil: Stripe no longer has it
	err error
}

type fetchedLineItems struct {
	products map[string]int64
	err      error
}

type fetchedKey struct{}

// prefetch looks at the batch's events, outside any transaction, for the
// two that need more than the event carries:
//
//   - customer.subscription.updated for a subscription billing does not
//     hold (and no earlier event of the batch creates): the event shows only
//     what changed lately, so the whole subscription is fetched;
//   - a paid payment-mode checkout.session.completed (or
//     async_payment_succeeded) without the
//     levqor_products metadata Levqor puts on its own sessions: its line
//     items are listed.
//
// Without a Stripe API nothing is fetched, and HandleStripe does what it
// can without (see subscription and checkoutProducts). A lookup that fails
// here leaves the event to fail alone in the transaction, as a retry.
func (w *Worker) prefetch(ctx context.Context, msgs []*bus.Message) context.Context {
	if w.Stripe == nil {
		return ctx
	}
	f := &fetched{subscriptions: map[string]fetchedSubscription{}, lineItems: map[string]fetchedLineItems{}}
	var updated []string
	created := map[string]bool{}
	for _, m := range msgs {
		var ev struct {
			Type string `json:"type"`
			Data struct {
				Object struct {
					ID            string            `json:"id"`
					Mode          string            `json:"mode"`
					PaymentStatus string            `json:"payment_status"`
					Metadata      map[string]string `json:"metadata"`
				} `json:"object"`
			} `json:"data"`
		}
		if json.Unmarshal(m.Data, &ev) != nil || ev.Data.Object.ID == "" {
			continue // HandleStripe refuses it with the reason
		}
		obj := ev.Data.Object
		switch ev.Type {
		case "customer.subscription.created":
			created[obj.ID] = true
		case "customer.subscription.updated":
			if !created[obj.ID] {
				updated = append(updated, obj.ID)
			}
		case "checkout.session.completed", "checkout.session.async_payment_succeeded":
			if obj.Mode == string(stripe.CheckoutSessionModePayment) &&
				(obj.PaymentStatus == string(stripe.CheckoutSessionPaymentStatusPaid) || obj.PaymentStatus == string(stripe.CheckoutSessionPaymentStatusNoPaymentRequired)) &&
				obj.Metadata["levqor_products"] == "" {
				if _, done := f.lineItems[obj.ID]; !done {
					products, err := w.listLineItems(ctx, obj.ID)
					f.lineItems[obj.ID] = fetchedLineItems{products: products, err: err}
				}
			}
		}
	}
	if len(updated) > 0 {
		known, err := w.Store.KnownSubscriptionIDs(ctx, updated)
		for _, id := range updated {
			if _, done := f.subscriptions[id]; done || known[id] {
				continue
			}
			if err != nil {
				f.subscriptions[id] = fetchedSubscription{err: fmt.Errorf("looking up subscription %s: %w", id, err)}
				continue
			}
			sub, err := w.fetchSubscription(ctx, id)
			f.subscriptions[id] = fetchedSubscription{sub: sub, err: err}
		}
	}
	return context.WithValue(ctx, fetchedKey{}, f)
}

// prefetched returns what prefetch got for ctx's batch; nil when it ran
// without a Stripe API.
func prefetched(ctx context.Context) *fetched {
	f, _ := ctx.Value(fetchedKey{}).(*fetched)
	return f
}

// errNotPrefetched is a retry: the transaction found it needs a Stripe
// object that prefetch did not fetch (state changed between the two). The
// next delivery fetches it before its transaction.
func errNotPrefetched(what string) error {
	return fmt.Errorf("billing: %s was not fetched from Stripe before the transaction; retrying", what)
}

// fetchSubscription gets the current subscription from Stripe; nil when
// Stripe no longer has it.
func (w *Worker) fetchSubscription(ctx context.Context, id string) (*stripe.Subscription, error) {
	params := &stripe.SubscriptionParams{}
	params.Context = ctx
	sub, err := w.Stripe.Subscriptions.Get(id, params)
	if stripeapi.NotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, stripeapi.Classify("fetching subscription "+id, err)
	}
	return sub, nil
}

// listLineItems returns the catalog product keys and quantities of
// checkout session id's line items; prices outside the catalog are left
// out.
func (w *Worker) listLineItems(ctx context.Context, id string) (map[string]int64, error) {
	params := &stripe.CheckoutSessionListLineItemsParams{Session: stripe.String(id)}
	params.Context = ctx
	out := map[string]int64{}
	it := w.Stripe.CheckoutSessions.ListLineItems(params)
	for it.Next() {
		li := it.LineItem()
		if li.Price == nil {
			continue
		}
		if ref, ok := w.Catalog.Resolve(catalog.Item{PriceID: li.Price.ID, LookupKey: li.Price.LookupKey}); ok {
			out[ref.Key] += max(li.Quantity, 1)
		}
	}
	if err := it.Err(); err != nil {
		return nil, stripeapi.Classify("listing line items of "+id, err)
	}
	return out, nil
}

// checkoutProducts returns the product keys a payment-mode session bought:
// from the metadata Levqor puts on the sessions it creates, otherwise from
// the session's line items, which prefetch listed.
func (w *Worker) checkoutProducts(ctx context.Context, session string, metadata map[string]string) (map[string]int64, error) {
	out := map[string]int64{}
	if meta := metadata["levqor_products"]; meta != "" {
		for _, part := range strings.Split(meta, ",") {
			key, q, _ := strings.Cut(part, ":")
			n, err := strconv.ParseInt(q, 10, 64)
			if err != nil || n < 1 {
				n = 1
			}
			out[strings.TrimSpace(key)] += n
		}
		return out, nil
	}
	if w.Stripe == nil {
		return nil, bus.Permanentf("checkout session %s carries no levqor_products metadata and no Stripe API key is configured to list its line items", session)
	}
	f := prefetched(ctx)
	if f == nil {
		return nil, errNotPrefetched("the line items of checkout session " + session)
	}
	got, ok := f.lineItems[session]
	if !ok {
		return nil, errNotPrefetched("the line items of checkout session " + session)
	}
	return got.products, got.err
}
