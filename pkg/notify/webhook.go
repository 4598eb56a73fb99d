package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/levqor/levqor/pkg/keys"
	"github.com/levqor/levqor/pkg/store"
)

// Customer webhooks follow the Standard Webhooks specification
// (standardwebhooks.com): each delivery is a POST of
// {"type", "timestamp", "data"} with the headers webhook-id (the
// notification's id, the same on every retry, for the receiver to
// deduplicate), webhook-timestamp (Unix seconds of this attempt) and
// webhook-signature ("v1,<base64 HMAC-SHA256 of id.timestamp.body>", one
// per secret that signs, space-separated).

// WebhookSecretPrefix starts every endpoint secret as receivers are given
// it: "whsec_" then the secret's bytes in base64.
const WebhookSecretPrefix = "whsec_"

// WebhookKeyMinBytes is the least key material LEVQOR_WEBHOOK_SECRET_KEY
// must hold.
const WebhookKeyMinBytes = keys.MinBytes

// WebhookKey derives every endpoint's signing secrets, so that no secret
// is stored, sent over the bus or logged: the secret of an endpoint's
// generation g is HMAC-SHA256(key, "levqor webhook secret", id, g).
// Rotating an endpoint's secret bumps its generation. Changing the key
// itself changes every endpoint's secret at once: keep it as long as the
// endpoints.
type WebhookKey struct {
	key []byte
}

// ParseWebhookKey reads LEVQOR_WEBHOOK_SECRET_KEY: at least 32 bytes,
// written in hex or base64.
func ParseWebhookKey(s string) (*WebhookKey, error) {
	b, err := keys.Decode("LEVQOR_WEBHOOK_SECRET_KEY", s)
	if err != nil {
		return nil, err
	}
	return &WebhookKey{key: b}, nil
}

// Secret is the signing secret of an endpoint's generation.
func (k *WebhookKey) Secret(endpointID string, generation int) []byte {
	m := hmac.New(sha256.New, k.key)
	for _, part := range []string{"levqor webhook secret", endpointID, strconv.Itoa(generation)} {
		m.Write([]byte(strconv.Itoa(len(part))))
		m.Write([]byte{':'})
		m.Write([]byte(part))
	}
	return m.Sum(nil)
}

// SecretString is the secret as its endpoint's owner is given it.
func (k *WebhookKey) SecretString(endpointID string, generation int) string {
	return WebhookSecretPrefix + base64.StdEncoding.EncodeToString(k.Secret(endpointID, generation))
}

// SignWebhook returns one webhook-signature entry: "v1," and the base64
// HMAC-SHA256 under secret of "<msgID>.<unix seconds>.<body>".
func SignWebhook(secret []byte, msgID string, at time.Time, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(msgID + "." + strconv.FormatInt(at.Unix(), 10) + "."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Settings of customer webhook delivery, with their defaults.
const (
	// WebhookTimeoutDefault bounds one delivery, from dialling to the end
	// of the answer (LEVQOR_WEBHOOK_TIMEOUT).
	WebhookTimeoutDefault = 15 * time.Second
	// WebhookDisableAfterDefault is how long an endpoint's deliveries may
	// keep failing before it is disabled and its owner told
	// (LEVQOR_WEBHOOK_DISABLE_AFTER): five days, as Svix does.
	WebhookDisableAfterDefault = 5 * 24 * time.Hour
	// WebhookSecretOverlapDefault is how long a rotated secret keeps
	// signing beside the new one (LEVQOR_WEBHOOK_SECRET_OVERLAP).
	WebhookSecretOverlapDefault = 24 * time.Hour
	// WebhookResponseLimit is the most of a receiver's answer read; the
	// rest is not waited for.
	WebhookResponseLimit = 64 << 10
	// WebhookResponseKept is how much of the answer the delivery log
	// keeps.
	WebhookResponseKept = 1 << 10
	// WebhookURLMaxLength bounds an endpoint's URL.
	WebhookURLMaxLength = 2048
)

// Guard decides which addresses Levqor may call on a customer's behalf:
// none of the loopback, private, link-local, shared (CGNAT), multicast,
// unspecified or reserved ranges, unless a network of Allow holds the
// address. A customer could otherwise point an endpoint at Levqor's own
// internals (the NATS monitor, the database, a cloud metadata service).
type Guard struct {
	// Allow are the networks let through anyway (LEVQOR_WEBHOOK_ALLOW_NETS).
	Allow []netip.Prefix
}

// blockedNets are the special-purpose ranges not covered by netip's
// predicates.
var blockedNets = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (CGNAT)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: reaches IPv4 inside
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local NAT64
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated): embeds an IPv4 address
	netip.MustParsePrefix("::ffff:0:0:0/96"), // SIIT, IPv4-translated
	netip.MustParsePrefix("2002::/16"),       // 6to4: embeds an IPv4 address
	netip.MustParsePrefix("2001::/32"),       // Teredo
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
}

