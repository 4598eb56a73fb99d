package billing

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/stripe/stripe-go/v76"

	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/command"
)

// Limits on billing command parameters.
const (
	// CheckoutItemsMax bounds the lines of one checkout: Stripe allows 20
	// in subscription mode.
	CheckoutItemsMax = 20
	// QuantityMax bounds one line's quantity.
	QuantityMax = 1000
	// URLMaxLength bounds success, cancel and return URLs.
	URLMaxLength = 2048
)

// CheckoutItem is one line of a checkout: a product key of the catalog
// and how many.
type CheckoutItem struct {
	// Key is a tier price key (growth_monthly, business_annual; legacy
	// tier names such as pro_monthly are understood), a DFY package
	// (dfy_onboarding) or an add-on (extra_storage).
	Key string `json:"key"`
	// Quantity is 1 to QuantityMax; a tier is bought once.
	Quantity int64 `json:"quantity"`
}

// CheckoutParams are the parameters of billing.checkout, the body of
// POST /v1/billing/checkout-sessions without account_id (which the
// command carries as its account).
type CheckoutParams struct {
	Items      []CheckoutItem `json:"items"`
	SuccessURL string         `json:"success_url"`
	CancelURL  string         `json:"cancel_url"`
}

// Normalize trims and lower-cases the keys and trims the URLs.
func (p *CheckoutParams) Normalize() {
	for i := range p.Items {
		p.Items[i].Key = strings.ToLower(strings.TrimSpace(p.Items[i].Key))
	}
	p.SuccessURL = strings.TrimSpace(p.SuccessURL)
	p.CancelURL = strings.TrimSpace(p.CancelURL)
}

// CheckoutLine is one resolved line of a checkout.
type CheckoutLine struct {
	// Key is the product key as the client gave it.
	Key string
	// Ref is what the key is in the catalog: the tier (legacy names
	// resolved), package or add-on.
	Ref catalog.PriceRef
	// PriceID is the Stripe price.
	PriceID  string
	Quantity int64
}

// CheckoutPlan is a validated checkout: the Stripe Checkout mode the
// items require and their prices.
type CheckoutPlan struct {
	// Mode is subscription (one tier, optional add-ons) or payment (DFY
	// packages only).
	Mode  stripe.CheckoutSessionMode
	Lines []CheckoutLine
}

// Products is the levqor_products metadata of a payment-mode session,
// "key:qty,…", which the checkout.session.completed handler reads to
// record the DFY purchases.
func (p CheckoutPlan) Products() string {
	parts := make([]string, 0, len(p.Lines))
	for _, l := range p.Lines {
		parts = append(parts, fmt.Sprintf("%s:%d", l.Ref.Key, l.Quantity))
	}
	return strings.Join(parts, ",")
}

