package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Sealer seals the secrets commands carry (a source's DSN, a restore's
// target DSN) before they leave the API, so that the commands table, the
// COMMANDS stream and the DLQ hold nothing readable, and opens them where
// they are used. It uses AES-256-GCM under a key derived from each of
// LEVQOR_MASTER_KEYS: the first seals, every one opens, so keys rotate by
// putting a new key first and keeping the old ones until nothing sealed
// under them is left.
//
// Sealing is deterministic: the nonce is an HMAC of the value under a key
// of its own (a synthetic IV), so the same secret seals the same way and a
// retried request with the same Idempotency-Key is recognised as the same
// request. What that reveals is only that two sealed values are equal.
//
// A sealed value keeps, in clear but authenticated, the form Levqor shows
// of the secret (a DSN with its password masked), so that it is shown
// without being opened:
//
//	sealed:v1:<key id>:<base64url shown>:<base64url nonce+ciphertext>
type Sealer struct {
	keys []sealKey
}

type sealKey struct {
	id    string
	aead  cipher.AEAD
	nonce []byte // the key of the synthetic nonces
}

// SealedPrefix starts every sealed value.
const SealedPrefix = "sealed:v1:"

// ParseMasterKeys reads LEVQOR_MASTER_KEYS: comma-separated keys.
func ParseMasterKeys(s string) (*Sealer, error) {
	var out Sealer
	for i, part := range strings.Split(s, ",") {
		b, err := Decode(fmt.Sprintf("LEVQOR_MASTER_KEYS[%d]", i), part)
		if err != nil {
			return nil, err
		}
		derive := func(label string) []byte {
			m := hmac.New(sha256.New, b)
			m.Write([]byte(label))
			return m.Sum(nil)
		}
		block, err := aes.NewCipher(derive("levqor seal v1"))
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		out.keys = append(out.keys, sealKey{id: hex.EncodeToString(sum[:4]), aead: aead, nonce: derive("levqor seal nonce v1")})
	}
	return &out, nil
}

// IsSealed reports whether v is a sealed value.
func IsSealed(v string) bool { return strings.HasPrefix(v, SealedPrefix) }

// Seal seals secret, keeping shown (what Levqor may show of it) beside.
func (s *Sealer) Seal(secret, shown string) (string, error) {
	k := s.keys[0]
	ad := []byte(SealedPrefix + k.id + ":" + shown)
	m := hmac.New(sha256.New, k.nonce)
	m.Write(ad)
	m.Write([]byte{0})
	m.Write([]byte(secret))
	nonce := m.Sum(nil)[:k.aead.NonceSize()]
	ct := k.aead.Seal(nonce, nonce, []byte(secret), ad)
	enc := base64.RawURLEncoding
	return SealedPrefix + k.id + ":" + enc.EncodeToString([]byte(shown)) + ":" + enc.EncodeToString(ct), nil
}

// ErrSealed is the error of a sealed value that cannot be opened.
var ErrSealed = errors.New("keys: cannot open a sealed secret")

// Open returns the secret v holds; a value that is not sealed is returned
// as it is (it was stored before sealing began). A value sealed under a
// key LEVQOR_MASTER_KEYS no longer holds, or altered, is an error that
// never shows it.
func (s *Sealer) Open(v string) (string, error) {
	if !IsSealed(v) {
		return v, nil
	}
	id, shown, ct, ok := split(v)
	if !ok {
		return "", fmt.Errorf("%w: malformed", ErrSealed)
	}
	if s == nil {
		return "", fmt.Errorf("%w: LEVQOR_MASTER_KEYS is not set", ErrSealed)
	}
	for _, k := range s.keys {
		if k.id != id {
			continue
		}
		if len(ct) < k.aead.NonceSize() {
			return "", fmt.Errorf("%w: malformed", ErrSealed)
		}
		plain, err := k.aead.Open(nil, ct[:k.aead.NonceSize()], ct[k.aead.NonceSize():], []byte(SealedPrefix+id+":"+shown))
		if err != nil {
			return "", fmt.Errorf("%w: altered, or sealed under another key with the same id", ErrSealed)
		}
		return string(plain), nil
	}
	return "", fmt.Errorf("%w: sealed under key %s, which LEVQOR_MASTER_KEYS no longer holds", ErrSealed, id)
}

// Shown is what Levqor shows of a sealed value (the form kept beside the
// secret); for a value that is not sealed, "".
func Shown(v string) string {
	_, shown, _, ok := split(v)
	if !ok {
		return ""
	}
	return shown
}

func split(v string) (id, shown string, ct []byte, ok bool) {
	rest, found := strings.CutPrefix(v, SealedPrefix)
	if !found {
		return "", "", nil, false
	}
	parts := strings.Split(rest, ":")
	if len(parts) != 3 {
		return "", "", nil, false
	}
	enc := base64.RawURLEncoding
	sh, err1 := enc.DecodeString(parts[1])
	c, err2 := enc.DecodeString(parts[2])
	if err1 != nil || err2 != nil {
		return "", "", nil, false
	}
	return parts[0], string(sh), c, true
}
