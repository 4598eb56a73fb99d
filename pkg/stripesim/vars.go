package stripesim

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// varID names a template variable. Values are raw JSON.
type varID uint8

// The template variables. Each has a default in varDefs; an event type's
// state function overrides the ones that make the event what it is.
const (
	// Envelope.
	vEventID varID = iota
	vAPIVersion
	vEventCreated
	vEventType
	vLivemode
	vRequestID
	vIdempotencyKey
	vObject
	vPreviousAttributes

	// Ids of the object and of the objects it points at.
	vID
	vCustomer
	vSubscription
	vInvoice
	vCharge
	vPaymentIntent
	vSubscriptionItem
	vInvoiceLine
	vPaymentMethod
	vBalanceTransaction
	vPrevInvoice
	vItemsURL
	vLinesURL

	// The price and what it is worth.
	vPrice
	vLookupKey
	vProduct
	vInterval
	vUnitAmount
	vUnitAmountDecimal
	vPriceCreated
	vLineDescription
	vAmount
	vAmountPaid
	vAmountRemaining
	vAmountCaptured
	vAmountRefunded
	vAmountReceived
	vDisputeTxnAmount
	vDisputeTxnNet
	vDisputeTxnDescription

	// The customer.
	vEmail
	vName
	vCustomerCurrency
	vCustomerDefaultPaymentMethod
	vInvoicePrefix
	vNextInvoiceSequence
	vCustomerDetails

	// Times.
	vCreated
	vStartDate
	vBillingCycleAnchor
	vPeriodStart
	vPeriodEnd
	vPrevPeriodStart
	vInvoicePeriodStart
	vInvoicePeriodEnd
	vCancelAt
	vCanceledAt
	vEndedAt
	vTrialStart
	vTrialEnd
	vFinalizedAt
	vPaidAt
	vVoidedAt
	vMarkedUncollectibleAt
	vEffectiveAt
	vNextPaymentAttempt
	vWebhooksDeliveredAt
	vExpiresAt
	vDueBy
	vAvailableOn

	// States.
	vStatus
	vCancelAtPeriodEnd
	vCancellationReason
	vTrialMissingPaymentMethod
	vBillingReason
	vAttemptCount
	vAttempted
	vPaid
	vAutoAdvance
	vEndingBalance
	vInvoiceNumber
	vHostedInvoiceURL
	vInvoicePDF
	vClientReferenceID
	vMode
	vPaymentStatus
	vCheckoutURL
	vCaptured
	vRefunded
	vFailureCode
	vFailureMessage
	vNetworkStatus
	vOutcomeReason
	vRiskLevel
	vSellerMessage
	vOutcomeType
	vReceiptURL
	vDescription
	vClientSecret
	vLastPaymentError
	vLatestCharge
	vReason
	vHasEvidence
	vSubmissionCount
	vIsChargeRefundable

	numVars
	noVar = numVars
)

// varDef is a variable's name in templates and its default value. A
// variable with a sub template renders that object when its value is
// useSubTemplate.
type varDef struct {
	name string
	def  func(*builder) []byte
	sub  string
}

// Literal JSON values.
var (
	jsonNull  = []byte("null")
	jsonTrue  = []byte("true")
	jsonFalse = []byte("false")
	jsonZero  = []byte("0")
	// useSubTemplate is never valid JSON, so it cannot collide with a value.
	useSubTemplate = []byte{0}
)

func isSubTemplate(v []byte) bool { return len(v) == 1 && v[0] == 0 }

func lit(s string) func(*builder) []byte {
	v := []byte(s)
	return func(*builder) []byte { return v }
}

func idVar(r rel) func(*builder) []byte {
	return func(b *builder) []byte { return b.str(b.id(r)) }
}

func timeVar(f func(*builder) int64) func(*builder) []byte {
	return func(b *builder) []byte { return b.int(f(b)) }
}

// Account-level constants that appear in URLs and receipts.
const (
	accountID           = "acct_1LevqorGBP0000"
	statementDescriptor = "LEVQOR"
	disputeFee          = 2000 // GBP 20.00, Stripe's UK dispute fee
	defaultPrice        = "price_growth_monthly"
)

