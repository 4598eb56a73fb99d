package billing

import (
	"bytes"

	json "github.com/goccy/go-json"
	"github.com/stripe/stripe-go/v76"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/store"
)

// The Stripe objects as billing reads them: only the fields it uses.
// Decoding into stripe-go's full types cost about three times as much
// (every field of every nested object, most of them pointers), a third of
// the worker's CPU per event. They are decoded with goccy/go-json, which
// keeps encoding/json's behaviour (TestParseEventDecodesAsEncodingJSON)
// at about a quarter of its cost (BenchmarkParseEvent: 43 µs → 10 µs).

// stripeEvent is what billing reads of a Stripe event's envelope.
type stripeEvent struct {
	ID      string
	Type    stripe.EventType
	Created int64
}

// ref is an expandable reference: Stripe sends the id, or the object
// itself when expanded.
type ref struct{ ID string }

func (r *ref) UnmarshalJSON(b []byte) error {
	switch {
	case bytes.Equal(b, []byte("null")):
		return nil
	case len(b) > 0 && b[0] == '"':
		return json.Unmarshal(b, &r.ID)
	}
	var o struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	r.ID = o.ID
	return nil
}

type subscriptionObject struct {
	ID                string `json:"id"`
	Customer          ref    `json:"customer"`
	Status            string `json:"status"`
	CurrentPeriodEnd  int64  `json:"current_period_end"`
	CancelAtPeriodEnd bool   `json:"cancel_at_period_end"`
	TrialEnd          int64  `json:"trial_end"`
	Items             *struct {
		Data []*itemObject `json:"data"`
	} `json:"items"`
}

type itemObject struct {
	Quantity int64        `json:"quantity"`
	Price    *priceObject `json:"price"`
}

type priceObject struct {
	ID        string            `json:"id"`
	LookupKey string            `json:"lookup_key"`
	Metadata  map[string]string `json:"metadata"`
	Product   ref               `json:"product"`
}

// subscriptionRow is the subscription as billing stores it, with the prices the
// catalog does not know.
func (w *Worker) subscriptionRow(sub *subscriptionObject, src store.SourceEvent) store.Subscription {
	s := store.Subscription{
		ID: sub.ID, CustomerID: sub.Customer.ID, Status: sub.Status,
		CurrentPeriodEnd: unixPtr(sub.CurrentPeriodEnd), CancelAtPeriodEnd: sub.CancelAtPeriodEnd,
		TrialEnd: unixPtr(sub.TrialEnd), Source: src,
	}
	if sub.Items == nil {
		return s
	}
	for _, it := range sub.Items.Data {
		if it == nil || it.Price == nil {
			continue
		}
		item := store.SubscriptionItem{PriceID: it.Price.ID, LookupKey: it.Price.LookupKey, Quantity: it.Quantity,
			Metadata: it.Price.Metadata, Product: it.Price.Product.ID}
		s.Items = append(s.Items, item)
		if _, ok := w.Catalog.Resolve(catalogItem(item)); !ok {
			s.UnknownPrices = append(s.UnknownPrices, item.PriceID)
		}
	}
	return s
}

// subscriptionFromAPI is what billing reads of a subscription fetched
// through the API.
func subscriptionFromAPI(sub *stripe.Subscription) *subscriptionObject {
	o := &subscriptionObject{ID: sub.ID, Status: string(sub.Status), CurrentPeriodEnd: sub.CurrentPeriodEnd,
		CancelAtPeriodEnd: sub.CancelAtPeriodEnd, TrialEnd: sub.TrialEnd}
	if sub.Customer != nil {
		o.Customer.ID = sub.Customer.ID
	}
	if sub.Items == nil {
		return o
	}
	o.Items = &struct {
		Data []*itemObject `json:"data"`
	}{}
	for _, it := range sub.Items.Data {
		if it == nil || it.Price == nil {
			continue
		}
		price := &priceObject{ID: it.Price.ID, LookupKey: it.Price.LookupKey, Metadata: it.Price.Metadata}
		if it.Price.Product != nil {
			price.Product.ID = it.Price.Product.ID
		}
		o.Items.Data = append(o.Items.Data, &itemObject{Quantity: it.Quantity, Price: price})
	}
	return o
}

type invoiceObject struct {
	ID                 string `json:"id"`
	Customer           ref    `json:"customer"`
	Subscription       ref    `json:"subscription"`
	Status             string `json:"status"`
	Currency           string `json:"currency"`
	AmountDue          int64  `json:"amount_due"`
	AmountPaid         int64  `json:"amount_paid"`
	AttemptCount       int64  `json:"attempt_count"`
	NextPaymentAttempt int64  `json:"next_payment_attempt"`
	HostedInvoiceURL   string `json:"hosted_invoice_url"`
	Created            int64  `json:"created"`
}

