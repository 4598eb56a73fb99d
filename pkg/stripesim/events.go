package stripesim

import "sort"

// objectKind is a Stripe object type that events carry in data.object.
type objectKind struct {
	rel  rel
	tmpl *template
}

var (
	kindSubscription    = &objectKind{rel: relSubscription, tmpl: compileTemplate("subscription", subscriptionJSON, objectPrefix)}
	kindInvoice         = &objectKind{rel: relInvoice, tmpl: compileTemplate("invoice", invoiceJSON, objectPrefix)}
	kindCheckoutSession = &objectKind{rel: relCheckoutSession, tmpl: compileTemplate("checkout.session", checkoutSessionJSON, objectPrefix)}
	kindCharge          = &objectKind{rel: relCharge, tmpl: compileTemplate("charge", chargeJSON, objectPrefix)}
	kindDispute         = &objectKind{rel: relDispute, tmpl: compileTemplate("dispute", disputeJSON, objectPrefix)}
	kindCustomer        = &objectKind{rel: relCustomer, tmpl: compileTemplate("customer", customerJSON, objectPrefix)}
	kindPaymentIntent   = &objectKind{rel: relPaymentIntent, tmpl: compileTemplate("payment_intent", paymentIntentJSON, objectPrefix)}
)

var (
	envelope         = compileTemplate("event", envelopeJSON, "")
	envelopeWithPrev = compileTemplate("event", envelopeWithPrevJSON, "")

	subscriptionRenewedPrev   = compileTemplate("subscription renewal", subscriptionRenewedPrevJSON, objectPrefix)
	customerPaymentMethodPrev = compileTemplate("customer payment method", customerPaymentMethodPrevJSON, objectPrefix)
)

// eventSpec is how one event type is built: the object it carries and the
// state that object is in when Stripe sends the event.
type eventSpec struct {
	kind *objectKind
	// automatic events come from Stripe's own processes (renewals,
	// retries, Checkout), so their request id and idempotency key are null.
	automatic bool
	// prev renders the default data.previous_attributes, for *.updated.
	prev *template
	// state sets the variables that differ from the defaults.
	state func(b *builder)
}

const (
	minute = 60
	hour   = 60 * minute
	day    = 24 * hour
)

// renewal places an invoice at the start of a billing period that began an
// hour before the event, when Stripe finalizes and charges it.
func renewal(b *builder) {
	b.periodStart = b.evt - hour
	b.created = b.periodStart
}

// invoiceUnpaid is an open invoice whose charge has not gone through.
func invoiceUnpaid(b *builder) {
	b.setTime(vFinalizedAt, b.evt-2)
	b.set(vAmountPaid, "0")
	b.vals[vAmountRemaining] = b.get(vAmount)
	b.set(vAutoAdvance, "true")
}

