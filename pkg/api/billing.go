package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/store"
)

// RecentInvoicesLimit is how many invoices GET /v1/accounts/{id}/billing
// shows, newest first.
const RecentInvoicesLimit = 10

// registerBilling adds the billing routes: the commands billing.checkout
// and billing.portal, and the billing read of an account.
func (s *Server) registerBilling(handle func(pattern string, h http.Handler)) {
	handle("POST /v1/billing/checkout-sessions", s.Guard(auth.AnyKey, http.HandlerFunc(s.createCheckoutSession)))
	handle("POST /v1/billing/portal-sessions", s.Guard(auth.AnyKey, http.HandlerFunc(s.createPortalSession)))
	handle("GET /v1/accounts/{id}/billing", s.Guard(auth.AnyKey, http.HandlerFunc(s.getAccountBilling)))
}

// checkoutRequest is the body of POST /v1/billing/checkout-sessions.
type checkoutRequest struct {
	AccountID  string                `json:"account_id"`
	Items      []checkoutItemRequest `json:"items"`
	SuccessURL string                `json:"success_url"`
	CancelURL  string                `json:"cancel_url"`
}

type checkoutItemRequest struct {
	Key string `json:"key"`
	// Quantity defaults to 1 when left out; 0 is refused.
	Quantity *int64 `json:"quantity"`
}

// portalRequest is the body of POST /v1/billing/portal-sessions.
type portalRequest struct {
	AccountID string `json:"account_id"`
	ReturnURL string `json:"return_url"`
}

// createCheckoutSession serves POST /v1/billing/checkout-sessions: the
// command billing.checkout, which the billing worker carries out by
// creating a Stripe Checkout Session for the account's Stripe customer.
func (s *Server) createCheckoutSession(w http.ResponseWriter, r *http.Request) {
	if !checkQuery(w, r, "wait") {
		return
	}
	wait, ok := parseWait(w, r)
	if !ok {
		return
	}
	key, ok := idempotencyKey(w, r)
	if !ok {
		return
	}
	var req checkoutRequest
	if !s.readJSON(w, r, &req) {
		return
	}
	accountID, ok := s.bodyAccountID(w, r, req.AccountID)
	if !ok {
		return
	}
	p := billing.CheckoutParams{SuccessURL: req.SuccessURL, CancelURL: req.CancelURL}
	for _, it := range req.Items {
		q := int64(1)
		if it.Quantity != nil {
			q = *it.Quantity
		}
		p.Items = append(p.Items, billing.CheckoutItem{Key: it.Key, Quantity: q})
	}
	p.Normalize()
	if s.catalog != nil {
		if _, err := p.Plan(s.catalog); err != nil {
			writeError(w, err)
			return
		}
	}
	s.submit(w, r, submission{
		domain: billing.Domain, action: billing.ActionCheckout, accountID: accountID,
		params: p, idempotencyKey: key, wait: wait,
	})
}

// createPortalSession serves POST /v1/billing/portal-sessions: the command
// billing.portal, a Stripe billing portal session where the customer
// changes plan, payment method or cancels.
func (s *Server) createPortalSession(w http.ResponseWriter, r *http.Request) {
	if !checkQuery(w, r, "wait") {
		return
	}
	wait, ok := parseWait(w, r)
	if !ok {
		return
	}
	key, ok := idempotencyKey(w, r)
	if !ok {
		return
	}
	var req portalRequest
	if !s.readJSON(w, r, &req) {
		return
	}
	accountID, ok := s.bodyAccountID(w, r, req.AccountID)
	if !ok {
		return
	}
	p := billing.PortalParams{ReturnURL: req.ReturnURL}
	p.Normalize()
	if err := p.Validate(); err != nil {
		writeError(w, err)
		return
	}
	s.submit(w, r, submission{
		domain: billing.Domain, action: billing.ActionPortal, accountID: accountID,
		params: p, idempotencyKey: key, wait: wait,
	})
}