var varDefs = [numVars]varDef{
	vEventID: {name: "event_id", def: func(b *builder) []byte {
		if b.opts.ID != "" {
			return b.str(b.opts.ID)
		}
		return b.str(randomID("evt_", 24))
	}},
	vAPIVersion:   {name: "api_version", def: func(b *builder) []byte { return b.str(b.apiVersion) }},
	vEventCreated: {name: "event_created", def: timeVar(func(b *builder) int64 { return b.evt })},
	vEventType:    {name: "event_type", def: func(b *builder) []byte { return b.str(b.eventType) }},
	vLivemode: {name: "livemode", def: func(b *builder) []byte {
		if b.opts.Livemode {
			return jsonTrue
		}
		return jsonFalse
	}},
	vRequestID: {name: "request_id", def: func(b *builder) []byte {
		if b.spec.automatic {
			return jsonNull
		}
		return b.str(randomID("req_", 14))
	}},
	vIdempotencyKey: {name: "idempotency_key", def: func(b *builder) []byte {
		if b.spec.automatic {
			return jsonNull
		}
		return b.str(randomUUID())
	}},
	vObject:             {name: "object"},
	vPreviousAttributes: {name: "previous_attributes"},

	vID:                 {name: "id", def: func(b *builder) []byte { return b.str(b.id(b.spec.kind.rel)) }},
	vCustomer:           {name: "customer", def: idVar(relCustomer)},
	vSubscription:       {name: "subscription", def: idVar(relSubscription)},
	vInvoice:            {name: "invoice", def: idVar(relInvoice)},
	vCharge:             {name: "charge", def: idVar(relCharge)},
	vPaymentIntent:      {name: "payment_intent", def: idVar(relPaymentIntent)},
	vSubscriptionItem:   {name: "subscription_item", def: idVar(relSubscriptionItem)},
	vInvoiceLine:        {name: "invoice_line", def: idVar(relInvoiceLine)},
	vPaymentMethod:      {name: "payment_method", def: idVar(relPaymentMethod)},
	vBalanceTransaction: {name: "balance_transaction", def: idVar(relBalanceTransaction)},
	vPrevInvoice:        {name: "prev_invoice", def: idVar(relPrevInvoice)},
	vItemsURL: {name: "items_url", def: func(b *builder) []byte {
		return b.str("/v1/subscription_items?subscription=" + b.id(relSubscription))
	}},
	vLinesURL: {name: "lines_url", def: func(b *builder) []byte {
		return b.str("/v1/invoices/" + b.id(relInvoice) + "/lines")
	}},

	vPrice:     {name: "price", def: func(b *builder) []byte { return b.str(b.price.id) }},
	vLookupKey: {name: "lookup_key", def: func(b *builder) []byte { return b.str(b.price.lookupKey) }},
	vProduct:   {name: "product", def: func(b *builder) []byte { return b.str(b.price.product) }},
	vInterval:  {name: "interval", def: func(b *builder) []byte { return b.str(b.price.interval) }},
	vUnitAmount: {name: "unit_amount", def: func(b *builder) []byte {
		return b.int(b.price.unitAmount)
	}},
	vUnitAmountDecimal: {name: "unit_amount_decimal", def: func(b *builder) []byte {
		return b.str(strconv.FormatInt(b.price.unitAmount, 10))
	}},
	vPriceCreated: {name: "price_created", def: lit("1696118400")},
	vLineDescription: {name: "line_description", def: func(b *builder) []byte {
		return b.str(b.price.lineDescription)
	}},
	vAmount:          {name: "amount", def: func(b *builder) []byte { return b.int(b.price.unitAmount) }},
	vAmountPaid:      {name: "amount_paid", def: func(b *builder) []byte { return b.get(vAmount) }},
	vAmountRemaining: {name: "amount_remaining", def: lit("0")},
	vAmountCaptured:  {name: "amount_captured", def: func(b *builder) []byte { return b.get(vAmount) }},
	vAmountRefunded:  {name: "amount_refunded", def: lit("0")},
	vAmountReceived:  {name: "amount_received", def: func(b *builder) []byte { return b.get(vAmount) }},
	vDisputeTxnAmount: {name: "dispute_txn_amount", def: func(b *builder) []byte {
		return b.int(-b.price.unitAmount)
	}},
	vDisputeTxnNet: {name: "dispute_txn_net", def: func(b *builder) []byte {
		return b.int(-b.price.unitAmount - disputeFee)
	}},
	vDisputeTxnDescription: {name: "dispute_txn_description", def: func(b *builder) []byte {
		return b.str("Chargeback withdrawal for " + b.id(relCharge))
	}},

	vEmail: {name: "email", def: func(b *builder) []byte {
		c := strings.TrimPrefix(b.id(relCustomer), "cus_")
		return b.str(strings.ToLower(c) + "@example.com")
	}},
	vName:                         {name: "name", def: lit(`"Jenny Rosen"`)},
	vCustomerCurrency:             {name: "customer_currency", def: lit(`"gbp"`)},
	vCustomerDefaultPaymentMethod: {name: "customer_default_payment_method", def: lit("null")},
	vInvoicePrefix: {name: "invoice_prefix", def: func(b *builder) []byte {
		return b.str(invoicePrefix(b.id(relCustomer)))
	}},
	vNextInvoiceSequence: {name: "next_invoice_sequence", def: lit("3")},
	vCustomerDetails: {
		name: "customer_details",
		def:  func(*builder) []byte { return useSubTemplate },
		sub:  customerDetailsJSON,
	},

	vCreated:   {name: "created", def: timeVar(func(b *builder) int64 { return b.created })},
	vStartDate: {name: "start_date", def: func(b *builder) []byte { return b.get(vCreated) }},
	vBillingCycleAnchor: {name: "billing_cycle_anchor", def: func(b *builder) []byte {
		return b.get(vStartDate)
	}},
	vPeriodStart: {name: "period_start", def: timeVar(func(b *builder) int64 { return b.periodStart })},
	vPeriodEnd: {name: "period_end", def: timeVar(func(b *builder) int64 {
		return b.addInterval(b.periodStart, 1)
	})},
	vPrevPeriodStart: {name: "prev_period_start", def: timeVar(func(b *builder) int64 {
		return b.addInterval(b.periodStart, -1)
	})},
	vInvoicePeriodStart:    {name: "invoice_period_start", def: func(b *builder) []byte { return b.get(vPrevPeriodStart) }},
	vInvoicePeriodEnd:      {name: "invoice_period_end", def: func(b *builder) []byte { return b.get(vPeriodStart) }},
	vCancelAt:              {name: "cancel_at", def: lit("null")},
	vCanceledAt:            {name: "canceled_at", def: lit("null")},
	vEndedAt:               {name: "ended_at", def: lit("null")},
	vTrialStart:            {name: "trial_start", def: lit("null")},
	vTrialEnd:              {name: "trial_end", def: lit("null")},
	vFinalizedAt:           {name: "finalized_at", def: lit("null")},
	vPaidAt:                {name: "paid_at", def: lit("null")},
	vVoidedAt:              {name: "voided_at", def: lit("null")},
	vMarkedUncollectibleAt: {name: "marked_uncollectible_at", def: lit("null")},
	vEffectiveAt:           {name: "effective_at", def: func(b *builder) []byte { return b.get(vFinalizedAt) }},
	vNextPaymentAttempt:    {name: "next_payment_attempt", def: lit("null")},
	vWebhooksDeliveredAt: {name: "webhooks_delivered_at", def: timeVar(func(b *builder) int64 {
		return b.created + 2
	})},
	vExpiresAt: {name: "expires_at", def: timeVar(func(b *builder) int64 { return b.created + 24*3600 })},
	vDueBy: {name: "due_by", def: timeVar(func(b *builder) int64 {
		return b.created + 8*24*3600
	})},
	vAvailableOn: {name: "available_on", def: timeVar(func(b *builder) int64 {
		return b.created + 7*24*3600
	})},

	vStatus:                    {name: "status", def: lit("null")},
	vCancelAtPeriodEnd:         {name: "cancel_at_period_end", def: lit("false")},
	vCancellationReason:        {name: "cancellation_reason", def: lit("null")},
	vTrialMissingPaymentMethod: {name: "trial_missing_payment_method", def: lit(`"create_invoice"`)},
	vBillingReason:             {name: "billing_reason", def: lit(`"subscription_cycle"`)},
	vAttemptCount:              {name: "attempt_count", def: lit("1")},
	vAttempted:                 {name: "attempted", def: lit("true")},
	vPaid:                      {name: "paid", def: lit("false")},
	vAutoAdvance:               {name: "auto_advance", def: lit("false")},
	vEndingBalance:             {name: "ending_balance", def: lit("0")},
	vInvoiceNumber: {name: "invoice_number", def: func(b *builder) []byte {
		return b.str(invoicePrefix(b.id(relCustomer)) + "-0002")
	}},
	vHostedInvoiceURL: {name: "hosted_invoice_url", def: func(b *builder) []byte {
		return b.str(b.hostedInvoiceURL())
	}},
	vInvoicePDF: {name: "invoice_pdf", def: func(b *builder) []byte {
		return b.str(b.hostedInvoiceURL() + "/pdf?s=ap")
	}},
	vClientReferenceID: {name: "client_reference_id", def: func(b *builder) []byte {
		if b.opts.AccountRef == "" {
			return jsonNull
		}
		return b.str(b.opts.AccountRef)
	}},
	vMode:           {name: "mode", def: lit(`"subscription"`)},
	vPaymentStatus:  {name: "payment_status", def: lit(`"paid"`)},
	vCheckoutURL:    {name: "checkout_url", def: lit("null")},
	vCaptured:       {name: "captured", def: lit("true")},
	vRefunded:       {name: "refunded", def: lit("false")},
	vFailureCode:    {name: "failure_code", def: lit("null")},
	vFailureMessage: {name: "failure_message", def: lit("null")},
	vNetworkStatus:  {name: "network_status", def: lit(`"approved_by_network"`)},
	vOutcomeReason:  {name: "outcome_reason", def: lit("null")},
	vRiskLevel:      {name: "risk_level", def: lit(`"normal"`)},
	vSellerMessage:  {name: "seller_message", def: lit(`"Payment complete."`)},
	vOutcomeType:    {name: "outcome_type", def: lit(`"authorized"`)},
	vReceiptURL: {name: "receipt_url", def: func(b *builder) []byte {
		return b.str("https://pay.stripe.com/receipts/invoices/" + randomAlnum(60) + "?s=ap")
	}},
	vDescription: {name: "description", def: lit(`"Subscription update"`)},
	vClientSecret: {name: "client_secret", def: func(b *builder) []byte {
		return b.str(b.id(relPaymentIntent) + "_secret_" + randomAlnum(25))
	}},
	vLastPaymentError: {
		name: "last_payment_error",
		def:  lit("null"),
		sub:  lastPaymentErrorJSON,
	},
	vLatestCharge:       {name: "latest_charge", def: func(b *builder) []byte { return b.get(vCharge) }},
	vReason:             {name: "reason", def: lit("null")},
	vHasEvidence:        {name: "has_evidence", def: lit("false")},
	vSubmissionCount:    {name: "submission_count", def: lit("0")},
	vIsChargeRefundable: {name: "is_charge_refundable", def: lit("false")},
}

