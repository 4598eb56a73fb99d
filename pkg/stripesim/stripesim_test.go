package stripesim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"
)

const testSecret = "whsec_levqor_test_secret"

// verify checks payload the way ingest does and returns the parsed event.
func verify(t *testing.T, payload []byte) stripe.Event {
	t.Helper()
	ev, err := webhook.ConstructEventWithOptions(payload, Sign(payload, testSecret, time.Now()), testSecret,
		webhook.ConstructEventOptions{Tolerance: 300 * time.Second})
	require.NoError(t, err)
	return ev
}

// camel turns an event type into a subtest name: invoice.paid -> InvoicePaid.
func camel(eventType string) string {
	var sb strings.Builder
	up := true
	for _, r := range eventType {
		if r == '.' || r == '_' {
			up = true
			continue
		}
		if up {
			r = unicode.ToUpper(r)
			up = false
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// objectSummary is what every test checks of a data.object, whatever its type.
type objectSummary struct {
	id, customer, price, status string
	interval                    stripe.PriceRecurringInterval
}

// wantEvent is what a user of an event type would notice if it were wrong.
type wantEvent struct {
	status string
	// check asserts type-specific fields of data.object.
	check func(t *testing.T, raw json.RawMessage)
}

var wantEvents = map[string]wantEvent{
	"checkout.session.completed": {status: "complete", check: func(t *testing.T, raw json.RawMessage) {
		var s stripe.CheckoutSession
		require.NoError(t, json.Unmarshal(raw, &s))
		require.Equal(t, stripe.CheckoutSessionModeSubscription, s.Mode)
		require.Equal(t, stripe.CheckoutSessionPaymentStatusPaid, s.PaymentStatus)
		require.NotEmpty(t, s.Subscription.ID)
		require.Nil(t, s.PaymentIntent)
		require.Nil(t, s.LineItems, "Stripe omits line_items from events")
		require.NotEmpty(t, s.CustomerDetails.Email)
		require.Positive(t, s.AmountTotal)
		require.Equal(t, s.AmountSubtotal, s.AmountTotal)
	}},
	"checkout.session.async_payment_succeeded": {status: "complete", check: func(t *testing.T, raw json.RawMessage) {
		var s stripe.CheckoutSession
		require.NoError(t, json.Unmarshal(raw, &s))
		require.Equal(t, stripe.CheckoutSessionPaymentStatusPaid, s.PaymentStatus)
	}},
	"checkout.session.async_payment_failed": {status: "complete", check: func(t *testing.T, raw json.RawMessage) {
		var s stripe.CheckoutSession
		require.NoError(t, json.Unmarshal(raw, &s))
		require.Equal(t, stripe.CheckoutSessionPaymentStatusUnpaid, s.PaymentStatus)
	}},
	"checkout.session.expired": {status: "expired", check: func(t *testing.T, raw json.RawMessage) {
		var s stripe.CheckoutSession
		require.NoError(t, json.Unmarshal(raw, &s))
		require.Nil(t, s.Customer)
		require.Nil(t, s.Subscription)
		require.Nil(t, s.CustomerDetails)
		require.Equal(t, stripe.CheckoutSessionPaymentStatusUnpaid, s.PaymentStatus)
	}},
	"customer.subscription.created": {status: "active", check: checkSubscription(func(t *testing.T, s *stripe.Subscription) {
		require.Equal(t, s.Created, s.StartDate)
		require.Zero(t, s.CanceledAt)
	})},
	"customer.subscription.updated": {status: "active"},
	"customer.subscription.deleted": {status: "canceled", check: checkSubscription(func(t *testing.T, s *stripe.Subscription) {
		require.NotZero(t, s.EndedAt)
		require.NotZero(t, s.CanceledAt)
		require.Equal(t, s.CurrentPeriodEnd, s.EndedAt, "canceled at the end of the period")
		require.Equal(t, stripe.SubscriptionCancellationDetailsReasonCancellationRequested, s.CancellationDetails.Reason)
	})},
	"customer.subscription.paused": {status: "paused", check: checkSubscription(func(t *testing.T, s *stripe.Subscription) {
		require.Equal(t, stripe.SubscriptionTrialSettingsEndBehaviorMissingPaymentMethodPause,
			s.TrialSettings.EndBehavior.MissingPaymentMethod)
	})},
	"customer.subscription.resumed": {status: "active"},
	"customer.subscription.trial_will_end": {status: "trialing", check: checkSubscription(func(t *testing.T, s *stripe.Subscription) {
		require.Equal(t, s.TrialEnd, s.CurrentPeriodEnd, "a trial is the first period")
		require.Equal(t, int64(14*day), s.TrialEnd-s.TrialStart)
	})},
	"invoice.created": {status: "draft", check: checkInvoice(func(t *testing.T, in *stripe.Invoice) {
		require.False(t, in.Attempted)
		require.Nil(t, in.Charge)
		require.Empty(t, in.Number)
	})},
	"invoice.finalized": {status: "open", check: checkInvoice(func(t *testing.T, in *stripe.Invoice) {
		require.False(t, in.Attempted)
		require.NotZero(t, in.StatusTransitions.FinalizedAt)
	})},
	"invoice.paid":              {status: "paid", check: checkInvoice(checkInvoicePaid)},
	"invoice.payment_succeeded": {status: "paid", check: checkInvoice(checkInvoicePaid)},
	"invoice.payment_failed": {status: "open", check: checkInvoice(func(t *testing.T, in *stripe.Invoice) {
		require.True(t, in.Attempted)
		require.False(t, in.Paid)
		require.Equal(t, int64(1), in.AttemptCount)
		require.Zero(t, in.AmountPaid)
		require.Equal(t, in.AmountDue, in.AmountRemaining)
		require.Greater(t, in.NextPaymentAttempt, in.Created)
	})},
	"invoice.payment_action_required": {status: "open", check: checkInvoice(func(t *testing.T, in *stripe.Invoice) {
		require.True(t, in.Attempted)
		require.False(t, in.Paid)
	})},
	"invoice.marked_uncollectible": {status: "uncollectible", check: checkInvoice(func(t *testing.T, in *stripe.Invoice) {
		require.NotZero(t, in.StatusTransitions.MarkedUncollectibleAt)
	})},
	"invoice.voided": {status: "void", check: checkInvoice(func(t *testing.T, in *stripe.Invoice) {
		require.NotZero(t, in.StatusTransitions.VoidedAt)
	})},
	"charge.succeeded": {status: "succeeded"},
	"charge.failed": {status: "failed", check: checkCharge(func(t *testing.T, c *stripe.Charge) {
		require.False(t, c.Paid)
		require.Equal(t, "card_declined", c.FailureCode)
	})},
	"charge.refunded": {status: "succeeded", check: checkCharge(func(t *testing.T, c *stripe.Charge) {
		require.True(t, c.Refunded)
		require.Equal(t, c.Amount, c.AmountRefunded)
	})},
	"charge.dispute.created": {status: "needs_response", check: checkDispute},
	"charge.dispute.closed":  {status: "lost", check: checkDispute},
	"customer.created": {status: "", check: checkCustomer(func(t *testing.T, c *stripe.Customer) {
		require.Empty(t, c.Currency)
	})},
	"customer.updated": {status: "", check: checkCustomer(func(t *testing.T, c *stripe.Customer) {
		require.NotEmpty(t, c.InvoiceSettings.DefaultPaymentMethod.ID)
	})},
	"customer.deleted":         {status: ""},
	"payment_intent.succeeded": {status: "succeeded"},
	"payment_intent.payment_failed": {status: "requires_payment_method", check: func(t *testing.T, raw json.RawMessage) {
		var p stripe.PaymentIntent
		require.NoError(t, json.Unmarshal(raw, &p))
		require.NotNil(t, p.LastPaymentError)
		require.Equal(t, stripe.ErrorCodeCardDeclined, p.LastPaymentError.Code)
		require.Zero(t, p.AmountReceived)
	}},
}

func checkSubscription(f func(*testing.T, *stripe.Subscription)) func(*testing.T, json.RawMessage) {
	return func(t *testing.T, raw json.RawMessage) {
		var s stripe.Subscription
		require.NoError(t, json.Unmarshal(raw, &s))
		f(t, &s)
	}
}

func checkInvoice(f func(*testing.T, *stripe.Invoice)) func(*testing.T, json.RawMessage) {
	return func(t *testing.T, raw json.RawMessage) {
		var in stripe.Invoice
		require.NoError(t, json.Unmarshal(raw, &in))
		f(t, &in)
	}
}

func checkInvoicePaid(t *testing.T, in *stripe.Invoice) {
	require.True(t, in.Paid)
	require.True(t, in.Attempted)
	require.Equal(t, in.AmountDue, in.AmountPaid)
	require.Zero(t, in.AmountRemaining)
	require.Zero(t, in.NextPaymentAttempt)
	require.NotZero(t, in.StatusTransitions.PaidAt)
	require.NotEmpty(t, in.Charge.ID)
	require.NotEmpty(t, in.PaymentIntent.ID)
}

func checkCharge(f func(*testing.T, *stripe.Charge)) func(*testing.T, json.RawMessage) {
	return func(t *testing.T, raw json.RawMessage) {
		var c stripe.Charge
		require.NoError(t, json.Unmarshal(raw, &c))
		f(t, &c)
	}
}

func checkDispute(t *testing.T, raw json.RawMessage) {
	var d stripe.Dispute
	require.NoError(t, json.Unmarshal(raw, &d))
	require.NotEmpty(t, d.Charge.ID)
	require.Equal(t, stripe.DisputeReasonSubscriptionCanceled, d.Reason)
	require.Len(t, d.BalanceTransactions, 1)
	require.Equal(t, d.ID, d.BalanceTransactions[0].Source.ID)
	require.Equal(t, -d.Amount-disputeFee, d.BalanceTransactions[0].Net)
}

func checkCustomer(f func(*testing.T, *stripe.Customer)) func(*testing.T, json.RawMessage) {
	return func(t *testing.T, raw json.RawMessage) {
		var c stripe.Customer
		require.NoError(t, json.Unmarshal(raw, &c))
		f(t, &c)
	}
}

// summarize unmarshals data.object into the stripe-go type of its object
// field and returns the fields every event is checked for.
func summarize(t *testing.T, raw json.RawMessage) objectSummary {
	t.Helper()
	var head struct {
		Object string `json:"object"`
	}
	require.NoError(t, json.Unmarshal(raw, &head))
	customerID := func(c *stripe.Customer) string {
		if c == nil {
			return ""
		}
		return c.ID
	}
	var sum objectSummary
	switch head.Object {
	case "subscription":
		var s stripe.Subscription
		require.NoError(t, json.Unmarshal(raw, &s))
		require.Len(t, s.Items.Data, 1)
		price := s.Items.Data[0].Price
		require.Equal(t, stripe.CurrencyGBP, price.Currency)
		require.Equal(t, stripe.CurrencyGBP, s.Currency)
		require.NotNil(t, price.Recurring)
		require.NotZero(t, price.UnitAmount)
		require.Equal(t, strings.TrimPrefix(price.ID, "price_"), price.LookupKey)
		require.NotEmpty(t, price.Product.ID)
		require.Equal(t, s.ID, s.Items.Data[0].Subscription)
		require.Greater(t, s.CurrentPeriodEnd, s.CurrentPeriodStart)
		require.NotNil(t, s.Metadata)
		sum = objectSummary{s.ID, customerID(s.Customer), price.ID, string(s.Status), price.Recurring.Interval}
	case "invoice":
		var in stripe.Invoice
		require.NoError(t, json.Unmarshal(raw, &in))
		require.Equal(t, stripe.CurrencyGBP, in.Currency)
		require.Len(t, in.Lines.Data, 1)
		line := in.Lines.Data[0]
		require.Equal(t, in.AmountDue, line.Amount)
		require.Equal(t, in.Subscription.ID, line.Subscription.ID)
		require.Greater(t, line.Period.End, line.Period.Start)
		sum = objectSummary{in.ID, customerID(in.Customer), line.Price.ID, string(in.Status), line.Price.Recurring.Interval}
	case "checkout.session":
		var s stripe.CheckoutSession
		require.NoError(t, json.Unmarshal(raw, &s))
		require.Equal(t, stripe.CurrencyGBP, s.Currency)
		sum = objectSummary{s.ID, customerID(s.Customer), "", string(s.Status), ""}
	case "charge":
		var c stripe.Charge
		require.NoError(t, json.Unmarshal(raw, &c))
		require.Equal(t, stripe.CurrencyGBP, c.Currency)
		require.NotEmpty(t, c.Invoice.ID)
		require.NotEmpty(t, c.PaymentIntent.ID)
		sum = objectSummary{c.ID, customerID(c.Customer), "", string(c.Status), ""}
	case "dispute":
		var d stripe.Dispute
		require.NoError(t, json.Unmarshal(raw, &d))
		require.Equal(t, stripe.CurrencyGBP, d.Currency)
		sum = objectSummary{d.ID, "", "", string(d.Status), ""}
	case "customer":
		var c stripe.Customer
		require.NoError(t, json.Unmarshal(raw, &c))
		require.NotEmpty(t, c.Email)
		require.NotEmpty(t, c.Name)
		require.NotNil(t, c.Metadata)
		sum = objectSummary{c.ID, c.ID, "", "", ""}
	case "payment_intent":
		var p stripe.PaymentIntent
		require.NoError(t, json.Unmarshal(raw, &p))
		require.Equal(t, stripe.CurrencyGBP, p.Currency)
		sum = objectSummary{p.ID, customerID(p.Customer), "", string(p.Status), ""}
	default:
		t.Fatalf("unexpected data.object type %q", head.Object)
	}
	return sum
}

// objectPrefixes is the id prefix of each object type in test mode.
var objectPrefixes = map[string]string{
	"subscription":     "sub_",
	"invoice":          "in_",
	"checkout.session": "cs_test_",
	"charge":           "ch_",
	"dispute":          "du_",
	"customer":         "cus_",
	"payment_intent":   "pi_",
}

func TestNewEventEveryTypeVerifiesAndParses(t *testing.T) {
	t.Parallel()

	require.ElementsMatch(t, keys(wantEvents), SupportedTypes(), "every supported type needs expectations here")
	for _, required := range []string{
		"checkout.session.completed",
		"customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
		"customer.subscription.paused", "customer.subscription.resumed", "customer.subscription.trial_will_end",
		"invoice.paid", "invoice.payment_failed", "invoice.payment_action_required",
		"charge.refunded", "charge.dispute.created",
		"customer.created", "customer.updated", "customer.deleted",
		"payment_intent.succeeded",
	} {
		require.Contains(t, SupportedTypes(), required)
	}

	for _, eventType := range SupportedTypes() {
		want := wantEvents[eventType]
		t.Run(camel(eventType), func(t *testing.T) {
			t.Parallel()

			t.Run("ExplicitOptions", func(t *testing.T) {
				t.Parallel()
				created := time.Now().Add(-time.Hour).Truncate(time.Second)
				payload, err := NewEvent(eventType, EventOptions{
					ID:         "evt_levqor_explicit",
					Created:    created,
					Customer:   "cus_levqor42",
					ObjectID:   "obj_levqor42",
					Price:      "price_pro_annual",
					AccountRef: "acct_42",
				})
				require.NoError(t, err)

				ev := verify(t, payload)
				require.Equal(t, "evt_levqor_explicit", ev.ID)
				require.Equal(t, "event", ev.Object)
				require.Equal(t, stripe.EventType(eventType), ev.Type)
				require.Equal(t, stripe.APIVersion, ev.APIVersion)
				require.Equal(t, created.Unix(), ev.Created)
				require.False(t, ev.Livemode)
				require.Equal(t, int64(1), ev.PendingWebhooks)
				require.NotNil(t, ev.Request)
				require.Equal(t, strings.HasSuffix(eventType, ".updated"), ev.Data.PreviousAttributes != nil,
					"previous_attributes exactly on *.updated")

				sum := summarize(t, ev.Data.Raw)
				require.Equal(t, want.status, sum.status)
				require.Equal(t, "obj_levqor42", sum.id)
				require.Equal(t, "obj_levqor42", ev.GetObjectValue("id"))
				switch ev.Data.Object["object"] {
				case "dispute":
				case "customer":
				case "checkout.session":
					if eventType != "checkout.session.expired" {
						require.Equal(t, "cus_levqor42", sum.customer)
					}
					require.Equal(t, "acct_42", ev.GetObjectValue("client_reference_id"))
				default:
					require.Equal(t, "cus_levqor42", sum.customer)
				}
				if sum.price != "" {
					require.Equal(t, "price_pro_annual", sum.price)
					require.Equal(t, stripe.PriceRecurringIntervalYear, sum.interval)
				}
				if want.check != nil {
					want.check(t, ev.Data.Raw)
				}
			})

			t.Run("Defaults", func(t *testing.T) {
				t.Parallel()
				before := time.Now().Unix()
				payload, err := NewEvent(eventType, EventOptions{})
				require.NoError(t, err)

				ev := verify(t, payload)
				require.Regexp(t, `^evt_[0-9A-Za-z]{24}$`, ev.ID)
				require.InDelta(t, before, ev.Created, 2)
				sum := summarize(t, ev.Data.Raw)
				require.Equal(t, want.status, sum.status)
				require.True(t, strings.HasPrefix(sum.id, objectPrefixes[ev.GetObjectValue("object")]),
					"id %q of a %s", sum.id, ev.GetObjectValue("object"))
				if sum.price != "" {
					require.Equal(t, defaultPrice, sum.price)
				}
				if sum.customer != "" {
					require.Regexp(t, `^cus_[0-9A-Za-z]{14}$`, sum.customer)
				}
				if want.check != nil {
					want.check(t, ev.Data.Raw)
				}
			})
		})
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestNewEventSupportedTypesSortedCopy(t *testing.T) {
	t.Parallel()
	types := SupportedTypes()
	require.IsIncreasing(t, types)
	types[0] = "mutated"
	require.NotEqual(t, "mutated", SupportedTypes()[0])
}

func TestNewEventIDsLinkUp(t *testing.T) {
	t.Parallel()

	// One customer's subscription as the workers see it: every event names
	// the same customer, subscription and price.
	opts := EventOptions{Customer: "cus_links", Subscription: "sub_links", Price: "price_dfy_pro_monthly"}

	payload, err := NewEvent("checkout.session.completed", opts)
	require.NoError(t, err)
	var cs stripe.CheckoutSession
	require.NoError(t, json.Unmarshal(verify(t, payload).Data.Raw, &cs))
	require.Equal(t, "cus_links", cs.Customer.ID)
	require.Equal(t, "sub_links", cs.Subscription.ID)

	payload, err = NewEvent("customer.subscription.updated", opts)
	require.NoError(t, err)
	var sub stripe.Subscription
	require.NoError(t, json.Unmarshal(verify(t, payload).Data.Raw, &sub))
	require.Equal(t, "sub_links", sub.ID)
	require.Equal(t, "sub_links", sub.Items.Data[0].Subscription)
	require.Equal(t, "/v1/subscription_items?subscription=sub_links", sub.Items.URL)
	require.Equal(t, "dfy_pro_monthly", sub.Items.Data[0].Price.LookupKey)
	require.Equal(t, "prod_dfy_pro", sub.Items.Data[0].Price.Product.ID)

	payload, err = NewEvent("invoice.paid", opts)
	require.NoError(t, err)
	var in stripe.Invoice
	require.NoError(t, json.Unmarshal(verify(t, payload).Data.Raw, &in))
	require.Equal(t, "cus_links", in.Customer.ID)
	require.Equal(t, "sub_links", in.Subscription.ID)
	require.Equal(t, "sub_links", in.Lines.Data[0].Subscription.ID)
	require.Equal(t, "price_dfy_pro_monthly", in.Lines.Data[0].Price.ID)
	require.Equal(t, "1 × Levqor Dfy Pro (at £49.00 / month)", in.Lines.Data[0].Description)
	require.Contains(t, in.HostedInvoiceURL, "/test_")
	require.Equal(t, in.HostedInvoiceURL+"/pdf?s=ap", in.InvoicePDF)
	require.Equal(t, "/v1/invoices/"+in.ID+"/lines", in.Lines.URL)

	// For customer events the customer option names the object.
	payload, err = NewEvent("customer.created", opts)
	require.NoError(t, err)
	ev := verify(t, payload)
	require.Equal(t, "cus_links", ev.GetObjectValue("id"))
}

func TestNewEventLivemode(t *testing.T) {
	t.Parallel()
	payload, err := NewEvent("checkout.session.completed", EventOptions{Livemode: true})
	require.NoError(t, err)
	ev := verify(t, payload)
	require.True(t, ev.Livemode)
	var s stripe.CheckoutSession
	require.NoError(t, json.Unmarshal(ev.Data.Raw, &s))
	require.True(t, s.Livemode)
	require.True(t, strings.HasPrefix(s.ID, "cs_live_"), s.ID)
}

func TestNewEventEscapesOptions(t *testing.T) {
	t.Parallel()
	odd := "acct \"quoted\" \\ back\nline \x01 \xff é"
	payload, err := NewEvent("checkout.session.completed", EventOptions{AccountRef: odd, Customer: `cus_"x"`})
	require.NoError(t, err)
	require.True(t, json.Valid(payload))
	ev := verify(t, payload)
	require.Equal(t, strings.ToValidUTF8(odd, "\uFFFD"), ev.Data.Object["client_reference_id"])
	require.Equal(t, `cus_"x"`, ev.Data.Object["customer"])
}

func TestNewEventAPIVersion(t *testing.T) {
	t.Parallel()
	payload, err := NewEvent("invoice.paid", EventOptions{APIVersion: "2022-11-15"})
	require.NoError(t, err)
	_, err = webhook.ConstructEvent(payload, Sign(payload, testSecret, time.Now()), testSecret)
	require.ErrorContains(t, err, "2022-11-15", "stripe-go rejects a version it does not parse")
	ev, err := webhook.ConstructEventWithOptions(payload, Sign(payload, testSecret, time.Now()), testSecret,
		webhook.ConstructEventOptions{IgnoreAPIVersionMismatch: true})
	require.NoError(t, err)
	require.Equal(t, "2022-11-15", ev.APIVersion)
}

func TestNewEventData(t *testing.T) {
	t.Parallel()

	t.Run("NestedOverrideKeepsSiblings", func(t *testing.T) {
		t.Parallel()
		payload, err := NewEvent("customer.subscription.created", EventOptions{
			Customer: "cus_merge",
			Data: json.RawMessage(`{
				"status": "trialing",
				"trial_settings": {"end_behavior": {"missing_payment_method": "cancel"}},
				"cancellation_details": {"comment": "moving to annual"},
				"metadata": {"levqor_account": "acct_7"}
			}`),
		})
		require.NoError(t, err)
		var s stripe.Subscription
		require.NoError(t, json.Unmarshal(verify(t, payload).Data.Raw, &s))
		require.Equal(t, stripe.SubscriptionStatusTrialing, s.Status)
		require.Equal(t, stripe.SubscriptionTrialSettingsEndBehaviorMissingPaymentMethodCancel,
			s.TrialSettings.EndBehavior.MissingPaymentMethod)
		require.Equal(t, "moving to annual", s.CancellationDetails.Comment)
		require.Empty(t, s.CancellationDetails.Reason, "sibling keys survive a nested merge")
		require.Equal(t, map[string]string{"levqor_account": "acct_7"}, s.Metadata)
		require.Equal(t, "cus_merge", s.Customer.ID, "untouched fields keep the template's value")
		require.Equal(t, defaultPrice, s.Items.Data[0].Price.ID)
	})

	t.Run("NewFieldsAreAdded", func(t *testing.T) {
		t.Parallel()
		payload, err := NewEvent("invoice.payment_failed", EventOptions{
			Data: json.RawMessage(`{"levqor_test": {"run": 3, "big": 12345678901234567890}, "amount_due": 12900}`),
		})
		require.NoError(t, err)
		ev := verify(t, payload)
		require.Equal(t, "3", ev.GetObjectValue("levqor_test", "run"))
		require.Contains(t, string(payload), `"big": 12345678901234567890`, "numbers are copied, not rounded")
		var in stripe.Invoice
		require.NoError(t, json.Unmarshal(ev.Data.Raw, &in))
		require.Equal(t, int64(12900), in.AmountDue)
		require.Equal(t, stripe.InvoiceStatusOpen, in.Status)
	})

	t.Run("ArraysAndNullReplace", func(t *testing.T) {
		t.Parallel()
		payload, err := NewEvent("customer.subscription.updated", EventOptions{
			Data: json.RawMessage(`{"items": {"data": []}, "latest_invoice": null}`),
		})
		require.NoError(t, err)
		var s stripe.Subscription
		require.NoError(t, json.Unmarshal(verify(t, payload).Data.Raw, &s))
		require.Empty(t, s.Items.Data)
		require.Equal(t, uint32(1), s.Items.TotalCount, "siblings of the replaced array stay")
		require.Nil(t, s.LatestInvoice)
	})

	t.Run("KeepsStripeFieldOrderAndIndentation", func(t *testing.T) {
		t.Parallel()
		// customer.created has no random parts once its ids are fixed.
		opts := EventOptions{ID: "evt_same", Created: time.Unix(1700000000, 0), ObjectID: "cus_same"}
		plain, err := NewEvent("customer.created", opts)
		require.NoError(t, err)
		opts.Data = json.RawMessage(`{"email": "jenny@example.com"}`)
		merged, err := NewEvent("customer.created", opts)
		require.NoError(t, err)
		want := strings.Replace(string(plain), `"email": "same@example.com",`, `"email": "jenny@example.com",`, 1)
		require.NotEqual(t, string(plain), want)
		require.Equal(t, want, string(merged))
	})

	for name, data := range map[string]string{
		"NotAnObject":  `["status"]`,
		"InvalidJSON":  `{"status": `,
		"TrailingData": `{"status": "active"} {}`,
		"Scalar":       `"active"`,
	} {
		t.Run("Rejects"+name, func(t *testing.T) {
			t.Parallel()
			_, err := NewEvent("customer.subscription.created", EventOptions{Data: json.RawMessage(data)})
			require.ErrorContains(t, err, "data")
		})
	}
}

func TestNewEventPreviousAttributes(t *testing.T) {
	t.Parallel()

	t.Run("Default", func(t *testing.T) {
		t.Parallel()
		payload, err := NewEvent("customer.subscription.updated", EventOptions{Created: time.Now()})
		require.NoError(t, err)
		ev := verify(t, payload)
		var s stripe.Subscription
		require.NoError(t, json.Unmarshal(ev.Data.Raw, &s))
		require.Equal(t, float64(s.CurrentPeriodStart), ev.Data.PreviousAttributes["current_period_end"])
		require.NotEqual(t, s.LatestInvoice.ID, ev.Data.PreviousAttributes["latest_invoice"])
	})

	t.Run("Given", func(t *testing.T) {
		t.Parallel()
		payload, err := NewEvent("customer.subscription.updated", EventOptions{
			Data:               json.RawMessage(`{"cancel_at_period_end": true}`),
			PreviousAttributes: json.RawMessage(`{"cancel_at_period_end": false}`),
		})
		require.NoError(t, err)
		ev := verify(t, payload)
		require.Equal(t, map[string]any{"cancel_at_period_end": false}, ev.Data.PreviousAttributes)
		require.Equal(t, true, ev.Data.Object["cancel_at_period_end"])
	})

	t.Run("Rejected", func(t *testing.T) {
		t.Parallel()
		_, err := NewEvent("customer.updated", EventOptions{PreviousAttributes: json.RawMessage(`[1]`)})
		require.ErrorContains(t, err, "previous attributes")
	})
}

func TestNewEventUnknownType(t *testing.T) {
	t.Parallel()
	_, err := NewEvent("invoice.exploded", EventOptions{})
	require.ErrorIs(t, err, ErrUnknownEventType)
	require.ErrorContains(t, err, "invoice.exploded")
	for _, supported := range SupportedTypes() {
		require.ErrorContains(t, err, supported)
	}
}

func TestSign(t *testing.T) {
	t.Parallel()
	payload, err := NewEvent("invoice.paid", EventOptions{})
	require.NoError(t, err)

	t.Run("Format", func(t *testing.T) {
		t.Parallel()
		header := Sign(payload, testSecret, time.Unix(1700000000, 0))
		require.Regexp(t, regexp.MustCompile(`^t=1700000000,v1=[0-9a-f]{64}$`), header)
	})

	t.Run("WrongSecretFails", func(t *testing.T) {
		t.Parallel()
		_, err := webhook.ConstructEventWithOptions(payload, Sign(payload, "whsec_other", time.Now()), testSecret,
			webhook.ConstructEventOptions{Tolerance: 300 * time.Second})
		require.ErrorIs(t, err, webhook.ErrNoValidSignature)
	})

	t.Run("TamperedPayloadFails", func(t *testing.T) {
		t.Parallel()
		header := Sign(payload, testSecret, time.Now())
		tampered := []byte(strings.Replace(string(payload), `"paid"`, `"open"`, 1))
		_, err := webhook.ConstructEvent(tampered, header, testSecret)
		require.ErrorIs(t, err, webhook.ErrNoValidSignature)
	})

	t.Run("OldTimestampFails", func(t *testing.T) {
		t.Parallel()
		_, err := webhook.ConstructEventWithOptions(payload, Sign(payload, testSecret, time.Now().Add(-6*time.Minute)),
			testSecret, webhook.ConstructEventOptions{Tolerance: 300 * time.Second})
		require.ErrorIs(t, err, webhook.ErrTooOld)
	})
}

func TestNewEventUniqueIDs(t *testing.T) {
	t.Parallel()
	const n = 10_000
	types := SupportedTypes()
	eventIDs := make(map[string]struct{}, n)
	objectIDs := make(map[string]struct{}, n)
	for i := range n {
		payload, err := NewEvent(types[i%len(types)], EventOptions{})
		require.NoError(t, err)
		var ev struct {
			ID   string `json:"id"`
			Data struct {
				Object struct {
					ID string `json:"id"`
				} `json:"object"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(payload, &ev))
		require.Equal(t, ev.ID, eventID(payload))
		eventIDs[ev.ID] = struct{}{}
		objectIDs[ev.Data.Object.ID] = struct{}{}
	}
	require.Len(t, eventIDs, n)
	require.Len(t, objectIDs, n)
}

func TestNewEventConcurrent(t *testing.T) {
	t.Parallel()
	// Builders are pooled: concurrent events must not share state.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			customer := "cus_g" + string(rune('a'+g))
			for range 200 {
				payload, err := NewEvent("invoice.paid", EventOptions{Customer: customer})
				if err != nil {
					t.Error(err)
					return
				}
				if got := strings.Count(string(payload), `"`+customer+`"`); got != 1 {
					t.Errorf("customer %s appears %d times, want 1", customer, got)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// setupIngest starts an endpoint that verifies deliveries like ingest and
// records them.
func setupIngest(t *testing.T, status int) (*httptest.Server, <-chan *http.Request, <-chan []byte) {
	t.Helper()
	reqs := make(chan *http.Request, 1)
	bodies := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		reqs <- r
		bodies <- body
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"received": true}`))
	}))
	t.Cleanup(srv.Close)
	return srv, reqs, bodies
}

func TestSender(t *testing.T) {
	t.Parallel()

	t.Run("PostsSignedEvent", func(t *testing.T) {
		t.Parallel()
		srv, reqs, bodies := setupIngest(t, http.StatusOK)
		payload, err := NewEvent("invoice.payment_failed", EventOptions{ID: "evt_sender"})
		require.NoError(t, err)

		s := &Sender{URL: srv.URL + "/webhooks/stripe", Secret: testSecret}
		res, err := s.Send(context.Background(), payload)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.Status)
		require.JSONEq(t, `{"received": true}`, string(res.Body))
		require.Equal(t, "evt_sender", res.EventID)
		require.Positive(t, res.Duration)

		r := <-reqs
		body := <-bodies
		require.Equal(t, http.MethodPost, r.Method)
		require.Equal(t, "/webhooks/stripe", r.URL.Path)
		require.True(t, strings.HasPrefix(r.Header.Get("Content-Type"), "application/json"), r.Header.Get("Content-Type"))
		require.True(t, strings.HasPrefix(r.Header.Get("User-Agent"), "Stripe/"))
		require.Equal(t, payload, body, "the body is the exact bytes that were signed")
		ev, err := webhook.ConstructEventWithOptions(body, r.Header.Get("Stripe-Signature"), testSecret,
			webhook.ConstructEventOptions{Tolerance: 300 * time.Second})
		require.NoError(t, err)
		require.Equal(t, "evt_sender", ev.ID)
	})

	t.Run("ErrorStatusIsAResult", func(t *testing.T) {
		t.Parallel()
		srv, _, _ := setupIngest(t, http.StatusServiceUnavailable)
		payload, err := NewEvent("customer.created", EventOptions{})
		require.NoError(t, err)
		res, err := (&Sender{URL: srv.URL, Secret: testSecret, Client: srv.Client()}).Send(context.Background(), payload)
		require.NoError(t, err)
		require.Equal(t, http.StatusServiceUnavailable, res.Status)
	})

	t.Run("NotAnEventIsSentAsIs", func(t *testing.T) {
		t.Parallel()
		srv, _, bodies := setupIngest(t, http.StatusBadRequest)
		res, err := (&Sender{URL: srv.URL, Secret: testSecret}).Send(context.Background(), []byte("not json"))
		require.NoError(t, err)
		require.Empty(t, res.EventID)
		require.Equal(t, "not json", string(<-bodies))
	})

	t.Run("Unreachable", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		_, err := (&Sender{URL: url, Secret: testSecret}).Send(context.Background(), []byte(`{"id": "evt_x"}`))
		require.ErrorContains(t, err, "evt_x")
	})

	t.Run("CanceledContext", func(t *testing.T) {
		t.Parallel()
		srv, _, _ := setupIngest(t, http.StatusOK)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := (&Sender{URL: srv.URL, Secret: testSecret}).Send(ctx, []byte(`{}`))
		require.ErrorIs(t, err, context.Canceled)
	})

	t.Run("RequiresURLAndSecret", func(t *testing.T) {
		t.Parallel()
		_, err := (&Sender{Secret: testSecret}).Send(context.Background(), []byte(`{}`))
		require.ErrorContains(t, err, "URL")
		_, err = (&Sender{URL: "http://127.0.0.1:1"}).Send(context.Background(), []byte(`{}`))
		require.ErrorContains(t, err, "Secret")
	})
}

func TestEventID(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ payload, want string }{
		"First":       {`{"id": "evt_1", "object": "event"}`, "evt_1"},
		"AfterNested": {`{"data": {"id": "inner"}, "id": "evt_2"}`, "evt_2"},
		"Missing":     {`{"object": "event"}`, ""},
		"NotAString":  {`{"id": 5}`, ""},
		"NotJSON":     {`evt_3`, ""},
		"Array":       {`["id", "evt_4"]`, ""},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, eventID([]byte(tc.payload)))
		})
	}
}