// bodyAccountID resolves the account_id of a request body: operators must
// name one; an account key may leave it out (its own account) or name its
// own. Another account's id answers 404 exactly as an unknown one does.
func (s *Server) bodyAccountID(w http.ResponseWriter, r *http.Request, id string) (string, bool) {
	p := principal(r)
	id = strings.TrimSpace(id)
	if id == "" {
		if p.Operator {
			writeError(w, command.Fail(http.StatusUnprocessableEntity, "invalid_field", "account_id",
				"account_id is required with an operator key: the account to bill (acc_…)"))
			return "", false
		}
		id = p.AccountID
	}
	if !command.ValidID(id, store.AccountIDPrefix) {
		writeError(w, command.Fail(http.StatusUnprocessableEntity, "invalid_field", "account_id", "not an account id (acc_…)"))
		return "", false
	}
	if !p.Sees(id) {
		httpjson.Error(w, http.StatusNotFound, "not_found", "no account "+id, "account_id")
		return "", false
	}
	if _, err := s.store.GetAccount(r.Context(), id); errors.Is(err, store.ErrNotFound) {
		httpjson.Error(w, http.StatusNotFound, "not_found", "no account "+id, "account_id")
		return "", false
	} else if err != nil {
		s.unavailable(w, r, err, "cannot read the account")
		return "", false
	}
	return id, true
}

// AccountBilling is what GET /v1/accounts/{id}/billing answers: the
// account's tier, status and entitlements as billing derived them from
// Stripe, and what they were derived from.
type AccountBilling struct {
	AccountID string `json:"account_id"`
	// Tier is the subscription tier, null without an entitling
	// subscription.
	Tier *string `json:"tier"`
	// Status is active, past_due, suspended, paused or canceled.
	Status string `json:"status"`
	// Entitlements are the tier's quotas, retention and SLA with the
	// add-ons applied; {} without a tier.
	Entitlements json.RawMessage `json:"entitlements"`
	// StripeCustomerID is the Stripe customer that pays.
	StripeCustomerID string `json:"stripe_customer_id"`
	// Subscriptions are the account's Stripe subscriptions, newest first.
	Subscriptions []SubscriptionView `json:"subscriptions"`
	// Dunning is the account's payment trouble, null if it never had any.
	Dunning *DunningView `json:"dunning"`
	// Invoices are the newest invoices, at most RecentInvoicesLimit.
	Invoices []InvoiceView `json:"invoices"`
	// DFYPurchases are the Done-For-You packages bought.
	DFYPurchases []DFYPurchaseView `json:"dfy_purchases"`
}

// SubscriptionView is a subscription in AccountBilling.
type SubscriptionView struct {
	ID     string             `json:"id"`
	Status string             `json:"status"`
	Items  []SubscriptionLine `json:"items"`
	// UnknownPrices are prices not in the catalog: while there are any,
	// the entitlements stay as they were.
	UnknownPrices     []string   `json:"unknown_prices"`
	CurrentPeriodEnd  *time.Time `json:"current_period_end"`
	CancelAtPeriodEnd bool       `json:"cancel_at_period_end"`
	TrialEnd          *time.Time `json:"trial_end"`
	UpdatedAt         time.Time  `json:"updated_at"`
}

// SubscriptionLine is one item of a subscription: its Stripe price and,
// when the catalog knows it, what it is in Levqor's terms.
type SubscriptionLine struct {
	PriceID  string `json:"price_id"`
	Quantity int64  `json:"quantity"`
	// Kind is tier, addon or package; "" for a price the catalog does not
	// know.
	Kind string `json:"kind,omitempty"`
	// Key is the tier, add-on or package (legacy names resolved).
	Key string `json:"key,omitempty"`
	// Interval is month or year for tiers.
	Interval string `json:"interval,omitempty"`
}

// DunningView is an account's dunning state in AccountBilling.
type DunningView struct {
	// State is past_due, suspended or settled.
	State        string     `json:"state"`
	InvoiceID    string     `json:"invoice_id"`
	PastDueSince time.Time  `json:"past_due_since"`
	GraceUntil   time.Time  `json:"grace_until"`
	SuspendedAt  *time.Time `json:"suspended_at"`
}

// InvoiceView is an invoice in AccountBilling; amounts are in the
// currency's smallest unit (pence).
type InvoiceView struct {
	ID                 string     `json:"id"`
	SubscriptionID     string     `json:"subscription_id,omitempty"`
	Status             string     `json:"status"`
	Currency           string     `json:"currency"`
	AmountDue          int64      `json:"amount_due"`
	AmountPaid         int64      `json:"amount_paid"`
	AttemptCount       int64      `json:"attempt_count"`
	NextPaymentAttempt *time.Time `json:"next_payment_attempt"`
	HostedInvoiceURL   string     `json:"hosted_invoice_url,omitempty"`
	Created            time.Time  `json:"created"`
}

