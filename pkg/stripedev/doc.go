// Package stripedev is an offline, stateful stand-in for the parts of the
// Stripe API that Levqor calls, so that dev mode creates accounts, Checkout
// sessions and billing portal sessions on a machine with nothing but Go
// installed, and without a Stripe account or network.
//
// It serves, as stripe-go sends and reads them (form-encoded requests,
// Stripe's JSON objects and error shape):
//
//   - customers: create, retrieve, update, list;
//   - checkout sessions: create, retrieve, list line items;
//   - billing portal sessions: create;
//   - subscriptions: retrieve, list (only what it knows: it creates none,
//     so retrieving any other answers 404 as Stripe does for an unknown id);
//   - events: list (always empty).
//
// Mutating requests honour Idempotency-Key for 24 hours as Stripe does: a
// retry with the same key and parameters gets the first answer again
// (with Idempotent-Replayed: true), the same key with other parameters is
// refused. Unknown parameters and endpoints are refused with Stripe's error
// shape (400 and 404), references to unknown customers with 400
// resource_missing, and requests without a secret test key with 401. The
// Checkout and portal URLs it returns point back at itself and answer with
// a page saying that no payment is taken and how to send the webhooks
// Stripe would send.
//
// Why a stand-in rather than stripe-mock: stripe-mock is a separate binary
// (a newcomer would have to install and run it next to dev mode) and is
// stateless: it echoes a fixture, so every customer it creates has the same
// id, a checkout session's line items are not the ones it was created with,
// and nothing created is remembered. Dev mode needs the opposite: ids that
// differ, objects that exist afterwards (a portal session for the customer
// created an hour ago, line items of a session it created), and state that
// survives a restart of dev mode (Config.StatePath). Tests that must hold
// Levqor's requests against Stripe's OpenAPI specification still run
// against stripe-mock (package stripemock).
//
// It is not Stripe: it validates the parameters Levqor sends, not all of
// Stripe's rules, accepts any price id, takes no payments and sends no
// webhooks (`levqor webhook send` does that in dev mode).
package stripedev
