// Package blob stores backup snapshots' bytes: a small Store interface
// (Put, Get, Delete, Stat, List) and Local, its implementation on a local
// file system, which dev mode uses under LEVQOR_DATA_DIR/blobs and
// production workers under LEVQOR_BLOB_DIR.
//
// The interface promises what safe deletion needs: Put is atomic (a reader
// sees the old blob or the new one, never part of one, and a failed Put
// leaves nothing behind) and Delete is idempotent (repeating a deletion
// that a crash interrupted succeeds). Keys are validated before they touch
// storage (ValidateKey), so no key can name a path outside the store.
//
// Package blobtest holds the conformance suite every implementation must
// pass; an S3-compatible store will run the same suite.
package blob