// DFYPurchaseView is a Done-For-You purchase in AccountBilling.
type DFYPurchaseView struct {
	Package           string    `json:"package"`
	Quantity          int64     `json:"quantity"`
	CheckoutSessionID string    `json:"checkout_session_id"`
	PurchasedAt       time.Time `json:"purchased_at"`
}

// getAccountBilling serves GET /v1/accounts/{id}/billing, from the
// database.
func (s *Server) getAccountBilling(w http.ResponseWriter, r *http.Request) {
	id, ok := s.visibleAccountID(w, r)
	if !ok {
		return
	}
	if !checkQuery(w, r) {
		return
	}
	ctx := r.Context()
	a, err := s.store.GetAccount(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		notFoundAccount(w, id)
		return
	}
	if err != nil {
		s.unavailable(w, r, err, "cannot read the account")
		return
	}
	subs, err := s.store.AccountSubscriptions(ctx, id)
	if err != nil {
		s.unavailable(w, r, err, "cannot read the subscriptions")
		return
	}
	dunning, err := s.store.GetDunning(ctx, id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.unavailable(w, r, err, "cannot read the dunning state")
		return
	}
	invoices, err := s.store.RecentInvoices(ctx, id, RecentInvoicesLimit)
	if err != nil {
		s.unavailable(w, r, err, "cannot read the invoices")
		return
	}
	purchases, err := s.store.DFYPurchases(ctx, id)
	if err != nil {
		s.unavailable(w, r, err, "cannot read the purchases")
		return
	}
	out := AccountBilling{
		AccountID: a.ID, Tier: a.Tier, Status: a.Status, Entitlements: a.Entitlements, StripeCustomerID: a.StripeCustomerID,
		Subscriptions: make([]SubscriptionView, 0, len(subs)), Invoices: make([]InvoiceView, 0, len(invoices)),
		DFYPurchases: make([]DFYPurchaseView, 0, len(purchases)),
	}
	for _, sub := range subs {
		v := SubscriptionView{
			ID: sub.ID, Status: sub.Status, Items: make([]SubscriptionLine, 0, len(sub.Items)), UnknownPrices: sub.UnknownPrices,
			CurrentPeriodEnd: sub.CurrentPeriodEnd, CancelAtPeriodEnd: sub.CancelAtPeriodEnd, TrialEnd: sub.TrialEnd, UpdatedAt: sub.UpdatedAt,
		}
		if v.UnknownPrices == nil {
			v.UnknownPrices = []string{}
		}
		for _, it := range sub.Items {
			line := SubscriptionLine{PriceID: it.PriceID, Quantity: it.Quantity}
			if s.catalog != nil {
				if ref, ok := s.catalog.Resolve(catalog.Item{PriceID: it.PriceID, LookupKey: it.LookupKey, Metadata: it.Metadata, Quantity: it.Quantity}); ok {
					line.Kind, line.Key, line.Interval = string(ref.Kind), ref.Key, ref.Interval
				}
			}
			v.Items = append(v.Items, line)
		}
		out.Subscriptions = append(out.Subscriptions, v)
	}
	if dunning != nil {
		out.Dunning = &DunningView{State: dunning.State, InvoiceID: dunning.InvoiceID, PastDueSince: dunning.PastDueSince,
			GraceUntil: dunning.GraceUntil, SuspendedAt: dunning.SuspendedAt}
	}
	for _, inv := range invoices {
		out.Invoices = append(out.Invoices, InvoiceView{
			ID: inv.ID, SubscriptionID: inv.SubscriptionID, Status: inv.Status, Currency: inv.Currency,
			AmountDue: inv.AmountDue, AmountPaid: inv.AmountPaid, AttemptCount: inv.AttemptCount,
			NextPaymentAttempt: inv.NextPaymentAttempt, HostedInvoiceURL: inv.HostedInvoiceURL, Created: inv.Created,
		})
	}
	for _, p := range purchases {
		// The store keys a purchase by "<session>:<package>".
		session, _, _ := strings.Cut(p.CheckoutSessionID, ":")
		out.DFYPurchases = append(out.DFYPurchases, DFYPurchaseView{
			Package: p.Package, Quantity: p.Quantity, CheckoutSessionID: session, PurchasedAt: p.PurchasedAt,
		})
	}
	httpjson.Write(w, http.StatusOK, out)
}
