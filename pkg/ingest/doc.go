// Package ingest is Levqor's thin front door: it authenticates, validates,
// publishes to JetStream and answers. It never writes domain state.
//
// A Stripe webhook is answered 200 only after JetStream has acknowledged the
// publish, so the event is durable; if JetStream is unreachable the answer
// is 503 and Stripe retries. Nothing acknowledged is ever lost.
//
// Ingest also mounts the product API (package api) and the operator API
// under /admin, both behind the one authorizer of package auth, and lists
// every route it serves (Server.Routes), which the OpenAPI document at
// /openapi.json must describe.
package ingest
