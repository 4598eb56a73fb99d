package command

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Envelope is the message published for a command.
type Envelope struct {
	// ID is the command id, "cmd_…", also the message's Nats-Msg-Id.
	ID string `json:"id"`
	// Domain and Action make the subject levqor.cmd.<domain>.<action>.
	Domain string `json:"domain"`
	Action string `json:"action"`
	// AccountID is the tenant the command concerns; "" when there is none
	// yet (creating an account). It is also the Levqor-Account header.
	AccountID string `json:"account_id,omitempty"`
	// KeyID is the API key that asked (not secret), for the audit trail;
	// "user:<id>" for a person in the console.
	KeyID string `json:"key_id"`
	// Params are the action's parameters, validated by the API.
	Params json.RawMessage `json:"params"`
	// CreatedAt is when the API accepted the command.
	CreatedAt time.Time `json:"created_at"`
}

// Type is "<domain>.<action>", the subject's tail.
func (e *Envelope) Type() string { return e.Domain + "." + e.Action }

// DecodeEnvelope parses a command message strictly: unknown fields,
// trailing data or a missing id, domain or action are errors.
func DecodeEnvelope(data []byte) (*Envelope, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var e Envelope
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("command envelope: %w", err)
	}
	if dec.More() {
		return nil, errors.New("command envelope: trailing data")
	}
	if !ValidID(e.ID, IDPrefix) || e.Domain == "" || e.Action == "" {
		return nil, errors.New("command envelope: id, domain and action are required")
	}
	return &e, nil
}

// Error fails a command: the client gets Status with the error shape
// {"error": {"code", "message", "field"}}. Workers return it for outcomes
// no retry can change, such as invalid input.
type Error struct {
	Status  int
	Code    string
	Message string
	Field   string
}

var _ error = (*Error)(nil)

// Error formats the failure for logs.
func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s (%d) on %s: %s", e.Code, e.Status, e.Field, e.Message)
	}
	return fmt.Sprintf("%s (%d): %s", e.Code, e.Status, e.Message)
}

// Fail returns an *Error; field may be "".
func Fail(status int, code, field, message string) error {
	if status < 400 || status > 599 {
		status = http.StatusInternalServerError
	}
	return &Error{Status: status, Code: code, Message: message, Field: field}
}

// IDPrefix starts every command id.
const IDPrefix = "cmd_"

// idEncoding is lower-case base32 without padding.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// idBytes is the randomness of an id: 128 bits.
const idBytes = 16

// NewID returns prefix followed by 26 random base32 characters, the form
// of Levqor's resource ids (cmd_…, acc_…).
func NewID(prefix string) (string, error) {
	b := make([]byte, idBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating id: %w", err)
	}
	return prefix + idEncoding.EncodeToString(b), nil
}

// DerivedID returns prefix followed by 26 base32 characters taken from
// seed, which must hold at least 16 bytes (a hash): ids derived from a
// command id stay the same on every retry of the command.
func DerivedID(prefix string, seed []byte) string {
	return prefix + idEncoding.EncodeToString(seed[:idBytes])
}

// IDFor returns the id, with prefix, of the what (a "source", an
// "endpoint") that command commandID creates: a hash of both, so that a
// retried command finds the thing its first attempt made.
func IDFor(prefix, what, commandID string) string {
	sum := sha256.Sum256([]byte("levqor " + what + " created by " + commandID))
	return DerivedID(prefix, sum[:])
}

// ValidID reports whether s is prefix followed by 26 base32 characters.
func ValidID(s, prefix string) bool {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok || len(rest) != idEncoding.EncodedLen(idBytes) {
		return false
	}
	_, err := idEncoding.DecodeString(rest)
	return err == nil
}

// NotifySubject is the core NATS subject on which the outcome of command
// id is announced. It is outside every stream: the announcement is a hint
// to waiting clients, who read the outcome from the database.
func NotifySubject(prefix, id string) string { return prefix + ".notify.command." + id }

// Actor names who asked, for audit trails: "key:<id>" for an API key,
// "user:<id>" for a person in the console.
func (e *Envelope) Actor() string {
	if strings.HasPrefix(e.KeyID, "user:") {
		return e.KeyID
	}
	return "key:" + e.KeyID
}