var specs = map[string]*eventSpec{
	"checkout.session.completed": {kind: kindCheckoutSession, automatic: true, state: func(b *builder) {
		b.created = b.evt - 90
		b.set(vStatus, `"complete"`)
		b.set(vPaymentIntent, "null")
	}},
	"checkout.session.async_payment_succeeded": {kind: kindCheckoutSession, automatic: true, state: func(b *builder) {
		b.created = b.evt - 3*day
		b.set(vStatus, `"complete"`)
		b.set(vPaymentIntent, "null")
	}},
	"checkout.session.async_payment_failed": {kind: kindCheckoutSession, automatic: true, state: func(b *builder) {
		b.created = b.evt - 3*day
		b.set(vStatus, `"complete"`)
		b.set(vPaymentStatus, `"unpaid"`)
		b.set(vPaymentIntent, "null")
	}},
	"checkout.session.expired": {kind: kindCheckoutSession, automatic: true, state: func(b *builder) {
		b.created = b.evt - day
		b.set(vStatus, `"expired"`)
		b.set(vPaymentStatus, `"unpaid"`)
		b.set(vCustomer, "null")
		b.set(vCustomerDetails, "null")
		b.set(vSubscription, "null")
		b.set(vInvoice, "null")
		b.set(vPaymentIntent, "null")
	}},

	"customer.subscription.created": {kind: kindSubscription, automatic: true, state: func(b *builder) {
		b.set(vStatus, `"active"`)
	}},
	"customer.subscription.updated": {kind: kindSubscription, automatic: true, prev: subscriptionRenewedPrev, state: func(b *builder) {
		b.created = b.addInterval(b.evt, -1)
		b.set(vStatus, `"active"`)
	}},
	"customer.subscription.deleted": {kind: kindSubscription, automatic: true, state: func(b *builder) {
		// Canceled at the end of the period, ten days after the request.
		b.periodStart = b.addInterval(b.evt, -1)
		b.created = b.addInterval(b.periodStart, -2)
		b.set(vStatus, `"canceled"`)
		b.set(vCancelAtPeriodEnd, "true")
		b.setTime(vCancelAt, b.evt)
		b.setTime(vCanceledAt, b.evt-10*day)
		b.setTime(vEndedAt, b.evt)
		b.set(vCancellationReason, `"cancellation_requested"`)
	}},
	"customer.subscription.paused": {kind: kindSubscription, automatic: true, state: func(b *builder) {
		// A trial ended without a payment method and the subscription
		// was set to pause rather than cancel.
		b.created = b.evt - 14*day
		b.set(vStatus, `"paused"`)
		b.setTime(vTrialStart, b.created)
		b.setTime(vTrialEnd, b.evt)
		b.setTime(vBillingCycleAnchor, b.evt)
		b.set(vTrialMissingPaymentMethod, `"pause"`)
		b.set(vPaymentMethod, "null")
	}},
	"customer.subscription.resumed": {kind: kindSubscription, state: func(b *builder) {
		b.created = b.evt - 30*day
		b.set(vStatus, `"active"`)
		b.setTime(vTrialStart, b.created)
		b.setTime(vTrialEnd, b.created+14*day)
		b.setTime(vBillingCycleAnchor, b.evt)
		b.set(vTrialMissingPaymentMethod, `"pause"`)
	}},
	"customer.subscription.trial_will_end": {kind: kindSubscription, automatic: true, state: func(b *builder) {
		// Stripe warns three days before a 14-day trial ends; during the
		// trial the current period is the trial.
		b.created = b.evt - 11*day
		b.periodStart = b.created
		b.set(vStatus, `"trialing"`)
		b.setTime(vTrialStart, b.created)
		b.setTime(vTrialEnd, b.evt+3*day)
		b.vals[vPeriodEnd] = b.get(vTrialEnd)
	}},

	"invoice.created": {kind: kindInvoice, automatic: true, state: func(b *builder) {
		b.set(vStatus, `"draft"`)
		b.set(vAttempted, "false")
		b.set(vAttemptCount, "0")
		b.set(vAutoAdvance, "true")
		b.set(vAmountPaid, "0")
		b.vals[vAmountRemaining] = b.get(vAmount)
		b.set(vCharge, "null")
		b.set(vPaymentIntent, "null")
		b.set(vInvoiceNumber, "null")
		b.set(vHostedInvoiceURL, "null")
		b.set(vInvoicePDF, "null")
		b.set(vEndingBalance, "null")
		b.set(vWebhooksDeliveredAt, "null")
		b.setTime(vNextPaymentAttempt, b.evt+hour)
	}},
	"invoice.finalized": {kind: kindInvoice, automatic: true, state: func(b *builder) {
		renewal(b)
		invoiceUnpaid(b)
		b.set(vStatus, `"open"`)
		b.set(vAttempted, "false")
		b.set(vAttemptCount, "0")
		b.set(vCharge, "null")
		b.setTime(vFinalizedAt, b.evt)
		b.setTime(vNextPaymentAttempt, b.evt)
	}},
	"invoice.paid":              {kind: kindInvoice, automatic: true, state: invoicePaid},
	"invoice.payment_succeeded": {kind: kindInvoice, automatic: true, state: invoicePaid},
	"invoice.payment_failed": {kind: kindInvoice, automatic: true, state: func(b *builder) {
		renewal(b)
		invoiceUnpaid(b)
		b.set(vStatus, `"open"`)
		// Smart Retries tries again a few days later.
		b.setTime(vNextPaymentAttempt, b.evt+3*day)
	}},
	"invoice.payment_action_required": {kind: kindInvoice, automatic: true, state: func(b *builder) {
		// The bank asked for authentication (3D Secure): no retry is
		// scheduled until the customer completes it.
		renewal(b)
		invoiceUnpaid(b)
		b.set(vStatus, `"open"`)
	}},
	"invoice.marked_uncollectible": {kind: kindInvoice, automatic: true, state: func(b *builder) {
		// Dunning gave up after the last retry.
		b.periodStart = b.evt - 21*day
		b.created = b.periodStart
		invoiceUnpaid(b)
		b.setTime(vFinalizedAt, b.created+hour)
		b.set(vStatus, `"uncollectible"`)
		b.set(vAutoAdvance, "false")
		b.set(vAttemptCount, "4")
		b.setTime(vMarkedUncollectibleAt, b.evt)
	}},
	"invoice.voided": {kind: kindInvoice, state: func(b *builder) {
		b.periodStart = b.evt - 2*day
		b.created = b.periodStart
		invoiceUnpaid(b)
		b.setTime(vFinalizedAt, b.created+hour)
		b.set(vStatus, `"void"`)
		b.set(vAutoAdvance, "false")
		b.setTime(vVoidedAt, b.evt)
	}},

	"charge.succeeded": {kind: kindCharge, automatic: true, state: func(b *builder) {
		b.set(vStatus, `"succeeded"`)
		b.set(vPaid, "true")
	}},
	"charge.failed": {kind: kindCharge, automatic: true, state: func(b *builder) {
		b.set(vStatus, `"failed"`)
		b.set(vPaid, "false")
		b.set(vCaptured, "false")
		b.set(vAmountCaptured, "0")
		b.set(vBalanceTransaction, "null")
		b.set(vFailureCode, `"card_declined"`)
		b.set(vFailureMessage, `"Your card was declined."`)
		b.set(vNetworkStatus, `"declined_by_network"`)
		b.set(vOutcomeReason, `"generic_decline"`)
		b.set(vSellerMessage, `"The bank did not return any further details with this decline."`)
		b.set(vOutcomeType, `"issuer_declined"`)
		b.set(vReceiptURL, "null")
	}},
	"charge.refunded": {kind: kindCharge, state: func(b *builder) {
		b.created = b.evt - 5*day
		b.set(vStatus, `"succeeded"`)
		b.set(vPaid, "true")
		b.vals[vAmountRefunded] = b.get(vAmount)
		b.set(vRefunded, "true")
	}},
	"charge.dispute.created": {kind: kindDispute, automatic: true, state: func(b *builder) {
		b.set(vStatus, `"needs_response"`)
		b.set(vReason, `"subscription_canceled"`)
	}},
	"charge.dispute.closed": {kind: kindDispute, automatic: true, state: func(b *builder) {
		b.created = b.evt - 30*day
		b.set(vStatus, `"lost"`)
		b.set(vReason, `"subscription_canceled"`)
		b.set(vHasEvidence, "true")
		b.set(vSubmissionCount, "1")
	}},

	"customer.created": {kind: kindCustomer, automatic: true, state: func(b *builder) {
		b.set(vCustomerCurrency, "null")
		b.set(vNextInvoiceSequence, "1")
	}},
	"customer.updated": {kind: kindCustomer, prev: customerPaymentMethodPrev, state: func(b *builder) {
		b.created = b.evt - 90
		b.vals[vCustomerDefaultPaymentMethod] = b.get(vPaymentMethod)
		b.set(vNextInvoiceSequence, "2")
	}},
	"customer.deleted": {kind: kindCustomer, state: func(b *builder) {
		b.created = b.evt - 365*day
		b.vals[vCustomerDefaultPaymentMethod] = b.get(vPaymentMethod)
	}},

	"payment_intent.succeeded": {kind: kindPaymentIntent, automatic: true, state: func(b *builder) {
		b.created = b.evt - 2
		b.set(vStatus, `"succeeded"`)
	}},
	"payment_intent.payment_failed": {kind: kindPaymentIntent, automatic: true, state: func(b *builder) {
		b.created = b.evt - 2
		b.set(vStatus, `"requires_payment_method"`)
		b.set(vAmountReceived, "0")
		b.set(vPaymentMethod, "null")
		b.setSub(vLastPaymentError)
	}},
}

func invoicePaid(b *builder) {
	renewal(b)
	b.set(vStatus, `"paid"`)
	b.set(vPaid, "true")
	b.setTime(vFinalizedAt, b.evt-2)
	b.setTime(vPaidAt, b.evt)
}

var supportedTypes = func() []string {
	types := make([]string, 0, len(specs))
	for t := range specs {
		types = append(types, t)
	}
	sort.Strings(types)
	return types
}()
