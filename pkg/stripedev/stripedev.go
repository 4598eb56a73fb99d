package stripedev

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// IdempotencyWindow is how long a mutating request's Idempotency-Key is
// remembered, as long as Stripe keeps it.
const IdempotencyWindow = 24 * time.Hour

// APIVersion is the Stripe API version the stand-in answers as: the one
// stripe-go v76 pins.
const APIVersion = "2023-10-16"

// Config configures a stand-in.
type Config struct {
	// StatePath, when set, is a JSON file that New loads and every change
	// rewrites, so that customers and sessions survive a restart (dev mode
	// keeps it in its data dir). Empty keeps state in memory only.
	StatePath string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Server is the stand-in, an http.Handler. It is safe for concurrent use;
// requests are handled one at a time, like one Stripe account with no
// traffic of its own.
type Server struct {
	cfg Config
	mux *http.ServeMux

	mu    sync.Mutex
	state state
}

var _ http.Handler = (*Server)(nil)

// state is everything the stand-in remembers, as saved to StatePath.
type state struct {
	// Objects are the API objects by id.
	Objects map[string]object `json:"objects"`
	// Order lists object ids in creation order, for lists.
	Order []string `json:"order"`
	// LineItems are checkout sessions' line items by session id.
	LineItems map[string][]object `json:"line_items"`
	// Idempotent are remembered answers by Idempotency-Key.
	Idempotent map[string]idempotent `json:"idempotent"`
}

// object is one Stripe API object as its JSON fields.
type object = map[string]any

// idempotent is a remembered answer to a mutating request.
type idempotent struct {
	Request string          `json:"request"` // method, path and sorted parameters
	Status  int             `json:"status"`
	Body    json.RawMessage `json:"body"`
	At      time.Time       `json:"at"`
}

// New returns a stand-in, loading cfg.StatePath when it exists.
func New(cfg Config) (*Server, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, state: state{
		Objects: map[string]object{}, LineItems: map[string][]object{}, Idempotent: map[string]idempotent{},
	}}
	if cfg.StatePath != "" {
		b, err := os.ReadFile(cfg.StatePath)
		switch {
		case err == nil:
			if err := json.Unmarshal(b, &s.state); err != nil {
				return nil, fmt.Errorf("stripedev: reading %s: %w (delete it to start with no Stripe objects)", cfg.StatePath, err)
			}
		case errors.Is(err, fs.ErrNotExist):
		default:
			return nil, fmt.Errorf("stripedev: reading %s: %w", cfg.StatePath, err)
		}
		if s.state.Objects == nil {
			s.state.Objects = map[string]object{}
		}
		if s.state.LineItems == nil {
			s.state.LineItems = map[string][]object{}
		}
		if s.state.Idempotent == nil {
			s.state.Idempotent = map[string]idempotent{}
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/customers", s.createCustomer)
	mux.HandleFunc("GET /v1/customers", s.list("customer", nil))
	mux.HandleFunc("GET /v1/customers/{id}", s.retrieve("customer"))
	mux.HandleFunc("POST /v1/customers/{id}", s.updateCustomer)
	mux.HandleFunc("POST /v1/checkout/sessions", s.createCheckoutSession)
	mux.HandleFunc("GET /v1/checkout/sessions/{id}", s.retrieve("checkout.session"))
	mux.HandleFunc("GET /v1/checkout/sessions/{id}/line_items", s.listLineItems)
	mux.HandleFunc("POST /v1/billing_portal/sessions", s.createPortalSession)
	mux.HandleFunc("GET /v1/subscriptions/{id}", s.retrieve("subscription"))
	mux.HandleFunc("GET /v1/subscriptions", s.list("subscription", subscriptionFilter))
	mux.HandleFunc("GET /v1/events", s.list("event", nil))
	mux.HandleFunc("GET /c/pay/{id}", s.page)
	mux.HandleFunc("GET /p/session/{id}", s.page)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, apiError{Type: "invalid_request_error",
			Message: fmt.Sprintf("Unrecognized request URL (%s: %s). This is Levqor's offline Stripe stand-in (package stripedev): it serves only the endpoints Levqor calls.", r.Method, r.URL.Path)})
	})
	s.mux = mux
	return s, nil
}

