package bus

import (
	"errors"
	"fmt"
	"time"
)

// PermanentError marks a failure that no retry can fix: a malformed
// payload, an unknown account, a validation error. The router sends the
// message to the dead-letter queue at once.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that the router dead-letters the message instead of
// retrying it. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// Permanentf is Permanent(fmt.Errorf(format, args...)).
func Permanentf(format string, args ...any) error {
	return Permanent(fmt.Errorf(format, args...))
}

// IsPermanent reports whether err is, or wraps, a PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// RetryAfterError asks for the message to be redelivered after Delay, for
// example when Stripe answers 429 with Retry-After. It still counts towards
// MaxDeliver.
type RetryAfterError struct {
	Err   error
	Delay time.Duration
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("retry after %s: %v", e.Delay, e.Err)
}

// Unwrap returns the underlying error.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// DeferError hands a message back, to come again after Delay, for a
// reason that is no failure: a notification waiting for its recipient's
// quiet hours to end. Nothing is recorded or logged as a failure, though
// the delivery still counts towards MaxDeliver: on the last delivery
// (Message.LastAttempt) a deferral is dead-lettered like a failure, so a
// handler should not defer then.
type DeferError struct {
	Reason string
	Delay  time.Duration
}

func (e *DeferError) Error() string {
	return fmt.Sprintf("deferred for %s: %s", e.Delay, e.Reason)
}

// Defer returns a DeferError: the message comes back after d.
func Defer(reason string, d time.Duration) error {
	return &DeferError{Reason: reason, Delay: d}
}

// RetryAfter wraps err so that the message is redelivered after d rather
// than after the router's own backoff. RetryAfter(nil, d) is nil.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &RetryAfterError{Err: err, Delay: d}
}