type checkoutObject struct {
	ID                string            `json:"id"`
	ClientReferenceID string            `json:"client_reference_id"`
	Metadata          map[string]string `json:"metadata"`
	Customer          ref               `json:"customer"`
	Mode              string            `json:"mode"`
	PaymentStatus     string            `json:"payment_status"`
}

type chargeObject struct {
	ID             string `json:"id"`
	Customer       ref    `json:"customer"`
	Invoice        ref    `json:"invoice"`
	Amount         int64  `json:"amount"`
	AmountRefunded int64  `json:"amount_refunded"`
	Currency       string `json:"currency"`
}

type disputeObject struct {
	ID     string    `json:"id"`
	Charge chargeRef `json:"charge"`
	Amount int64     `json:"amount"`
	Status string    `json:"status"`
	Reason string    `json:"reason"`
}

// chargeRef is a dispute's charge: its id, and its customer when
// expanded.
type chargeRef struct {
	ID       string
	Customer ref
}

func (c *chargeRef) UnmarshalJSON(b []byte) error {
	switch {
	case bytes.Equal(b, []byte("null")):
		return nil
	case len(b) > 0 && b[0] == '"':
		return json.Unmarshal(b, &c.ID)
	}
	var o struct {
		ID       string `json:"id"`
		Customer ref    `json:"customer"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	c.ID, c.Customer = o.ID, o.Customer
	return nil
}

type customerObject struct {
	ID string `json:"id"`
}

// parsedEvent is a Stripe event decoded once: its envelope, its ledger
// row, and its object in the one field its type uses.
type parsedEvent struct {
	ev     stripeEvent
	ledger store.StripeEvent
	sub    *subscriptionObject
	inv    *invoiceObject
	cs     *checkoutObject
	ch     *chargeObject
	dp     *disputeObject
	cus    *customerObject
}

// parseEvent decodes m's Stripe event. Every error is permanent: no
// redelivery changes the bytes.
//
// The payload is read twice: by the envelope scanner (ledgerRow), which
// also checks that it is valid JSON, and once by encoding/json straight
// into the object type the event's handler reads (decoding data.object
// as raw JSON first, then again into its type, cost a third pass).
func parseEvent(m *bus.Message) (*parsedEvent, error) {
	row, err := ledgerRow(m)
	if err != nil {
		return nil, err
	}
	p := &parsedEvent{ledger: row, ev: stripeEvent{ID: row.ID, Type: stripe.EventType(row.Type), Created: row.Created.Unix()}}
	var obj any
	var id *string
	switch handlerOf(p.ev.Type) {
	case handleSubscription, handleTrialWillEnd:
		p.sub = &subscriptionObject{}
		obj, id = p.sub, &p.sub.ID
	case handleInvoice:
		p.inv = &invoiceObject{}
		obj, id = p.inv, &p.inv.ID
	case handleCheckout:
		p.cs = &checkoutObject{}
		obj, id = p.cs, &p.cs.ID
	case handleRefund:
		p.ch = &chargeObject{}
		obj, id = p.ch, &p.ch.ID
	case handleDispute:
		p.dp = &disputeObject{}
		obj, id = p.dp, &p.dp.ID
	case handleCustomer:
		p.cus = &customerObject{}
		obj, id = p.cus, &p.cus.ID
	default:
		return p, nil // recorded in the ledger only
	}
	// encoding/json decodes into the pointer an interface holds.
	body := struct {
		Data struct {
			Object any `json:"object"`
		} `json:"data"`
	}{}
	body.Data.Object = obj
	if err := json.Unmarshal(m.Data, &body); err != nil {
		return nil, bus.Permanentf("decoding %s data.object: %v", p.ev.Type, err)
	}
	if body.Data.Object == nil || *id == "" {
		return nil, bus.Permanentf("stripe event %s (%s): data.object is missing or has no id", p.ev.ID, p.ev.Type)
	}
	return p, nil
}

// handler names what billing does with an event type.
type handler int

const (
	handleNothing handler = iota // recorded in the ledger only
	handleSubscription
	handleTrialWillEnd
	handleInvoice
	handleCheckout
	handleRefund
	handleDispute
	handleCustomer
)

func handlerOf(t stripe.EventType) handler {
	switch t {
	case "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
		"customer.subscription.paused", "customer.subscription.resumed":
		return handleSubscription
	case "customer.subscription.trial_will_end":
		return handleTrialWillEnd
	case "invoice.paid", "invoice.payment_failed", "invoice.payment_action_required":
		return handleInvoice
	case "checkout.session.completed", "checkout.session.async_payment_succeeded":
		// A session paid by a delayed method (a bank debit) completes
		// unpaid; its purchases count once async_payment_succeeded says
		// the money arrived. async_payment_failed changes nothing: the
		// ledger has it.
		return handleCheckout
	case "charge.refunded":
		return handleRefund
	case "charge.dispute.created":
		return handleDispute
	case "customer.updated", "customer.deleted":
		return handleCustomer
	}
	return handleNothing
}