// ServeHTTP authenticates the request as Stripe does, replays remembered
// idempotent answers and otherwise routes it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Request-Id", "req_"+randomID(14))
	w.Header().Set("Stripe-Version", APIVersion)
	if !strings.HasPrefix(r.URL.Path, "/v1/") {
		s.mux.ServeHTTP(w, r)
		return
	}
	if !testKey(r) {
		writeError(w, http.StatusUnauthorized, apiError{Type: "invalid_request_error",
			Message: "Invalid API Key provided: this offline stand-in accepts secret test keys only (sk_test_… or rk_test_…)."})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, apiError{Type: "invalid_request_error", Message: "Invalid request body: " + err.Error()})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := r.Header.Get("Idempotency-Key")
	if r.Method != http.MethodPost || key == "" {
		s.mux.ServeHTTP(w, r)
		return
	}
	fingerprint := r.Method + " " + r.URL.Path + "?" + r.PostForm.Encode()
	if prev, ok := s.state.Idempotent[key]; ok && s.cfg.Now().Sub(prev.At) < IdempotencyWindow {
		if prev.Request != fingerprint {
			writeError(w, http.StatusBadRequest, apiError{Type: "idempotency_error",
				Message: fmt.Sprintf("Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '%s' if you meant to execute a different request.", key)})
			return
		}
		w.Header().Set("Idempotent-Replayed", "true")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(prev.Status)
		_, _ = w.Write(prev.Body)
		return
	}
	rec := &recorder{ResponseWriter: w}
	s.mux.ServeHTTP(rec, r)
	// Stripe saves the result of a request that ran, not of one refused
	// before it started; the stand-in keeps successes only.
	if rec.status >= 200 && rec.status < 300 {
		s.state.Idempotent[key] = idempotent{Request: fingerprint, Status: rec.status, Body: rec.body, At: s.cfg.Now()}
		s.pruneIdempotent()
		s.save()
	}
}

// recorder keeps a copy of an answer to remember it.
type recorder struct {
	http.ResponseWriter
	status int
	body   []byte
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.body = append(r.body, b...)
	return r.ResponseWriter.Write(b)
}

func (s *Server) pruneIdempotent() {
	for k, v := range s.state.Idempotent {
		if s.cfg.Now().Sub(v.At) >= IdempotencyWindow {
			delete(s.state.Idempotent, k)
		}
	}
}

// testKey reports whether r carries a secret test key, as a bearer token
// (stripe-go) or basic-auth user (curl -u).
func testKey(r *http.Request) bool {
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		key, _, _ = r.BasicAuth()
	}
	return strings.HasPrefix(key, "sk_test_") || strings.HasPrefix(key, "rk_test_")
}

// save rewrites StatePath. A failure to save loses nothing the running
// stand-in answers with, so it is not the request's failure.
func (s *Server) save() {
	if s.cfg.StatePath == "" {
		return
	}
	b, err := json.Marshal(s.state)
	if err != nil {
		return
	}
	tmp := s.cfg.StatePath + ".tmp"
	if err := os.MkdirAll(filepath.Dir(s.cfg.StatePath), 0o700); err != nil {
		return
	}
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return
	}
	_ = os.Rename(tmp, s.cfg.StatePath)
}

func (s *Server) add(o object) {
	id := o["id"].(string)
	s.state.Objects[id] = o
	s.state.Order = append(s.state.Order, id)
}

