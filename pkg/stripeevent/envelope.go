// Package stripeevent reads the envelope of a Stripe event: the fields
// Levqor routes, deduplicates and records by. The payload itself always
// travels as the exact bytes Stripe sent.
package stripeevent

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
)

// Envelope is the routing part of a Stripe event.
type Envelope struct {
	ID         string `json:"id"`
	Object     string `json:"object"`
	Type       string `json:"type"`
	APIVersion string `json:"api_version"`
	Created    int64  `json:"created"`
	Livemode   bool   `json:"livemode"`
}

var (
	// Event ids become Nats-Msg-Id headers and types become subject tokens:
	// both must be safe there.
	idRe   = regexp.MustCompile(`^[A-Za-z0-9_]{1,255}$`)
	typeRe = regexp.MustCompile(`^[a-z0-9_]+(\.[a-z0-9_]+){0,7}$`)
)

// ErrMalformed wraps every reason a payload is not a Stripe event Levqor can
// route.
var ErrMalformed = errors.New("malformed stripe event")

// ValidID reports whether id can be a Stripe event id.
func ValidID(id string) bool { return idRe.MatchString(id) }

// Parse checks that payload is a Stripe event with a usable id, type and
// creation time. On error it also returns the JSON field at fault (empty
// when the body is not JSON at all); errors wrap ErrMalformed.
func Parse(payload []byte) (Envelope, string, error) {
	var e Envelope
	if err := json.Unmarshal(payload, &e); err != nil {
		return e, "", fmt.Errorf("%w: body is not a JSON object: %v", ErrMalformed, err)
	}
	if e.Object != "" && e.Object != "event" {
		return e, "object", fmt.Errorf("%w: object is %q, want \"event\"", ErrMalformed, e.Object)
	}
	if !idRe.MatchString(e.ID) {
		return e, "id", fmt.Errorf("%w: id missing or not a Stripe event id", ErrMalformed)
	}
	if !typeRe.MatchString(e.Type) {
		return e, "type", fmt.Errorf("%w: type missing or not a Stripe event type", ErrMalformed)
	}
	if e.Created <= 0 {
		return e, "created", fmt.Errorf("%w: created missing", ErrMalformed)
	}
	return e, "", nil
}