// Plan validates p against cat and works out the Checkout mode. Failures
// are 422 *command.Error values naming the field: items, items[i].key,
// items[i].quantity, success_url or cancel_url.
func (p *CheckoutParams) Plan(cat *catalog.Catalog) (CheckoutPlan, error) {
	var plan CheckoutPlan
	if len(p.Items) == 0 {
		return plan, invalid("items", "items is required: at least one {\"key\", \"quantity\"}, e.g. {\"key\": \"growth_monthly\", \"quantity\": 1}")
	}
	if len(p.Items) > CheckoutItemsMax {
		return plan, invalid("items", fmt.Sprintf("at most %d items per checkout", CheckoutItemsMax))
	}
	tierAt := -1
	var packages, addons []int
	for i, it := range p.Items {
		keyField, qtyField := fmt.Sprintf("items[%d].key", i), fmt.Sprintf("items[%d].quantity", i)
		if it.Key == "" {
			return plan, invalid(keyField, "key is required: a product key such as growth_monthly, dfy_onboarding or extra_storage")
		}
		price, ref, ok := cat.PriceID(it.Key)
		if !ok {
			return plan, invalid(keyField, unknownKeyMessage(cat, it.Key))
		}
		if it.Quantity < 1 || it.Quantity > QuantityMax {
			return plan, invalid(qtyField, fmt.Sprintf("quantity must be from 1 to %d", QuantityMax))
		}
		for j := range i {
			if p.Items[j].Key == it.Key {
				return plan, invalid(keyField, fmt.Sprintf("%q is already items[%d]: give it once with the quantity you want", it.Key, j))
			}
		}
		switch ref.Kind {
		case catalog.KindTier:
			if tierAt >= 0 {
				return plan, invalid(keyField, fmt.Sprintf("one tier per checkout: items[%d] is already the tier %q", tierAt, p.Items[tierAt].Key))
			}
			if it.Quantity != 1 {
				return plan, invalid(qtyField, "a tier is bought once: quantity must be 1")
			}
			tierAt = i
		case catalog.KindPackage:
			packages = append(packages, i)
		case catalog.KindAddon:
			addons = append(addons, i)
		}
		plan.Lines = append(plan.Lines, CheckoutLine{Key: it.Key, Ref: ref, PriceID: price, Quantity: it.Quantity})
	}
	switch {
	case len(packages) > 0 && (tierAt >= 0 || len(addons) > 0):
		return plan, invalid("items", "DFY packages are a one-off payment and cannot be mixed with a tier or add-ons: "+
			"check out either one tier with optional add-ons (a subscription) or DFY packages (a payment)")
	case len(packages) > 0:
		plan.Mode = stripe.CheckoutSessionModePayment
	case tierAt < 0:
		return plan, invalid("items", "add-ons are bought with a tier (e.g. growth_monthly plus extra_storage); "+
			"to add one to an existing subscription use a billing portal session")
	default:
		plan.Mode = stripe.CheckoutSessionModeSubscription
	}
	if err := validateURL("success_url", p.SuccessURL); err != nil {
		return plan, err
	}
	if err := validateURL("cancel_url", p.CancelURL); err != nil {
		return plan, err
	}
	return plan, nil
}

// unknownKeyMessage explains an unknown product key, with the keys there
// are.
func unknownKeyMessage(cat *catalog.Catalog, key string) string {
	if tier, ok := cat.Tier(key); ok {
		return fmt.Sprintf("%q is a tier: say how it is billed, %s_monthly or %s_annual", key, tier, tier)
	}
	f := cat.File()
	var keys []string
	for _, t := range catalog.Tiers {
		if _, ok := f.Tiers[t]; ok {
			keys = append(keys, t+"_monthly", t+"_annual")
		}
	}
	keys = append(keys, sortedKeys(f.Packages)...)
	keys = append(keys, sortedKeys(f.Addons)...)
	return fmt.Sprintf("unknown product key %q; known keys: %s", shorten(key), strings.Join(keys, ", "))
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// shorten cuts s so that a hostile value cannot fill a message.
func shorten(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// PortalParams are the parameters of billing.portal, the body of
// POST /v1/billing/portal-sessions without account_id.
type PortalParams struct {
	// ReturnURL is where the portal sends the customer back to.
	ReturnURL string `json:"return_url"`
}

// Normalize trims the URL.
func (p *PortalParams) Normalize() { p.ReturnURL = strings.TrimSpace(p.ReturnURL) }

// Validate returns a 422 *command.Error naming return_url if it is bad.
func (p *PortalParams) Validate() error { return validateURL("return_url", p.ReturnURL) }

// loopbackHosts may be reached over plain http: a developer's machine,
// where Stripe's test mode sends the browser back to a local server.
var loopbackHosts = []string{"localhost", "127.0.0.1", "::1"}

// validateURL requires an absolute https URL (http only for loopback
// hosts) without credentials, of at most URLMaxLength bytes.
func validateURL(field, raw string) error {
	if raw == "" {
		return invalid(field, field+" is required: an absolute https:// URL")
	}
	if len(raw) > URLMaxLength {
		return invalid(field, fmt.Sprintf("%s is longer than %d characters", field, URLMaxLength))
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Hostname() == "" {
		return invalid(field, field+" must be an absolute URL such as https://app.example.com/billing/done")
	}
	if u.User != nil {
		return invalid(field, field+" must not contain a user name or password")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !slices.Contains(loopbackHosts, strings.ToLower(u.Hostname())) {
			return invalid(field, field+" must use https (http is accepted only for localhost and 127.0.0.1, in development)")
		}
	default:
		return invalid(field, field+" must use https")
	}
	return nil
}

func invalid(field, msg string) error {
	return command.Fail(http.StatusUnprocessableEntity, "invalid_field", field, msg)
}
