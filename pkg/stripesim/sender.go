package stripesim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"
)

// Sign returns the Stripe-Signature header value for payload signed with
// secret at t, in Stripe's v1 scheme ("t=<unix>,v1=<hex HMAC-SHA256>").
// It uses stripe-go's own signing code, so what verifies here verifies in
// webhook.ConstructEvent. A zero t signs at the current time.
func Sign(payload []byte, secret string, t time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
		Payload:   payload,
		Secret:    secret,
		Timestamp: t,
		Scheme:    "v1",
	}).Header
}

// SenderTimeoutDefault is how long a Sender without its own Client waits
// for an answer: the same budget Stripe gives a webhook endpoint.
const SenderTimeoutDefault = 10 * time.Second

// maxResponseBody caps how much of an answer Send keeps.
const maxResponseBody = 1 << 20

// defaultClient is shared so that a load generator reuses connections.
var defaultClient = &http.Client{Timeout: SenderTimeoutDefault}

// Sender posts signed events to an ingest URL the way Stripe delivers
// them. It is safe for concurrent use once configured.
type Sender struct {
	// URL is the webhook endpoint, e.g. http://localhost:8080/webhooks/stripe.
	URL string
	// Secret is the endpoint's signing secret (whsec_...).
	Secret string
	// Client sends the requests. Default: a shared client with a
	// SenderTimeoutDefault timeout.
	Client *http.Client
}

// Result is the endpoint's answer to one delivery.
type Result struct {
	// Status is the HTTP status code. Stripe counts any 2xx as delivered
	// and retries everything else.
	Status int
	// Body is the response body, at most 1 MiB of it.
	Body []byte
	// Header holds the response headers.
	Header http.Header
	// EventID is the id of the event sent, read from the payload; empty
	// if the payload is not an event.
	EventID string
	// Duration is the time from sending the request to reading the answer.
	Duration time.Duration
}

// Send signs payload at the current time and POSTs it to s.URL with the
// headers Stripe sends (Content-Type application/json, Stripe-Signature,
// Stripe's User-Agent). A non-2xx answer is a Result, not an error: the
// error is for requests that got no answer. The payload is sent as given,
// even when it is not an event, so that malformed deliveries can be tested.
func (s *Sender) Send(ctx context.Context, payload []byte) (Result, error) {
	res := Result{EventID: eventID(payload)}
	if s.URL == "" {
		return res, errors.New("stripesim: Sender.URL is empty")
	}
	if s.Secret == "" {
		return res, errors.New("stripesim: Sender.Secret is empty")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(payload))
	if err != nil {
		return res, fmt.Errorf("stripesim: building request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Accept", "*/*; q=0.5, application/xml")
	req.Header.Set("Cache-Control", "no-cache")
	req.Header.Set("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
	req.Header.Set("Stripe-Signature", Sign(payload, s.Secret, time.Now()))

	client := s.Client
	if client == nil {
		client = defaultClient
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		res.Duration = time.Since(start)
		return res, fmt.Errorf("stripesim: sending %s to %s: %w", res.describe(), s.URL, err)
	}
	defer resp.Body.Close()
	res.Status, res.Header = resp.StatusCode, resp.Header
	res.Body, err = io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	res.Duration = time.Since(start)
	if err != nil {
		return res, fmt.Errorf("stripesim: reading the answer to %s: %w", res.describe(), err)
	}
	// Drain a little more so that the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return res, nil
}

func (r Result) describe() string {
	if r.EventID == "" {
		return "payload"
	}
	return "event " + r.EventID
}

// eventID returns the top-level "id" of a JSON object. It stops at that
// key, which Stripe writes first, instead of decoding the whole event.
func eventID(payload []byte) string {
	dec := json.NewDecoder(bytes.NewReader(payload))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return ""
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		if tok == "id" {
			var id string
			if err := dec.Decode(&id); err != nil {
				return ""
			}
			return id
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return ""
		}
	}
	return ""
}
