package events

import "time"

// The notify worker's events about customer webhook endpoints.
const (
	// NameWebhookEndpointDisabled: deliveries to a webhook endpoint kept
	// failing for LEVQOR_WEBHOOK_DISABLE_AFTER, and Levqor stopped
	// sending to it; its owner is told.
	NameWebhookEndpointDisabled Name = "webhook.endpoint_disabled"
)

// WebhookEndpointDisabled is the payload of webhook.endpoint_disabled.
// URL is the endpoint's scheme and host only: the rest of a webhook URL
// often holds a token.
type WebhookEndpointDisabled struct {
	AccountID    string    `json:"account_id"`
	EndpointID   string    `json:"endpoint_id"`
	URL          string    `json:"url"`
	FailingSince time.Time `json:"failing_since"`
	// LastError is why the last delivery failed.
	LastError string    `json:"last_error"`
	Incident  string    `json:"incident"`
	Reason    string    `json:"reason"`
	At        time.Time `json:"at"`
}

// EventName is NameWebhookEndpointDisabled.
func (WebhookEndpointDisabled) EventName() Name { return NameWebhookEndpointDisabled }

// EventAccount is the endpoint's account.
func (e WebhookEndpointDisabled) EventAccount() string { return e.AccountID }
