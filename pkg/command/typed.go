package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// Normalizer is implemented by parameters that tidy themselves (trim
// spaces, lower-case keys) before they are validated.
type Normalizer interface{ Normalize() }

// Validator is implemented by parameters that can check themselves; it
// returns an *Error naming the first invalid field.
type Validator interface{ Validate() error }

// TypedFunc carries out a command whose parameters have been decoded into
// P, normalized and validated.
type TypedFunc[P any] func(ctx context.Context, e *Envelope, p P) (Effect, error)

// Typed adapts fn to a Func that decodes the envelope's params strictly
// into P, then calls P's Normalize and Validate when it has them (with a
// pointer receiver), so that no domain writes its own decode-and-validate
// prelude. Params that do not decode fail the command with 422
// invalid_params; a validation error is returned as is (an *Error naming
// the field).
func Typed[P any](fn TypedFunc[P]) Func {
	return func(ctx context.Context, e *Envelope) (Effect, error) {
		var p P
		if err := DecodeParams(e.Params, &p); err != nil {
			return nil, err
		}
		if n, ok := any(&p).(Normalizer); ok {
			n.Normalize()
		}
		if v, ok := any(&p).(Validator); ok {
			if err := v.Validate(); err != nil {
				return nil, err
			}
		}
		return fn(ctx, e, p)
	}
}

// DecodeParams decodes a command's params strictly into v: unknown
// fields and trailing data fail the command with 422 invalid_params.
func DecodeParams(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Fail(http.StatusUnprocessableEntity, "invalid_params", "", "command parameters do not decode: "+err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Fail(http.StatusUnprocessableEntity, "invalid_params", "", "command parameters have trailing data")
	}
	return nil
}
