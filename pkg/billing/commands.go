package billing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/stripe/stripe-go/v76"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/stripeapi"
)

// WorkerName is the worker's name in LEVQOR_WORKERS.
const WorkerName = "billing"

// ConsumerCommands is the billing worker's durable consumer on COMMANDS.
const ConsumerCommands = "billing-cmd"

// Domain is the command domain the worker handles: levqor.cmd.billing.*.
const Domain = "billing"

// Actions of the billing domain.
const (
	// ActionCheckout creates a Stripe Checkout Session (CheckoutParams).
	ActionCheckout = "checkout"
	// ActionPortal creates a Stripe billing portal session (PortalParams).
	ActionPortal = "portal"
	// ActionSuspend is an operator suspending an account
	// (SuspensionParams); ActionReinstate lifts the suspension.
	ActionSuspend   = "suspend"
	ActionReinstate = "reinstate"
)

// CommandConsumer declares billing-cmd: every billing command.
func CommandConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerCommands, Kind: bus.Commands, Filter: Domain + ".>"}
}

// CheckoutIdempotencyKey is the Stripe idempotency key of the Checkout
// Session that command cmdID creates: every retry of the command, after a
// Stripe 5xx, a timeout or a crash before the commit, sends the same key,
// so Stripe answers with the session it already made instead of a second.
func CheckoutIdempotencyKey(cmdID string) string { return "levqor-" + cmdID + "-checkout" }

// PortalIdempotencyKey is the Stripe idempotency key of the billing portal
// session that command cmdID creates.
func PortalIdempotencyKey(cmdID string) string { return "levqor-" + cmdID + "-portal" }

// CheckoutResult is the result of billing.checkout: where to send the
// customer to pay.
type CheckoutResult struct {
	// ID is the Checkout Session id, cs_….
	ID string `json:"id"`
	// URL is the Stripe-hosted payment page.
	URL string `json:"url"`
	// Mode is subscription or payment.
	Mode string `json:"mode"`
}

// PortalResult is the result of billing.portal.
type PortalResult struct {
	// URL is the Stripe-hosted billing portal, valid for a short time.
	URL string `json:"url"`
}

// HandleCommand carries out one billing command (a command.Func).
func (w *Worker) HandleCommand(ctx context.Context, e *command.Envelope) (command.Effect, error) {
	return command.Route(ctx, e, "billing", Domain, command.Actions{
		ActionCheckout:  command.Typed(w.checkoutSession),
		ActionPortal:    command.Typed(w.portalSession),
		ActionSuspend:   command.Typed(w.suspend),
		ActionReinstate: command.Typed(w.reinstate),
	})
}

// commandAccount returns the account a command is for, with its Stripe
// customer.
func (w *Worker) commandAccount(ctx context.Context, e *command.Envelope) (*store.Account, error) {
	if e.AccountID == "" {
		return nil, invalid("account_id", "account_id is required")
	}
	acc, err := w.Store.GetAccount(ctx, e.AccountID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, command.Fail(http.StatusNotFound, "not_found", "account_id", "no account "+e.AccountID)
	}
	if err != nil {
		return nil, err
	}
	if acc.StripeCustomerID == "" {
		return nil, command.Fail(http.StatusConflict, "no_stripe_customer", "account_id",
			"account "+acc.ID+" has no Stripe customer to bill")
	}
	return acc, nil
}