func FuzzNewEventData(f *testing.F) {
	f.Add("invoice.paid", `{"status": "void"}`)
	f.Add("customer.subscription.created", `{"items": {"data": [{"price": {"id": "price_x"}}]}, "x": [1, "2", null]}`)
	f.Add("customer.created", `{"metadata": {"k": "v\u0000\"\\"}}`)
	types := SupportedTypes()
	f.Fuzz(func(t *testing.T, eventType, data string) {
		if !slices.Contains(types, eventType) {
			eventType = types[len(eventType)%len(types)]
		}
		payload, err := NewEvent(eventType, EventOptions{Data: json.RawMessage(data)})
		if err != nil {
			if errors.Is(err, ErrUnknownEventType) {
				t.Fatalf("known type %q rejected: %v", eventType, err)
			}
			return
		}
		if !json.Valid(payload) {
			t.Fatalf("invalid JSON for data %q:\n%s", data, payload)
		}
		if err := webhook.ValidatePayload(payload, Sign(payload, testSecret, time.Now()), testSecret); err != nil {
			t.Fatal(err)
		}
	})
}

func BenchmarkNewEventAndSign(b *testing.B) {
	for _, eventType := range []string{"invoice.paid", "customer.subscription.updated", "customer.created"} {
		b.Run(camel(eventType), func(b *testing.B) {
			opts := EventOptions{Customer: "cus_bench", AccountRef: "acct_bench"}
			b.ReportAllocs()
			for b.Loop() {
				payload, err := NewEvent(eventType, opts)
				if err != nil {
					b.Fatal(err)
				}
				_ = Sign(payload, testSecret, time.Now())
			}
		})
	}
	b.Run("WithData", func(b *testing.B) {
		opts := EventOptions{Data: json.RawMessage(`{"status": "past_due", "metadata": {"levqor_account": "acct_1"}}`)}
		b.ReportAllocs()
		for b.Loop() {
			payload, err := NewEvent("customer.subscription.updated", opts)
			if err != nil {
				b.Fatal(err)
			}
			_ = Sign(payload, testSecret, time.Now())
		}
	})
}