// apiError is the body of Stripe's error answers.
type apiError struct {
	Type    string `json:"type"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
	Param   string `json:"param,omitempty"`
}

func writeError(w http.ResponseWriter, status int, e apiError) {
	writeJSON(w, status, map[string]apiError{"error": e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"type":"api_error","message":"encoding the answer failed"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func missing(kind, id, param string) apiError {
	return apiError{Type: "invalid_request_error", Code: "resource_missing", Param: param,
		Message: fmt.Sprintf("No such %s: '%s'", kind, id)}
}

func badParam(param, format string, args ...any) apiError {
	return apiError{Type: "invalid_request_error", Code: "parameter_invalid", Param: param, Message: fmt.Sprintf(format, args...)}
}

// params decodes a request's form (body for POST, query otherwise) into
// Stripe's nested shape and refuses parameters outside known, as Stripe
// does with "Received unknown parameter".
func params(w http.ResponseWriter, r *http.Request, known ...string) (map[string]any, bool) {
	vals := r.Form
	if r.Method == http.MethodPost {
		vals = r.PostForm
	}
	p := decodeForm(vals)
	for k := range p {
		if k != "expand" && !contains(known, k) {
			writeError(w, http.StatusBadRequest, apiError{Type: "invalid_request_error", Code: "parameter_unknown", Param: k,
				Message: "Received unknown parameter: " + k})
			return nil, false
		}
	}
	return p, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// decodeForm turns stripe-go's form encoding (metadata[k]=v,
// line_items[0][price]=p) into nested maps and slices.
func decodeForm(vals url.Values) map[string]any {
	root := map[string]any{}
	for key, vs := range vals {
		if len(vs) == 0 {
			continue
		}
		parts := splitKey(key)
		m := root
		for i, part := range parts {
			if part == "" { // a[]=x: append
				part = strconv.Itoa(len(m))
			}
			if i == len(parts)-1 {
				m[part] = vs[len(vs)-1]
				break
			}
			next, ok := m[part].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[part] = next
			}
			m = next
		}
	}
	return normalize(root).(map[string]any)
}

func splitKey(key string) []string {
	head, rest, ok := strings.Cut(key, "[")
	if !ok {
		return []string{key}
	}
	parts := []string{head}
	for _, p := range strings.Split(strings.TrimSuffix(rest, "]"), "][") {
		parts = append(parts, p)
	}
	return parts
}

// normalize turns maps whose keys are all indexes into slices.
func normalize(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	indexed := len(m) > 0
	for k, x := range m {
		m[k] = normalize(x)
		if _, err := strconv.Atoi(k); err != nil {
			indexed = false
		}
	}
	if !indexed {
		return m
	}
	keys := make([]int, 0, len(m))
	for k := range m {
		n, _ := strconv.Atoi(k)
		keys = append(keys, n)
	}
	sort.Ints(keys)
	out := make([]any, 0, len(keys))
	for _, k := range keys {
		out = append(out, m[strconv.Itoa(k)])
	}
	return out
}

// str returns p[k] as a string; "" (Stripe's way to unset) and absence
// give nil.
func str(p map[string]any, k string) any {
	if v, ok := p[k].(string); ok && v != "" {
		return v
	}
	return nil
}

func metadata(p map[string]any, into map[string]any) map[string]any {
	if into == nil {
		into = map[string]any{}
	}
	if m, ok := p["metadata"].(map[string]any); ok {
		for k, v := range m {
			if v == "" {
				delete(into, k)
			} else {
				into[k] = v
			}
		}
	}
	return into
}

const idAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// randomID returns n random base-62 characters, the shape of Stripe's ids.
func randomID(n int) string {
	b := make([]byte, n)
	max := big.NewInt(int64(len(idAlphabet)))
	for i := range b {
		x, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic(err)
		}
		b[i] = idAlphabet[x.Int64()]
	}
	return string(b)
}

func baseURL(r *http.Request) string { return "http://" + r.Host }

var customerParams = []string{"address", "balance", "description", "email", "invoice_prefix", "invoice_settings",
	"metadata", "name", "phone", "preferred_locales", "shipping", "tax", "tax_exempt", "test_clock", "payment_method", "source"}

func (s *Server) createCustomer(w http.ResponseWriter, r *http.Request) {
	p, ok := params(w, r, customerParams...)
	if !ok {
		return
	}
	id := "cus_" + randomID(14)
	c := object{
		"id": id, "object": "customer", "address": nil, "balance": 0, "created": s.cfg.Now().Unix(),
		"currency": nil, "default_source": nil, "delinquent": false, "description": str(p, "description"),
		"discount": nil, "email": str(p, "email"), "invoice_prefix": strings.ToUpper(randomID(8)),
		"invoice_settings": object{
			"custom_fields": nil, "default_payment_method": nil, "footer": nil, "rendering_options": nil,
		},
		"livemode": false, "metadata": metadata(p, nil), "name": str(p, "name"), "next_invoice_sequence": 1,
		"phone": str(p, "phone"), "preferred_locales": []any{}, "shipping": nil, "tax_exempt": "none", "test_clock": nil,
	}
	s.add(c)
	s.save()
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) updateCustomer(w http.ResponseWriter, r *http.Request) {
	p, ok := params(w, r, append(customerParams, "default_source")...)
	if !ok {
		return
	}
	id := r.PathValue("id")
	c, ok := s.state.Objects[id]
	if !ok || c["object"] != "customer" {
		writeError(w, http.StatusNotFound, missing("customer", id, "id"))
		return
	}
	for _, k := range []string{"name", "email", "description", "phone"} {
		if _, set := p[k]; set {
			c[k] = str(p, k)
		}
	}
	md, _ := c["metadata"].(map[string]any)
	c["metadata"] = metadata(p, md)
	s.save()
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) retrieve(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, ok := params(w, r); !ok {
			return
		}
		id := r.PathValue("id")
		o, ok := s.state.Objects[id]
		if !ok || o["object"] != kind {
			name := strings.ReplaceAll(kind, "checkout.session", "checkout session")
			writeError(w, http.StatusNotFound, missing(name, id, "id"))
			return
		}
		writeJSON(w, http.StatusOK, o)
	}
}

// subscriptionFilter keeps the subscriptions a list asks for: by customer,
// and by status, where "all" includes canceled ones and no status excludes
// them, as Stripe does.
func subscriptionFilter(p map[string]any, o object) bool {
	if c := str(p, "customer"); c != nil && o["customer"] != c {
		return false
	}
	switch st := str(p, "status"); st {
	case "all":
		return true
	case nil:
		return o["status"] != "canceled"
	default:
		return o["status"] == st
	}
}

var listParams = []string{"limit", "starting_after", "ending_before", "created", "customer", "status", "email",
	"type", "types", "price", "collection_method", "current_period_end", "current_period_start", "test_clock",
	"automatic_tax", "delivery_success"}

// list serves a list endpoint of kind, newest first, with limit and
// starting_after paging.
func (s *Server) list(kind string, keep func(map[string]any, object) bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := params(w, r, listParams...)
		if !ok {
			return
		}
		var all []any
		for i := len(s.state.Order) - 1; i >= 0; i-- {
			o := s.state.Objects[s.state.Order[i]]
			if o["object"] == kind && (keep == nil || keep(p, o)) {
				all = append(all, o)
			}
		}
		writePage(w, r, p, all)
	}
}

// writePage answers a list request: one page of items cut by limit (1-100,
// default 10) and starting_after, as a Stripe list object.
func writePage(w http.ResponseWriter, r *http.Request, p map[string]any, items []any) {
	page, ok := pageOf(w, p, items)
	if !ok {
		return
	}
	page["url"] = r.URL.Path
	writeJSON(w, http.StatusOK, page)
}

// pageOf cuts one page out of items by limit and starting_after.
func pageOf(w http.ResponseWriter, p map[string]any, items []any) (object, bool) {
	limit := 10
	if l := str(p, "limit"); l != nil {
		n, err := strconv.Atoi(l.(string))
		if err != nil || n < 1 || n > 100 {
			writeError(w, http.StatusBadRequest, badParam("limit", "Invalid limit: must be an integer between 1 and 100"))
			return nil, false
		}
		limit = n
	}
	if after := str(p, "starting_after"); after != nil {
		for i, it := range items {
			if it.(object)["id"] == after {
				items = items[i+1:]
				break
			}
		}
	}
	more := len(items) > limit
	if more {
		items = items[:limit]
	}
	if items == nil {
		items = []any{}
	}
	return object{"object": "list", "data": items, "has_more": more}, true
}

var checkoutParams = []string{"after_expiration", "allow_promotion_codes", "automatic_tax", "billing_address_collection",
	"cancel_url", "client_reference_id", "consent_collection", "currency", "custom_fields", "custom_text", "customer",
	"customer_creation", "customer_email", "customer_update", "discounts", "expires_at", "invoice_creation",
	"line_items", "locale", "metadata", "mode", "payment_intent_data", "payment_method_collection",
	"payment_method_configuration", "payment_method_options", "payment_method_types", "phone_number_collection",
	"redirect_on_completion", "return_url", "setup_intent_data", "shipping_address_collection", "shipping_options",
	"submit_type", "subscription_data", "success_url", "tax_id_collection", "ui_mode"}

func (s *Server) createCheckoutSession(w http.ResponseWriter, r *http.Request) {
	p, ok := params(w, r, checkoutParams...)
	if !ok {
		return
	}
	mode := str(p, "mode")
	switch mode {
	case "payment", "subscription", "setup":
	case nil:
		writeError(w, http.StatusBadRequest, apiError{Type: "invalid_request_error", Code: "parameter_missing", Param: "mode", Message: "Missing required param: mode."})
		return
	default:
		writeError(w, http.StatusBadRequest, badParam("mode", "Invalid mode: must be one of payment, setup, or subscription"))
		return
	}
	if str(p, "success_url") == nil && str(p, "ui_mode") != "embedded" {
		writeError(w, http.StatusBadRequest, apiError{Type: "invalid_request_error", Code: "parameter_missing", Param: "success_url", Message: "Missing required param: success_url."})
		return
	}
	if cus := str(p, "customer"); cus != nil {
		if o, ok := s.state.Objects[cus.(string)]; !ok || o["object"] != "customer" {
			writeError(w, http.StatusBadRequest, missing("customer", cus.(string), "customer"))
			return
		}
	}
	id := "cs_test_" + randomID(58)
	var items []object
	lines, _ := p["line_items"].([]any)
	if mode != "setup" && len(lines) == 0 {
		writeError(w, http.StatusBadRequest, apiError{Type: "invalid_request_error", Code: "parameter_missing", Param: "line_items",
			Message: "You must specify `line_items` in `" + mode.(string) + "` mode."})
		return
	}
	for i, l := range lines {
		lm, _ := l.(map[string]any)
		price := str(lm, "price")
		if price == nil {
			writeError(w, http.StatusBadRequest, apiError{Type: "invalid_request_error", Code: "parameter_missing",
				Param: fmt.Sprintf("line_items[%d][price]", i), Message: "You must specify either `price` or `price_data` for each line item."})
			return
		}
		qty := int64(1)
		if q := str(lm, "quantity"); q != nil {
			n, err := strconv.ParseInt(q.(string), 10, 64)
			if err != nil || n < 1 {
				writeError(w, http.StatusBadRequest, badParam(fmt.Sprintf("line_items[%d][quantity]", i), "Invalid quantity: must be a positive integer"))
				return
			}
			qty = n
		}
		priceType := "one_time"
		var recurring any
		if mode == "subscription" {
			priceType, recurring = "recurring", object{"interval": "month", "interval_count": 1, "usage_type": "licensed"}
		}
		items = append(items, object{
			"id": "li_" + randomID(24), "object": "item", "amount_discount": 0, "amount_subtotal": 0, "amount_tax": 0,
			"amount_total": 0, "currency": "gbp", "description": price, "quantity": qty,
			"price": object{"id": price, "object": "price", "active": true, "currency": "gbp", "livemode": false,
				"lookup_key": nil, "product": "prod_" + randomID(14), "recurring": recurring, "type": priceType, "unit_amount": nil},
		})
	}
	now := s.cfg.Now()
	cs := object{
		"id": id, "object": "checkout.session", "amount_subtotal": 0, "amount_total": 0, "cancel_url": str(p, "cancel_url"),
		"client_reference_id": str(p, "client_reference_id"), "created": now.Unix(), "currency": "gbp",
		"customer": str(p, "customer"), "customer_email": str(p, "customer_email"), "expires_at": now.Add(24 * time.Hour).Unix(),
		"livemode": false, "metadata": metadata(p, nil), "mode": mode, "payment_intent": nil, "payment_method_types": []any{"card"},
		"payment_status": "unpaid", "status": "open", "subscription": nil, "success_url": str(p, "success_url"),
		"ui_mode": "hosted", "url": baseURL(r) + "/c/pay/" + id,
	}
	s.add(cs)
	s.state.LineItems[id] = items
	s.save()
	writeJSON(w, http.StatusOK, cs)
}

func (s *Server) listLineItems(w http.ResponseWriter, r *http.Request) {
	p, ok := params(w, r, "limit", "starting_after", "ending_before")
	if !ok {
		return
	}
	id := r.PathValue("id")
	if o, ok := s.state.Objects[id]; !ok || o["object"] != "checkout.session" {
		writeError(w, http.StatusNotFound, missing("checkout session", id, "session"))
		return
	}
	items := make([]any, 0, len(s.state.LineItems[id]))
	for _, it := range s.state.LineItems[id] {
		items = append(items, it)
	}
	writePage(w, r, p, items)
}

func (s *Server) createPortalSession(w http.ResponseWriter, r *http.Request) {
	p, ok := params(w, r, "configuration", "customer", "flow_data", "locale", "on_behalf_of", "return_url")
	if !ok {
		return
	}
	cus := str(p, "customer")
	if cus == nil {
		writeError(w, http.StatusBadRequest, apiError{Type: "invalid_request_error", Code: "parameter_missing", Param: "customer", Message: "Missing required param: customer."})
		return
	}
	if o, ok := s.state.Objects[cus.(string)]; !ok || o["object"] != "customer" {
		writeError(w, http.StatusBadRequest, missing("customer", cus.(string), "customer"))
		return
	}
	id := "bps_" + randomID(24)
	ps := object{
		"id": id, "object": "billing_portal.session", "configuration": "bpc_" + randomID(24), "created": s.cfg.Now().Unix(),
		"customer": cus, "flow": nil, "livemode": false, "locale": str(p, "locale"), "on_behalf_of": nil,
		"return_url": str(p, "return_url"), "url": baseURL(r) + "/p/session/" + id,
	}
	s.add(ps)
	s.save()
	writeJSON(w, http.StatusOK, ps)
}

// page answers a browser opening a Checkout or portal URL.
func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	o, ok := s.state.Objects[r.PathValue("id")]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "This is Levqor's offline Stripe stand-in (dev mode): %s %s.\n\nNo payment is taken and no webhook is sent.\n", o["object"], o["id"])
	if o["object"] == "checkout.session" {
		fmt.Fprintf(w, "To act out what Stripe sends once the customer has paid, run:\n\n"+
			"  go run ./cmd/levqor webhook send checkout.session.completed --object %v --customer %v --account %v\n",
			o["id"], o["customer"], o["client_reference_id"])
	}
}
