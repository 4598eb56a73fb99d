// Package stripeapi is Levqor's one way to call the Stripe API: one client
// constructor (New), one classification of Stripe's failures (Classify)
// with a documented policy, and its translation into command outcomes
// (CommandError), so billing and accounts agree on what is retried and
// what is refused.
//
// Rules every caller keeps:
//   - every call carries the handler's context (params.Context = ctx), so
//     shutdown and timeouts end it;
//   - no call is made inside an open database transaction: fetch first,
//     then open the transaction, or return a retry. A Stripe call can take
//     seconds; holding a transaction (and, in a batch, the whole batch's
//     locks) across it stalls every other message.
//
// Webhook payloads are not this package's business: ingest verifies them
// and package stripeevent scans them.
package stripeapi
