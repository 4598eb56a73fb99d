// Package auth is the one authorization path of Levqor's HTTP API: it
// turns the Authorization header into a Principal, refuses requests that
// have none (401) or that need an operator (403), and answers every
// question of tenancy with Principal.Sees.
//
// # API keys
//
// A key is "lvq_" followed by 52 base32 characters (32 random bytes). It is
// shown once, when it is made; the store keeps only its SHA-256, which is
// what a request's key is looked up by, plus a short prefix and an id that
// are not secret. Keys have 256 bits of entropy, so a fast hash is enough:
// there is nothing to brute-force. A revoked key stops working with the
// next request, because every request looks its key up.
//
// An account key sees only its own account's data; everything else answers
// 404, exactly as if it did not exist, so ids cannot be probed. An operator
// key sees every account and is the only kind allowed under /admin.
//
// # The dev operator token
//
// Dev mode (`levqor dev`) also accepts its generated operator token
// (LEVQOR_ADMIN_TOKEN or .levqor/secrets.json) as an operator, so the API
// can be tried without creating a key first. Production processes never
// accept it: they authenticate operator API keys only, made with
// `levqor apikey create --operator` against the production database.
package auth