func (w *Worker) checkoutSession(ctx context.Context, e *command.Envelope, p CheckoutParams) (command.Effect, error) {
	plan, err := p.Plan(w.Catalog)
	if err != nil {
		return nil, err
	}
	acc, err := w.commandAccount(ctx, e)
	if err != nil {
		return nil, err
	}
	if plan.Mode == stripe.CheckoutSessionModeSubscription {
		subs, err := w.Store.AccountSubscriptions(ctx, acc.ID)
		if err != nil {
			return nil, err
		}
		for _, s := range subs {
			if slices.Contains(entitledStatuses, s.Status) {
				return nil, command.Fail(http.StatusConflict, "already_subscribed", "items",
					fmt.Sprintf("account %s already has subscription %s (%s): change its plan in a billing portal session instead of starting a second one", acc.ID, s.ID, s.Status))
			}
		}
	}
	if w.Stripe == nil {
		return nil, stripeapi.NotConfigured(WorkerName)
	}
	params := &stripe.CheckoutSessionParams{
		Mode:              stripe.String(string(plan.Mode)),
		Customer:          stripe.String(acc.StripeCustomerID),
		ClientReferenceID: stripe.String(acc.ID),
		SuccessURL:        stripe.String(p.SuccessURL),
		CancelURL:         stripe.String(p.CancelURL),
	}
	params.Context = ctx
	for _, l := range plan.Lines {
		params.LineItems = append(params.LineItems, &stripe.CheckoutSessionLineItemParams{
			Price: stripe.String(l.PriceID), Quantity: stripe.Int64(l.Quantity),
		})
	}
	params.AddMetadata("levqor_account", acc.ID)
	switch plan.Mode {
	case stripe.CheckoutSessionModePayment:
		params.AddMetadata("levqor_products", plan.Products())
		params.PaymentIntentData = &stripe.CheckoutSessionPaymentIntentDataParams{}
		params.PaymentIntentData.AddMetadata("levqor_account", acc.ID)
	default:
		params.SubscriptionData = &stripe.CheckoutSessionSubscriptionDataParams{}
		params.SubscriptionData.AddMetadata("levqor_account", acc.ID)
	}
	params.SetIdempotencyKey(CheckoutIdempotencyKey(e.ID))
	cs, err := w.Stripe.CheckoutSessions.New(params)
	if err != nil {
		return nil, commandStripeError("creating checkout session", err)
	}
	w.m().sessions.WithLabelValues("checkout_" + string(plan.Mode)).Inc()
	bus.Logger(ctx).WithFields(logrus.Fields{"account_id": acc.ID, "checkout_session": cs.ID, "mode": plan.Mode}).Info("checkout session created")
	res := CheckoutResult{ID: cs.ID, URL: cs.URL, Mode: string(plan.Mode)}
	return func(context.Context, *store.Tx) (command.Outcome, error) {
		return command.Outcome{Status: http.StatusCreated, Result: res}, nil
	}, nil
}

func (w *Worker) portalSession(ctx context.Context, e *command.Envelope, p PortalParams) (command.Effect, error) {
	acc, err := w.commandAccount(ctx, e)
	if err != nil {
		return nil, err
	}
	if w.Stripe == nil {
		return nil, stripeapi.NotConfigured(WorkerName)
	}
	params := &stripe.BillingPortalSessionParams{Customer: stripe.String(acc.StripeCustomerID), ReturnURL: stripe.String(p.ReturnURL)}
	params.Context = ctx
	params.SetIdempotencyKey(PortalIdempotencyKey(e.ID))
	ps, err := w.Stripe.BillingPortalSessions.New(params)
	if err != nil {
		return nil, commandStripeError("creating billing portal session", err)
	}
	w.m().sessions.WithLabelValues("portal").Inc()
	bus.Logger(ctx).WithField("account_id", acc.ID).Info("billing portal session created")
	res := PortalResult{URL: ps.URL}
	return func(context.Context, *store.Tx) (command.Outcome, error) {
		return command.Outcome{Status: http.StatusCreated, Result: res}, nil
	}, nil
}

// commandStripeError classifies a Stripe failure of a billing command the
// way every command does (stripeapi.CommandError), naming billing's own
// fields.
func commandStripeError(doing string, err error) error {
	return stripeapi.CommandError(doing, err, stripeField)
}

// stripeField maps a Stripe parameter to the API field it came from.
func stripeField(param string) string {
	switch {
	case param == "success_url", param == "cancel_url", param == "return_url":
		return param
	case param == "customer":
		return "account_id"
	case strings.HasPrefix(param, "line_items"):
		// line_items[0][price] → items[0].key
		rest := strings.TrimPrefix(param, "line_items")
		idx, tail, _ := strings.Cut(strings.TrimPrefix(rest, "["), "]")
		if idx == "" {
			return "items"
		}
		if strings.Contains(tail, "quantity") {
			return "items[" + idx + "].quantity"
		}
		return "items[" + idx + "].key"
	}
	return ""
}
