// Package api is Levqor's product API under /v1: accounts and the commands
// that change them, plus the OpenAPI document of the whole HTTP surface at
// /openapi.json. Package ingest mounts it.
//
// Every route goes through Server.Guard: authentication and scope by
// package auth, then a per-key token-bucket rate limit (429 with
// Retry-After). Reads are answered from the database. Every change becomes
// a command (package command): the handler validates the request, records
// the command as queued, publishes it to JetStream and answers
// 202 Accepted with Location: /v1/commands/<id>, or, with ?wait=, the
// command's outcome once a worker has committed it. A change is never
// applied by the API itself.
//
// Request bodies are decoded strictly (DecodeJSON) within a size limit
// (413); errors name the field (400 for malformed input, 422 for values
// that fail validation) in the one error shape of package httpjson.
package api
