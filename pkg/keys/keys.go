// Package keys holds Levqor's secret keys as the environment gives them,
// and what they prove. A key is at least MinBytes of random bytes, written
// in hex or base64 (openssl rand -hex 32).
//
// BusKey (LEVQOR_BUS_KEY) is shared by Levqor's processes: each proves,
// with a MAC in a header, that a message on the bus is one it published,
// and the workers refuse Stripe events, ticks, events and dead letters
// without the proof. Ingest publishes a Stripe event only once it checked
// Stripe's signature, so whoever can publish on NATS without the key
// cannot make billing believe a payment, or run a job.
package keys

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// MinBytes is the least key material a key must hold.
const MinBytes = 32

// Decode reads the key in variable's value s: at least MinBytes, in hex
// or base64 (standard or URL-safe). Errors name the variable, never the
// value.
func Decode(variable, s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	var b []byte
	if h, err := hex.DecodeString(s); err == nil {
		b = h
	} else if d, err := base64.StdEncoding.DecodeString(s); err == nil {
		b = d
	} else if d, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "=")); err == nil {
		b = d
	} else {
		return nil, fmt.Errorf("%s: not hex or base64", variable)
	}
	if len(b) < MinBytes {
		return nil, fmt.Errorf("%s: %d bytes; at least %d are required (openssl rand -hex 32)", variable, len(b), MinBytes)
	}
	return b, nil
}

// HeaderBusProof carries, on every message a Levqor process publishes,
// the proof that one did: "v1," and the hex HMAC-SHA256 of the message's
// bytes under the bus key. Workers refuse Stripe events, ticks, events and
// dead letters without it.
const HeaderBusProof = "Levqor-Proof"

// BusKey proves that a message on the bus was put there by a Levqor
// process (LEVQOR_BUS_KEY).
type BusKey struct {
	key []byte
}

// ParseBusKey reads LEVQOR_BUS_KEY.
func ParseBusKey(s string) (*BusKey, error) {
	b, err := Decode("LEVQOR_BUS_KEY", s)
	if err != nil {
		return nil, err
	}
	return &BusKey{key: b}, nil
}

func (k *BusKey) messageMAC(body []byte) []byte {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte("levqor bus message\x00"))
	m.Write(body)
	return m.Sum(nil)
}

// ProveMessage returns the HeaderBusProof value of a message's bytes.
func (k *BusKey) ProveMessage(body []byte) string {
	return "v1," + hex.EncodeToString(k.messageMAC(body))
}

// ErrNoBusProof is the error of a message without a valid HeaderBusProof.
var ErrNoBusProof = errors.New("the message carries no valid proof that a Levqor process published it (" + HeaderBusProof + ")")

// CheckMessage returns nil if proof is the HeaderBusProof of body, compared
// in constant time, else ErrNoBusProof.
func (k *BusKey) CheckMessage(proof string, body []byte) error {
	v, ok := strings.CutPrefix(proof, "v1,")
	if !ok {
		return ErrNoBusProof
	}
	got, err := hex.DecodeString(v)
	if err != nil || !hmac.Equal(got, k.messageMAC(body)) {
		return ErrNoBusProof
	}
	return nil
}