// Check returns why ip may not be called, or nil. A zone is dropped
// first: netip's prefixes never contain a zoned address, and the kernel
// ignores the zone of one that is not link-local.
func (g Guard) Check(ip netip.Addr) error {
	ip = ip.WithZone("").Unmap()
	for _, p := range g.Allow {
		if p.Contains(ip) {
			return nil
		}
	}
	what := ""
	switch {
	case ip.IsLoopback():
		what = "a loopback address"
	case ip.IsPrivate():
		what = "a private address"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		what = "a link-local address"
	case ip.IsMulticast(), ip.IsInterfaceLocalMulticast():
		what = "a multicast address"
	case ip.IsUnspecified():
		what = "the unspecified address"
	default:
		for _, p := range blockedNets {
			if p.Contains(ip) {
				what = "a reserved address (" + p.String() + ")"
				break
			}
		}
	}
	if what == "" {
		return nil
	}
	return fmt.Errorf("%s is %s, which webhooks may not call (LEVQOR_WEBHOOK_ALLOW_NETS lets a network through)", ip, what)
}

// invalidURL is why an endpoint URL is refused.
type invalidURL string

func (e invalidURL) Error() string { return string(e) }

// CheckURL validates an endpoint's URL as its owner gives it: an absolute
// http(s) URL of at most WebhookURLMaxLength characters, without
// credentials or a fragment. It must be https, unless its host is an
// address literal (or localhost) on an allowed network: plain http is for
// receivers inside a deployment. A host given as an address must pass the
// guard; a name is checked each time it is resolved, when a delivery
// dials it.
func (g Guard) CheckURL(raw string) error {
	if raw == "" {
		return invalidURL("url is required")
	}
	if len(raw) > WebhookURLMaxLength {
		return invalidURL(fmt.Sprintf("url is longer than %d characters", WebhookURLMaxLength))
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Opaque != "" {
		return invalidURL("url must be an absolute http or https URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return invalidURL(fmt.Sprintf("url scheme %q is not http or https", u.Scheme))
	}
	switch {
	case u.Hostname() == "":
		return invalidURL("url has no host")
	case u.User != nil:
		return invalidURL("url must not hold credentials: receivers check the signature instead")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return invalidURL("url must not have a fragment")
	case strings.Contains(u.Hostname(), "%"):
		return invalidURL("url host must not have an IPv6 zone")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return invalidURL(fmt.Sprintf("url port %q is not a port number", p))
		}
	}
	host := strings.ToLower(u.Hostname())
	ip, err := netip.ParseAddr(host)
	literal := err == nil
	if !literal && (host == "localhost" || strings.HasSuffix(host, ".localhost")) {
		ip, literal = netip.MustParseAddr("127.0.0.1"), true
	}
	if literal {
		if err := g.Check(ip); err != nil {
			return invalidURL("url host " + err.Error())
		}
	}
	if u.Scheme == "http" && !(literal && g.allowed(ip)) {
		return invalidURL("url must use https (plain http is only for addresses on LEVQOR_WEBHOOK_ALLOW_NETS)")
	}
	return nil
}

func (g Guard) allowed(ip netip.Addr) bool {
	for _, p := range g.Allow {
		if p.Contains(ip.WithZone("").Unmap()) {
			return true
		}
	}
	return false
}

// ParseNets reads LEVQOR_WEBHOOK_ALLOW_NETS: CIDR prefixes, or single
// addresses.
func ParseNets(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a network (10.0.0.0/8) or an address", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// dialControl refuses, before connecting, any address the guard refuses:
// checked on the address actually dialled, after name resolution, so a
// name that resolves (or is rebound) to an internal address is refused
// too.
func (g Guard) dialControl(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("webhook: dialling %q: not an address", host)
	}
	return g.Check(ip)
}

// WebhookConfig configures webhook delivery.
type WebhookConfig struct {
	// Key derives the endpoints' secrets; required.
	Key *WebhookKey
	// Guard says which addresses may be called.
	Guard Guard
	// Timeout bounds one delivery; zero takes WebhookTimeoutDefault.
	Timeout time.Duration
	// DisableAfter, SecretOverlap: zero takes the defaults.
	DisableAfter  time.Duration
	SecretOverlap time.Duration
}

// Webhooks delivers signed webhooks to customer endpoints.
type Webhooks struct {
	cfg    WebhookConfig
	client *http.Client
}

// NewWebhooks returns the webhook sender. Its client dials only what the
// guard allows, ignores proxy settings (the guard must see the real
// destination), follows no redirects (a redirect to an internal address
// would walk around the guard) and gives up after the timeout.
func NewWebhooks(cfg WebhookConfig) (*Webhooks, error) {
	if cfg.Key == nil {
		return nil, errors.New("webhooks: a key is required (LEVQOR_WEBHOOK_SECRET_KEY)")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = WebhookTimeoutDefault
	}
	if cfg.DisableAfter <= 0 {
		cfg.DisableAfter = WebhookDisableAfterDefault
	}
	if cfg.SecretOverlap <= 0 {
		cfg.SecretOverlap = WebhookSecretOverlapDefault
	}
	dialer := &net.Dialer{Timeout: cfg.Timeout, Control: cfg.Guard.dialControl}
	transport := &http.Transport{
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		TLSHandshakeTimeout:    cfg.Timeout,
		ResponseHeaderTimeout:  cfg.Timeout,
		MaxResponseHeaderBytes: 16 << 10,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
		ForceAttemptHTTP2:      true,
	}
	return &Webhooks{cfg: cfg, client: &http.Client{
		Transport:     transport,
		Timeout:       cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// Key is the key the endpoints' secrets come from.
func (wh *Webhooks) Key() *WebhookKey { return wh.cfg.Key }

// Guard is the address guard deliveries pass.
func (wh *Webhooks) Guard() Guard { return wh.cfg.Guard }

// Post makes one delivery of n (its BodyText is the payload) to ep,
// signed with every secret generation that signs at now, and returns the
// attempt as the delivery log keeps it, with the error that failed it.
func (wh *Webhooks) Post(ctx context.Context, ep *store.WebhookEndpoint, n *store.Notification, now time.Time) (store.WebhookAttempt, error) {
	a := store.WebhookAttempt{EndpointID: ep.ID, NotificationID: n.ID, Event: n.Event, AttemptedAt: now}
	body := []byte(n.BodyText)
	var sigs []string
	for _, g := range ep.Generations(now) {
		sigs = append(sigs, SignWebhook(wh.cfg.Key.Secret(ep.ID, g), n.ID, now, body))
	}
	fail := func(err error) (store.WebhookAttempt, error) {
		a.Error = err.Error()
		return a, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return fail(fmt.Errorf("webhook %s: %w", RedactURL(ep.URL), errors.Unwrap(err)))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Levqor-Webhooks/1")
	req.Header.Set("webhook-id", n.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", strings.Join(sigs, " "))
	start := time.Now()
	resp, err := wh.client.Do(req)
	if err != nil {
		a.DurationMS = time.Since(start).Milliseconds()
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the url.Error's text repeats the whole URL
		}
		return fail(fmt.Errorf("webhook %s: %w", RedactURL(ep.URL), err))
	}
	defer resp.Body.Close()
	answer, readErr := io.ReadAll(io.LimitReader(resp.Body, WebhookResponseLimit))
	a.DurationMS = time.Since(start).Milliseconds()
	a.StatusCode = resp.StatusCode
	a.Response = printable(answer, WebhookResponseKept)
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return fail(fmt.Errorf("webhook %s answered %s: redirects are not followed", RedactURL(ep.URL), resp.Status))
	case resp.StatusCode < 200 || resp.StatusCode >= 300:
		return fail(fmt.Errorf("webhook %s answered %s", RedactURL(ep.URL), resp.Status))
	case readErr != nil:
		// The receiver said 2xx: it has the message, however its answer
		// ended.
		a.Error = "answer cut short: " + readErr.Error()
	}
	a.OK = true
	return a, nil
}

// printable is the start of b, at most max bytes, as valid UTF-8
// without control characters but newlines and tabs (PostgreSQL's text
// refuses NUL, and a log is read by people).
func printable(b []byte, max int) string {
	if len(b) > max {
		b = b[:max]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			return -1
		}
		return r
	}, strings.ToValidUTF8(string(b), "\uFFFD"))
}

// WebhookTolerance is how far a delivery's webhook-timestamp may be from a
// receiver's clock before VerifyWebhook refuses it (a replayed capture).
const WebhookTolerance = 5 * time.Minute

// VerifyWebhook checks a delivery as a receiver must: the webhook-id,
// webhook-timestamp and webhook-signature headers are present, the
// timestamp is within WebhookTolerance of now, and one of the signatures
// is body's under secret ("whsec_…"). It is what `levqor webhook listen`
// runs; receivers in other languages use a Standard Webhooks library.
func VerifyWebhook(secret string, h http.Header, body []byte, now time.Time) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, WebhookSecretPrefix))
	if err != nil || len(key) == 0 {
		return errors.New("the secret is not whsec_ followed by base64")
	}
	id, stamp, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || stamp == "" || sigs == "" {
		return errors.New("webhook-id, webhook-timestamp and webhook-signature are required")
	}
	unix, err := strconv.ParseInt(stamp, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q is not Unix seconds", stamp)
	}
	at := time.Unix(unix, 0)
	if d := now.Sub(at); d > WebhookTolerance || d < -WebhookTolerance {
		return fmt.Errorf("webhook-timestamp is %s away from now: too old or too new", d.Round(time.Second))
	}
	want := SignWebhook(key, id, at, body)
	for _, s := range strings.Fields(sigs) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return errors.New("no signature matches: wrong secret, or the body was changed")
}