// varDefaults holds varDefs' default functions. It is filled in by init
// because the defaults themselves call builder.get, which reads it.
var varDefaults [numVars]func(*builder) []byte

func init() {
	for i, d := range varDefs {
		if d.def == nil {
			varDefaults[i] = func(*builder) []byte { return jsonNull }
			continue
		}
		varDefaults[i] = d.def
	}
}

// varIndex maps placeholder names to variables, for compileTemplate.
var varIndex = func() map[string]varID {
	m := make(map[string]varID, numVars)
	for i, d := range varDefs {
		if d.name == "" {
			panic(fmt.Sprintf("stripesim: variable %d has no name", i))
		}
		m[d.name] = varID(i)
	}
	return m
}()

// rel is a kind of object an event refers to by id.
type rel uint8

const (
	relCustomer rel = iota
	relSubscription
	relInvoice
	relCheckoutSession
	relCharge
	relDispute
	relPaymentIntent
	relSubscriptionItem
	relInvoiceLine
	relPaymentMethod
	relBalanceTransaction
	relPrevInvoice
	numRels
)

// relPrefix is the id prefix and random length of each kind of id, as
// Stripe writes them.
var relPrefix = [numRels]struct {
	prefix string
	n      int
}{
	relCustomer:           {"cus_", 14},
	relSubscription:       {"sub_", 24},
	relInvoice:            {"in_", 24},
	relCharge:             {"ch_", 24},
	relDispute:            {"du_", 24},
	relPaymentIntent:      {"pi_", 24},
	relSubscriptionItem:   {"si_", 14},
	relInvoiceLine:        {"il_", 24},
	relPaymentMethod:      {"pm_", 24},
	relBalanceTransaction: {"txn_", 24},
	relPrevInvoice:        {"in_", 24},
}

