// Package stripeevent reads the envelope of a Stripe event: the fields
// Levqor routes, deduplicates and records by. The payload itself always
// travels as the exact bytes Stripe sent.
package stripeevent

import (
	"errors"
	"fmt"
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

// ErrMalformed wraps every reason a payload is not a Stripe event Levqor can
// route.
var ErrMalformed = errors.New("malformed stripe event")

// maxIDLen and maxTypeSegments bound what becomes a Nats-Msg-Id header and
// the tokens of a subject.
const (
	maxIDLen        = 255
	maxTypeSegments = 8
)

// ValidID reports whether id can be a Stripe event id: 1 to 255 ASCII
// letters, digits or underscores. Event ids become Nats-Msg-Id headers, so
// they must be safe there.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > maxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// validType reports whether typ can be a Stripe event type: one to eight
// non-empty dot-separated tokens of lowercase letters, digits and
// underscores. Types become subject tokens, so they must be safe there.
func validType(typ string) bool {
	segments, run := 1, 0
	for i := 0; i < len(typ); i++ {
		switch c := typ[i]; {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_':
			run++
		case c == '.':
			if run == 0 {
				return false
			}
			run = 0
			segments++
		default:
			return false
		}
	}
	return run > 0 && segments <= maxTypeSegments
}

// Parse checks that payload is a Stripe event with a usable id, type and
// creation time. It reads the body once: the whole body is validated as JSON
// while only the envelope fields are decoded (the payload travels on as the
// exact bytes Stripe sent). On error it also returns the JSON field at fault
// (empty when the body is not a JSON object at all); errors wrap
// ErrMalformed.
func Parse(payload []byte) (Envelope, string, error) {
	e, err := scanEnvelope(payload)
	if err != nil {
		var fe *fieldError
		switch {
		case errors.As(err, &fe):
			return e, fe.field, fmt.Errorf("%w: %s", ErrMalformed, fe.Error())
		case errors.Is(err, errNotObject):
			return e, "", fmt.Errorf("%w: body is JSON but not an object", ErrMalformed)
		}
		return e, "", fmt.Errorf("%w: body is not a JSON object: %v", ErrMalformed, err)
	}
	if e.Object != "" && e.Object != "event" {
		return e, "object", fmt.Errorf("%w: object is %q, want \"event\"", ErrMalformed, e.Object)
	}
	if !ValidID(e.ID) {
		return e, "id", fmt.Errorf("%w: id missing or not a Stripe event id", ErrMalformed)
	}
	if !validType(e.Type) {
		return e, "type", fmt.Errorf("%w: type missing or not a Stripe event type", ErrMalformed)
	}
	if e.Created <= 0 {
		return e, "created", fmt.Errorf("%w: created missing", ErrMalformed)
	}
	return e, "", nil
}
