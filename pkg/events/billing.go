package events

import (
	"encoding/json"
	"time"
)

// Billing's events.
const (
	// NameEntitlementsChanged: an account's tier or entitlements changed.
	NameEntitlementsChanged Name = "billing.entitlements_changed"
	// NameAccountStatusChanged: an account's status changed.
	NameAccountStatusChanged Name = "billing.account_status_changed"
	// NamePaymentFailed: Stripe could not collect an invoice.
	NamePaymentFailed Name = "billing.payment_failed"
	// NamePaymentActionRequired: an invoice waits on the customer (3-D
	// Secure and the like).
	NamePaymentActionRequired Name = "billing.payment_action_required"
	// NamePaymentRecovered: a paid invoice settled the account's dunning.
	NamePaymentRecovered Name = "billing.payment_recovered"
	// NameAccountSuspended: an account stayed past due beyond its grace
	// period.
	NameAccountSuspended Name = "billing.account_suspended"
	// NameTrialWillEnd: a subscription's trial ends soon.
	NameTrialWillEnd Name = "billing.trial_will_end"
	// NameTrialReminder: a trial ends within one of the reminders of
	// billing.trial_reminder (LEVQOR_TRIAL_REMINDERS).
	NameTrialReminder Name = "billing.trial_reminder"
	// NameDFYPurchased: an account bought a Done-For-You package.
	NameDFYPurchased Name = "billing.dfy_purchased"
	// NameChargeRefunded: a charge was refunded, wholly or in part.
	NameChargeRefunded Name = "billing.charge_refunded"
	// NameDisputeOpened: a customer disputed a charge.
	NameDisputeOpened Name = "billing.dispute_opened"
	// NameUnknownPrice: a subscription has prices the catalog does not
	// know; entitlements were left unchanged.
	NameUnknownPrice Name = "billing.unknown_price"
	// NameCustomerMismatch: a completed Checkout session names an account
	// whose Stripe customer is another one; nothing was applied.
	NameCustomerMismatch Name = "billing.customer_mismatch"
)

// Billing is what every billing event carries: the account, when the
// change happened (the Stripe event's created time, or the tick's slot)
// and, for a change a Stripe event made, that event's id.
type Billing struct {
	// AccountID is the account; "" only on UnknownPrice for a customer
	// no account is linked to.
	AccountID string `json:"account_id"`
	// StripeEventID is the Stripe event that caused the change; empty
	// for changes made by dunning or reconciliation.
	StripeEventID string `json:"stripe_event_id,omitempty"`
	// At is when the change happened.
	At time.Time `json:"at"`
}

// EventAccount is the account the event concerns.
func (b Billing) EventAccount() string { return b.AccountID }

// EntitlementsChanged is the payload of billing.entitlements_changed.
type EntitlementsChanged struct {
	Billing
	// Tier is the account's tier now, nil when it has none.
	Tier *string `json:"tier"`
	// Entitlements are the account's entitlements now ({} without a
	// tier), as catalog.Entitlements encodes them.
	Entitlements         json.RawMessage `json:"entitlements"`
	PreviousTier         *string         `json:"previous_tier"`
	PreviousEntitlements json.RawMessage `json:"previous_entitlements"`
	// Reconciled is set when reconciliation with Stripe made the change.
	Reconciled bool `json:"reconciled,omitempty"`
}

// EventName is NameEntitlementsChanged.
func (EntitlementsChanged) EventName() Name { return NameEntitlementsChanged }

// AccountStatusChanged is the payload of billing.account_status_changed.
type AccountStatusChanged struct {
	Billing
	// Status is the account's status now, one of store's AccountStatus*.
	Status         string `json:"status"`
	PreviousStatus string `json:"previous_status"`
	// Tier is the account's tier now, nil when it has none.
	Tier *string `json:"tier"`
	// Reason, when set, says why in words ("stripe customer deleted").
	Reason string `json:"reason,omitempty"`
	// Reconciled is set when reconciliation with Stripe made the change.
	Reconciled bool `json:"reconciled,omitempty"`
}

// EventName is NameAccountStatusChanged.
func (AccountStatusChanged) EventName() Name { return NameAccountStatusChanged }

// Invoice is what the payment events say of the invoice, and the
// account's tier when it happened.
type Invoice struct {
	Billing
	InvoiceID string `json:"invoice_id"`
	// AmountDue is in the currency's minor unit (pence).
	AmountDue int64 `json:"amount_due"`
	// Currency is Stripe's lower-case ISO code ("gbp").
	Currency     string  `json:"currency"`
	AttemptCount int64   `json:"attempt_count"`
	Tier         *string `json:"tier"`
}

// PaymentFailed is the payload of billing.payment_failed.
type PaymentFailed struct {
	Invoice
	// GraceUntil is set when this failure made the account past due:
	// when it is suspended unless the invoice is paid.
	GraceUntil *time.Time `json:"grace_until,omitempty"`
}

