package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"strings"
)

// KeyPrefix starts every API key, so that keys are recognisable in config
// files and by secret scanners.
const KeyPrefix = "lvq_"

// keyBytes is the key's randomness: 256 bits.
const keyBytes = 32

// keyEncoding is lower-case base32 without padding: URL- and shell-safe.
var keyEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// keyLen is the length of a key: the prefix and 52 base32 characters.
var keyLen = len(KeyPrefix) + keyEncoding.EncodedLen(keyBytes)

// displayPrefixLen is how much of a key its listing shows: the prefix and
// 8 characters, 40 of its 256 bits.
const displayPrefixLen = len(KeyPrefix) + 8

// NewKey is a freshly generated API key.
type NewKey struct {
	// Secret is the key itself, to be shown once and never stored.
	Secret string
	// Hash is what the store keeps (HashKey of Secret).
	Hash string
	// Prefix is the key's first characters, shown in listings.
	Prefix string
	// ID names the key in listings and in `apikey revoke`; not secret.
	ID string
}

// GenerateKey makes a new API key from the system's secure random source.
func GenerateKey() (NewKey, error) {
	b := make([]byte, keyBytes)
	if _, err := rand.Read(b); err != nil {
		return NewKey{}, fmt.Errorf("auth: generating key: %w", err)
	}
	secret := KeyPrefix + keyEncoding.EncodeToString(b)
	id, err := newKeyID()
	if err != nil {
		return NewKey{}, err
	}
	return NewKey{Secret: secret, Hash: HashKey(secret), Prefix: secret[:displayPrefixLen], ID: id}, nil
}

// HashKey returns the hex SHA-256 of key, the form in which keys are
// stored and looked up.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// LooksLikeKey reports whether s has the shape of an API key, so that
// garbage is refused without a database lookup.
func LooksLikeKey(s string) bool {
	if len(s) != keyLen || !strings.HasPrefix(s, KeyPrefix) {
		return false
	}
	_, err := keyEncoding.DecodeString(s[len(KeyPrefix):])
	return err == nil
}

// newKeyID returns "key_" followed by 26 random base32 characters.
func newKeyID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("auth: generating key id: %w", err)
	}
	return "key_" + keyEncoding.EncodeToString(b), nil
}