// builder holds one event's variables while it renders.
type builder struct {
	spec       *eventSpec
	opts       *EventOptions
	eventType  string
	apiVersion string
	evt        int64 // event created, Unix seconds
	price      priceInfo

	// created and periodStart are the object's creation time and the
	// start of its current billing period; state functions move them.
	created     int64
	periodStart int64

	ids   [numRels]string
	vals  [numVars][]byte
	arena []byte
}

var builderPool = sync.Pool{New: func() any { return &builder{arena: make([]byte, 0, 1024)} }}

func getBuilder() *builder { return builderPool.Get().(*builder) }

func putBuilder(b *builder) {
	arena := b.arena[:0]
	if cap(arena) > 64<<10 {
		arena = nil // do not keep one huge option's memory around
	}
	*b = builder{arena: arena}
	builderPool.Put(b)
}

// get returns v's value, computing its default on first use so that every
// occurrence of v in an event agrees.
func (b *builder) get(v varID) []byte {
	if val := b.vals[v]; val != nil {
		return val
	}
	val := varDefaults[v](b)
	b.vals[v] = val
	return val
}

// set fixes v to the raw JSON value raw.
func (b *builder) set(v varID, raw string) { b.vals[v] = []byte(raw) }

func (b *builder) setTime(v varID, unix int64) { b.vals[v] = b.int(unix) }

