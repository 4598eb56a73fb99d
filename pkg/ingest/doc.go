// Package ingest is Levqor's thin front door: it authenticates, validates,
// publishes to JetStream and answers. It never writes domain state.
//
// A Stripe webhook is answered 200 only after JetStream has acknowledged the
// publish, so the event is durable; if JetStream is unreachable the answer
// is 503 and Stripe retries. Nothing acknowledged is ever lost.
package ingest
