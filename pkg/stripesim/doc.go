// Package stripesim builds and sends Stripe webhook events that look and
// verify like the ones Stripe sends, so that ingest, the workers and the
// operators' tools can be exercised without a Stripe account.
//
// NewEvent renders the exact JSON bytes of an event: the envelope Stripe
// wraps every event in (object "event", api_version, pending_webhooks,
// request) and a data.object with the fields the API version of stripe-go
// v76 (2023-10-16) carries, in GBP. Each event type is a precompiled
// template plus a few substitutions (ids, customer, price, timestamps,
// statuses), so building an event costs a few microseconds and no
// reflection; a load generator can build and sign events in its hot loop.
// EventOptions.Data deep-merges caller JSON into data.object for the cases
// the templates do not cover; only that path decodes JSON.
//
// Sign produces the Stripe-Signature header (v1 scheme) with stripe-go's
// webhook package, so a payload that Sign signed verifies with
// webhook.ConstructEvent exactly as a real delivery would. Sender posts a
// signed payload to an ingest URL the way Stripe does.
//
// The package backs the `levqor webhook send` command, the integration
// tests, and the load generator.
package stripesim
