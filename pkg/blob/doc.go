// Package blob stores backup snapshots' bytes: a small Store interface
// (Put, Get, Delete, Stat, List) and two implementations: Local, on a
// local file system, which dev mode uses under LEVQOR_DATA_DIR/blobs and
// production workers under LEVQOR_BLOB_DIR, and S3, on any S3-compatible
// object store, selected by LEVQOR_BLOB_S3_ENDPOINT.
//
// The interface promises what safe deletion needs: Put is atomic (a reader
// sees the old blob or the new one, never part of one, and a failed Put
// leaves nothing behind) and Delete is idempotent (repeating a deletion
// that a crash interrupted succeeds). Keys are validated before they touch
// storage (ValidateKey), so no key can name a path outside the store.
//
// Package blobtest holds the conformance suite every implementation must
// pass; Local and S3 both run it.
package blob
