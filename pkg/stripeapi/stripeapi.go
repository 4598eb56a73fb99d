package stripeapi

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/telemetry"
)

// HTTPTimeoutDefault bounds one call to the Stripe API.
const HTTPTimeoutDefault = 20 * time.Second

// RetryAfterDefault is how long work waits after Stripe's rate limit
// (429) before it is tried again.
const RetryAfterDefault = 2 * time.Second

// Config says how to reach Stripe.
type Config struct {
	// Key is the secret API key (STRIPE_API_KEY).
	Key string
	// BaseURL, when set, replaces https://api.stripe.com: stripe-mock in
	// tests and dev mode (STRIPE_API_BASE).
	BaseURL string
	// HTTPTimeout bounds one call; zero means HTTPTimeoutDefault.
	HTTPTimeout time.Duration
	// Log receives stripe-go's retry warnings; nil discards them.
	Log logrus.FieldLogger
}

// New returns a Stripe API client for cfg. stripe-go's retry warnings
// (method and path only) go to cfg.Log; its error lines are dropped,
// because they can quote what Stripe said about customer data: failures
// reach the logs through the caller, classified and without request
// parameters.
func New(cfg Config) *client.API {
	bc := &stripe.BackendConfig{
		HTTPClient:    &http.Client{Timeout: cmp.Or(cfg.HTTPTimeout, HTTPTimeoutDefault)},
		LeveledLogger: leveledLogger{cfg.Log},
	}
	if telemetry.Tracing() {
		// Each call is a client span of the handler that made it.
		// No trace context goes to Stripe: a client span only.
		bc.HTTPClient.Transport = otelhttp.NewTransport(http.DefaultTransport, otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator()))
	}
	if cfg.BaseURL != "" {
		bc.URL = stripe.String(cfg.BaseURL)
	}
	backend := stripe.GetBackendWithConfig(stripe.APIBackend, bc)
	return client.New(cfg.Key, &stripe.Backends{API: backend, Connect: backend, Uploads: backend})
}

// leveledLogger passes stripe-go's warnings to logrus and drops the rest.
type leveledLogger struct{ log logrus.FieldLogger }

var _ stripe.LeveledLoggerInterface = leveledLogger{}

func (leveledLogger) Debugf(string, ...any) {}
func (leveledLogger) Infof(string, ...any)  {}
func (leveledLogger) Errorf(string, ...any) {}
func (l leveledLogger) Warnf(format string, args ...any) {
	if l.log != nil {
		l.log.Warnf(format, args...)
	}
}

// RefusedError is Stripe refusing a request for what it asked (a 4xx other
// than 401, 403 and 429): sending it again cannot succeed.
type RefusedError struct {
	// Doing is what Levqor was doing, e.g. "creating customer".
	Doing string
	// Status is Stripe's HTTP status.
	Status int
	// Param is the Stripe parameter Stripe blamed, if any.
	Param string
	// Message is Stripe's message.
	Message string
}

// Error formats the refusal for logs.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("stripe: %s: refused (%d): %s", e.Doing, e.Status, e.Message)
}

// Classify turns a Stripe failure into the bus's control flow. The policy,
// the same for every caller:
//
//   - 429 (rate limited): bus.RetryAfter(RetryAfterDefault);
//   - 401 and 403 (the API key refused): transient. An operator must fix
//     STRIPE_API_KEY; until then the work is retried with backoff and ends
//     in the dead-letter queue after MaxDeliver, from where it is
//     replayed. Work already waiting resumes by itself once the key is
//     fixed, which a permanent failure would not allow;
//   - any other 4xx: bus.Permanent(*RefusedError): Stripe refuses what was
//     asked, and asking again cannot change that;
//   - 5xx, timeouts and network failures: transient, retried by the bus.
//     Every mutating call carries an idempotency key derived from the
//     message, so a retry never does the thing twice.
//
// A nil err returns nil. Callers that treat 404 as an answer check
// NotFound first.
func Classify(doing string, err error) error {
	if err == nil {
		return nil
	}
	var se *stripe.Error
	if !errors.As(err, &se) {
		return fmt.Errorf("stripe: %s: %w", doing, err)
	}
	switch code := se.HTTPStatusCode; {
	case code == http.StatusTooManyRequests:
		return bus.RetryAfter(fmt.Errorf("stripe: %s: rate limited", doing), RetryAfterDefault)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return fmt.Errorf("stripe: %s: the API key was refused (%d); check STRIPE_API_KEY", doing, code)
	case code >= 400 && code < 500:
		return bus.Permanent(&RefusedError{Doing: doing, Status: code, Param: se.Param, Message: se.Msg})
	}
	return fmt.Errorf("stripe: %s: status %d: %s", doing, se.HTTPStatusCode, se.Msg)
}

// NotFound reports whether err is Stripe answering 404: the object does
// not exist (any more).
func NotFound(err error) bool {
	var se *stripe.Error
	return errors.As(err, &se) && se.HTTPStatusCode == http.StatusNotFound
}

// CommandError classifies a Stripe failure of a command: a refusal fails
// the command with 422 stripe_rejected, naming the API field that fieldOf
// maps Stripe's parameter to (fieldOf may be nil); everything else follows
// Classify.
func CommandError(doing string, err error, fieldOf func(stripeParam string) string) error {
	err = Classify(doing, err)
	var refused *RefusedError
	if errors.As(err, &refused) {
		field := ""
		if fieldOf != nil && refused.Param != "" {
			field = fieldOf(refused.Param)
		}
		return command.Fail(http.StatusUnprocessableEntity, "stripe_rejected", field, "Stripe refused the request: "+refused.Message)
	}
	return err
}

// NotConfigured fails a command that needs the Stripe API when worker has
// none, with a 503 saying how to configure it, rather than inventing a
// customer or a session.
func NotConfigured(worker string) error {
	return command.Fail(http.StatusServiceUnavailable, "stripe_not_configured", "",
		NotConfiguredMessage(worker))
}

// NotConfiguredMessage says how to give worker a Stripe API.
func NotConfiguredMessage(worker string) string {
	return "Stripe is not configured for the " + worker + " worker: set STRIPE_API_KEY, " +
		"or STRIPE_API_BASE for a Stripe-compatible API such as stripe-mock (dev mode starts its own offline stand-in)"
}
