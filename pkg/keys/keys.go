// Package keys holds Levqor's secret keys as the environment gives them,
// and what they prove. A key is at least MinBytes of random bytes, written
// in hex or base64 (openssl rand -hex 32).
//
// BusKey (LEVQOR_BUS_KEY) is shared by the processes that put Stripe
// events on the bus and those that act on them: ingest proves, with a MAC
// in a header, that it verified an event's Stripe signature, and the
// billing worker refuses an event without that proof. Whoever can publish
// on NATS without the key cannot make billing believe a payment.
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

// HeaderIngestProof carries, on a Stripe event's message, ingest's proof
// that it verified the event's Stripe signature: "v1," and the hex
// HMAC-SHA256 of the event's bytes under the bus key.
const HeaderIngestProof = "Levqor-Ingest-Proof"

// BusKey proves that a message on the bus was put there by a Levqor
// process that checked it (LEVQOR_BUS_KEY).
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

func (k *BusKey) mac(body []byte) []byte {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte("levqor stripe event\x00"))
	m.Write(body)
	return m.Sum(nil)
}

// Prove returns the HeaderIngestProof value for a Stripe event's bytes.
func (k *BusKey) Prove(body []byte) string {
	return "v1," + hex.EncodeToString(k.mac(body))
}

// HeaderBusProof carries, on every message a Levqor process publishes,
// the proof that one did: "v1," and the hex HMAC-SHA256 of the message's
// bytes under the bus key (a label apart from the ingest proof's). Workers
// refuse ticks, events and dead letters without it.
const HeaderBusProof = "Levqor-Proof"

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

// CheckMessage returns nil if proof is the HeaderBusProof of body, else
// ErrNoBusProof.
func (k *BusKey) CheckMessage(proof string, body []byte) error {
	if !matches(proof, k.messageMAC(body)) {
		return ErrNoBusProof
	}
	return nil
}

// matches reports whether proof is "v1," and the hex of mac, compared in
// constant time.
func matches(proof string, mac []byte) bool {
	v, ok := strings.CutPrefix(proof, "v1,")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(v)
	return err == nil && hmac.Equal(got, mac)
}

// ErrNoProof is the error of a Stripe event on the bus that does not carry
// a valid proof of ingest's check.
var ErrNoProof = errors.New("the event carries no valid proof that ingest verified its Stripe signature (" + HeaderIngestProof + ")")

// Check returns nil if proof is the proof of body, else ErrNoProof.
func (k *BusKey) Check(proof string, body []byte) error {
	if !matches(proof, k.mac(body)) {
		return ErrNoProof
	}
	return nil
}