// EventName is NamePaymentFailed.
func (PaymentFailed) EventName() Name { return NamePaymentFailed }

// PaymentActionRequired is the payload of billing.payment_action_required.
type PaymentActionRequired struct {
	Invoice
}

// EventName is NamePaymentActionRequired.
func (PaymentActionRequired) EventName() Name { return NamePaymentActionRequired }

// PaymentRecovered is the payload of billing.payment_recovered.
type PaymentRecovered struct {
	Invoice
	// PreviousState is the dunning state the payment settled
	// (store.DunningPastDue or store.DunningSuspended).
	PreviousState string `json:"previous_state"`
}

// EventName is NamePaymentRecovered.
func (PaymentRecovered) EventName() Name { return NamePaymentRecovered }

// AccountSuspended is the payload of billing.account_suspended.
type AccountSuspended struct {
	Billing
	// InvoiceID is the unpaid invoice.
	InvoiceID    string    `json:"invoice_id"`
	PastDueSince time.Time `json:"past_due_since"`
	GraceUntil   time.Time `json:"grace_until"`
	Tier         *string   `json:"tier"`
}

// EventName is NameAccountSuspended.
func (AccountSuspended) EventName() Name { return NameAccountSuspended }

// TrialWillEnd is the payload of billing.trial_will_end.
type TrialWillEnd struct {
	Billing
	SubscriptionID string     `json:"subscription_id"`
	TrialEnd       *time.Time `json:"trial_end"`
}

// EventName is NameTrialWillEnd.
func (TrialWillEnd) EventName() Name { return NameTrialWillEnd }

// TrialReminder is the payload of billing.trial_reminder.
type TrialReminder struct {
	Billing
	SubscriptionID string    `json:"subscription_id"`
	TrialEnd       time.Time `json:"trial_end"`
	// DaysLeft is the whole days until the trial ends, rounded up.
	DaysLeft int `json:"days_left"`
	// Tier is the tier the trial is of, when known.
	Tier     *string `json:"tier,omitempty"`
	Incident string  `json:"incident"`
}

// EventName is NameTrialReminder.
func (TrialReminder) EventName() Name { return NameTrialReminder }

// DFYPurchased is the payload of billing.dfy_purchased, once per package
// of a checkout session.
type DFYPurchased struct {
	Billing
	// Package is the catalog's key of the package.
	Package           string `json:"package"`
	Quantity          int64  `json:"quantity"`
	CheckoutSessionID string `json:"checkout_session_id"`
}

// EventName is NameDFYPurchased.
func (DFYPurchased) EventName() Name { return NameDFYPurchased }

// ChargeRefunded is the payload of billing.charge_refunded. Amounts are in
// the currency's minor unit.
type ChargeRefunded struct {
	Billing
	ChargeID       string `json:"charge_id"`
	Amount         int64  `json:"amount"`
	AmountRefunded int64  `json:"amount_refunded"`
	Currency       string `json:"currency"`
}

// EventName is NameChargeRefunded.
func (ChargeRefunded) EventName() Name { return NameChargeRefunded }

// DisputeOpened is the payload of billing.dispute_opened.
type DisputeOpened struct {
	Billing
	DisputeID string `json:"dispute_id"`
	ChargeID  string `json:"charge_id"`
	// Amount is in the currency's minor unit.
	Amount int64 `json:"amount"`
	// Reason is Stripe's dispute reason ("fraudulent").
	Reason string `json:"reason"`
}

// EventName is NameDisputeOpened.
func (DisputeOpened) EventName() Name { return NameDisputeOpened }

// UnknownPrice is the payload of billing.unknown_price.
type UnknownPrice struct {
	Billing
	SubscriptionID string `json:"subscription_id"`
	// Prices are the Stripe price ids the catalog does not know.
	Prices []string `json:"prices"`
}

// EventName is NameUnknownPrice.
func (UnknownPrice) EventName() Name { return NameUnknownPrice }

// CustomerMismatch is the payload of billing.customer_mismatch: a signed
// checkout.session.completed whose client_reference_id names an account
// billed through another Stripe customer. Levqor neither relinks the
// account (that would let anyone's Checkout session capture an account's
// billing) nor records the session's purchases for it; an operator looks.
type CustomerMismatch struct {
	Billing
	CheckoutSessionID string `json:"checkout_session_id"`
	// AccountCustomerID is the account's Stripe customer, kept;
	// SessionCustomerID the session's, not applied.
	AccountCustomerID string `json:"account_customer_id"`
	SessionCustomerID string `json:"session_customer_id"`
	// Incident is "customer_mismatch:<session id>".
	Incident string `json:"incident"`
	Reason   string `json:"reason"`
}

// EventName is NameCustomerMismatch.
func (CustomerMismatch) EventName() Name { return NameCustomerMismatch }