func (b *builder) setSub(v varID) { b.vals[v] = useSubTemplate }

// id returns the id of the related object r, generating it on first use.
// The event's own object takes EventOptions.ObjectID; a customer and a
// subscription take EventOptions.Customer and EventOptions.Subscription
// (which a customer or subscription event's object falls back to).
func (b *builder) id(r rel) string {
	if s := b.ids[r]; s != "" {
		return s
	}
	var s string
	switch {
	case r == b.spec.kind.rel && b.opts.ObjectID != "":
		s = b.opts.ObjectID
	case r == relCustomer && b.opts.Customer != "":
		s = b.opts.Customer
	case r == relSubscription && b.opts.Subscription != "":
		s = b.opts.Subscription
	case r == relCheckoutSession:
		mode := "cs_test_a1"
		if b.opts.Livemode {
			mode = "cs_live_a1"
		}
		s = randomID(mode, 56)
	default:
		p := relPrefix[r]
		s = randomID(p.prefix, p.n)
	}
	b.ids[r] = s
	return s
}

// str returns s as a JSON string.
func (b *builder) str(s string) []byte {
	start := len(b.arena)
	b.arena = appendJSONString(b.arena, s)
	return b.arena[start:len(b.arena):len(b.arena)]
}

// int returns n as a JSON number.
func (b *builder) int(n int64) []byte {
	start := len(b.arena)
	b.arena = strconv.AppendInt(b.arena, n, 10)
	return b.arena[start:len(b.arena):len(b.arena)]
}

// addInterval moves unix by n billing intervals of the price, in calendar
// months or years as Stripe does.
func (b *builder) addInterval(unix int64, n int) int64 {
	t := time.Unix(unix, 0).UTC()
	if b.price.interval == "year" {
		return t.AddDate(n, 0, 0).Unix()
	}
	return t.AddDate(0, n, 0).Unix()
}

func (b *builder) hostedInvoiceURL() string {
	mode := "test_"
	if b.opts.Livemode {
		mode = "live_"
	}
	return "https://invoice.stripe.com/i/" + accountID + "/" + mode + invoiceToken(b.id(relInvoice))
}

// invoiceToken derives the opaque part of an invoice's hosted URL from its
// id, so that the page and PDF links of one invoice agree.
func invoiceToken(invoiceID string) string {
	h := fnv.New64a()
	h.Write([]byte(invoiceID))
	return "YWNjdF8x" + strconv.FormatUint(h.Sum64(), 36) + "MDAwMDAwMDAw"
}

