package stripesim

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// ErrUnknownEventType is returned by NewEvent for an event type it cannot
// build. The error message lists the types it can.
var ErrUnknownEventType = errors.New("stripesim: unknown event type")

// SupportedTypes lists the event types NewEvent can build, sorted. The
// slice is a copy the caller may keep or change.
func SupportedTypes() []string {
	return slices.Clone(supportedTypes)
}

// EventOptions shapes one event. The zero value builds a plausible event
// with fresh random ids, created now, in test mode.
type EventOptions struct {
	// ID is the event id, the dedupe key all the way to the workers'
	// inbox. Default: "evt_" and 24 random alphanumerics.
	ID string
	// Created is the event's creation time, which the workers use to
	// ignore events older than the state they already hold. The object's
	// own timestamps (periods, trials, payments) are placed relative to
	// it. Default: now.
	Created time.Time
	// APIVersion labels the event. The object shapes are always those of
	// stripe.APIVersion, the version stripe-go v76 parses, which is also
	// the default; webhook.ConstructEvent rejects any other label unless
	// told to ignore the mismatch.
	APIVersion string
	// Livemode marks the event and its objects as live rather than test.
	Livemode bool
	// Customer is the customer id wherever the object carries one.
	// Default: "cus_" and 14 random alphanumerics. For customer.* events
	// it is the object's id when ObjectID is empty.
	Customer string
	// Subscription is the subscription id that invoices, their lines and
	// completed Checkout Sessions refer to, so that a test can follow one
	// subscription through its events. Default: "sub_" and 24 random
	// alphanumerics. For customer.subscription.* events it is the
	// object's id when ObjectID is empty.
	Subscription string
	// ObjectID is the id of data.object. Default: a random id with the
	// object's prefix: sub_, in_, cs_test_ (cs_live_ in live mode), ch_,
	// du_, cus_ or pi_.
	ObjectID string
	// Price is the price id on subscription items and invoice lines
	// (Checkout Sessions omit line_items in events, as Stripe does).
	// The lookup key is the id without "price_"; a lookup key ending in
	// _annual or _yearly bills yearly at GBP 490.00, anything else
	// monthly at GBP 49.00. Default: "price_growth_monthly".
	Price string
	// AccountRef is a checkout.session's client_reference_id, the Levqor
	// account the session was created for. Default: null.
	AccountRef string
	// Data is a JSON object deep-merged into data.object: objects merge
	// key by key, recursively; any other value, arrays and null included,
	// replaces the value it meets. Keys new to the object are appended.
	// It is how a caller sets what the options above do not, such as a
	// status, metadata or amounts.
	Data json.RawMessage
	// PreviousAttributes is the JSON object sent as
	// data.previous_attributes. Stripe sends it only with *.updated
	// events, which get a plausible default when it is empty; it is
	// included for any event type it is set on.
	PreviousAttributes json.RawMessage
}

// NewEvent builds the exact JSON bytes of a Stripe event of the given type,
// as Stripe would deliver it to a webhook endpoint: the event envelope
// (object "event", api_version, created, pending_webhooks, request with id
// and idempotency_key, type) around a data.object with the fields and
// statuses of the real object at that moment in its life. Unknown types
// return an error wrapping ErrUnknownEventType.
//
// NewEvent is safe for concurrent use. Without Data it renders a
// precompiled template and does not decode any JSON.
func NewEvent(eventType string, opts EventOptions) ([]byte, error) {
	spec, ok := specs[eventType]
	if !ok {
		return nil, fmt.Errorf("%w %q; supported types: %s",
			ErrUnknownEventType, eventType, strings.Join(supportedTypes, ", "))
	}

	b := getBuilder()
	defer putBuilder(b)
	b.spec = spec
	b.opts = &opts
	b.eventType = eventType
	b.apiVersion = opts.APIVersion
	if b.apiVersion == "" {
		b.apiVersion = stripe.APIVersion
	}
	created := opts.Created
	if created.IsZero() {
		created = time.Now()
	}
	b.evt = created.Unix()
	price := opts.Price
	if price == "" {
		price = defaultPrice
	}
	b.price = priceFor(price)
	b.created = b.evt
	b.periodStart = b.evt
	spec.state(b)

	env := envelope
	var prev []byte
	switch {
	case len(opts.PreviousAttributes) > 0:
		var err error
		if prev, err = indentObject(opts.PreviousAttributes, objectPrefix); err != nil {
			return nil, fmt.Errorf("stripesim: previous attributes: %w", err)
		}
	case spec.prev != nil:
		prev = spec.prev.render(nil, b)
	}
	if prev != nil {
		b.vals[vPreviousAttributes] = prev
		env = envelopeWithPrev
	}

	size := env.estimate() + spec.kind.tmpl.estimate() + len(prev)
	if len(opts.Data) > 0 {
		obj := spec.kind.tmpl.render(make([]byte, 0, spec.kind.tmpl.estimate()), b)
		merged, err := mergeObject(obj, opts.Data, objectPrefix)
		if err != nil {
			return nil, fmt.Errorf("stripesim: data: %w", err)
		}
		b.vals[vObject] = merged
		size += len(merged)
	}
	return env.render(make([]byte, 0, size), b), nil
}