// invoicePrefix derives a customer's invoice number prefix from its id:
// Stripe assigns one per customer, so every invoice of a customer shares it.
func invoicePrefix(customerID string) string {
	h := fnv.New32a()
	h.Write([]byte(customerID))
	return strings.ToUpper(fmt.Sprintf("%08x", h.Sum32()))
}

// priceInfo is what the templates show of a price. Stripe price ids are
// opaque; Levqor's tests use readable ids like price_growth_monthly, so the
// lookup key, product and interval are derived from the id.
type priceInfo struct {
	id              string
	lookupKey       string
	product         string
	interval        string
	unitAmount      int64
	lineDescription string // an invoice line's description, as Stripe writes it
}

// Default amounts in pence: GBP 49.00 a month or GBP 490.00 a year.
const (
	monthlyAmount = 4900
	yearlyAmount  = 49000
)

func newPriceInfo(id string) priceInfo {
	p := priceInfo{id: id, interval: "month", unitAmount: monthlyAmount}
	p.lookupKey = strings.TrimPrefix(id, "price_")
	base := p.lookupKey
	for _, suffix := range []string{"_monthly", "_month", "_annual", "_annually", "_yearly", "_year"} {
		if trimmed, ok := strings.CutSuffix(base, suffix); ok {
			base = trimmed
			if strings.Contains(suffix, "ann") || strings.Contains(suffix, "year") {
				p.interval = "year"
				p.unitAmount = yearlyAmount
			}
			break
		}
	}
	if base == "" {
		base = "levqor"
	}
	p.product = "prod_" + base
	words := strings.FieldsFunc(base, func(r rune) bool { return r == '_' || r == '-' })
	for i, w := range words {
		r, size := utf8.DecodeRuneInString(w)
		words[i] = strings.ToUpper(string(r)) + w[size:]
	}
	a := p.unitAmount
	p.lineDescription = fmt.Sprintf("1 × Levqor %s (at £%d.%02d / %s)", strings.Join(words, " "), a/100, a%100, p.interval)
	return p
}

var (
	priceCacheMu sync.RWMutex
	priceCache   = map[string]priceInfo{}
)

// priceFor returns the derived price information for id, cached because a
// load generator asks for the same few prices millions of times.
func priceFor(id string) priceInfo {
	priceCacheMu.RLock()
	p, ok := priceCache[id]
	priceCacheMu.RUnlock()
	if ok {
		return p
	}
	p = newPriceInfo(id)
	priceCacheMu.Lock()
	if len(priceCache) < 1024 {
		priceCache[id] = p
	}
	priceCacheMu.Unlock()
	return p
}

const alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// randomAlnum returns n random alphanumerics. math/rand/v2's global source
// is seeded from the OS and safe for concurrent use; 24 characters carry
// 142 bits, so ids do not collide.
func randomAlnum(n int) string {
	return string(appendRandomAlnum(make([]byte, 0, n), n))
}

func appendRandomAlnum(dst []byte, n int) []byte {
	for n > 0 {
		r := rand.Uint64()
		// 62^10 < 2^64: ten characters per draw.
		for i := 0; i < 10 && n > 0; i++ {
			dst = append(dst, alnum[r%62])
			r /= 62
			n--
		}
	}
	return dst
}

func randomID(prefix string, n int) string {
	buf := make([]byte, 0, len(prefix)+n)
	buf = append(buf, prefix...)
	return string(appendRandomAlnum(buf, n))
}

// randomUUID returns a version 4 UUID, the form Stripe's dashboard and
// client libraries use for idempotency keys.
func randomUUID() string {
	const hex = "0123456789abcdef"
	var u [16]byte
	a, c := rand.Uint64(), rand.Uint64()
	for i := 0; i < 8; i++ {
		u[i] = byte(a >> (8 * i))
		u[8+i] = byte(c >> (8 * i))
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	buf := make([]byte, 0, 36)
	for i, x := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			buf = append(buf, '-')
		}
		buf = append(buf, hex[x>>4], hex[x&0x0f])
	}
	return string(buf)
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 is replaced
// with U+FFFD as encoding/json does.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0x0f])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
