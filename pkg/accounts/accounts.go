package accounts

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/store"
)

// WorkerName is the worker's name in LEVQOR_WORKERS.
const WorkerName = "accounts"

// ConsumerCommands is the worker's durable consumer on COMMANDS.
const ConsumerCommands = "accounts-cmd"

// Domain is the command domain the worker handles: levqor.cmd.accounts.*.
const Domain = "accounts"

// Actions of the accounts domain.
const (
	ActionCreate = "create"
	ActionUpdate = "update"
)

// AccountIDPrefix starts every account id.
const AccountIDPrefix = "acc_"

// CommandConsumer declares accounts-cmd: every accounts command.
func CommandConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerCommands, Kind: bus.Commands, Filter: Domain + ".>"}
}

// AccountIDFor is the id of the account that command cmdID creates. It is
// derived, not random, so every retry of the command names the same
// account.
func AccountIDFor(cmdID string) string {
	sum := sha256.Sum256([]byte("levqor account created by " + cmdID))
	return command.DerivedID(AccountIDPrefix, sum[:])
}

// StripeHTTPTimeout bounds one call to the Stripe API.
const StripeHTTPTimeout = 20 * time.Second

// NewStripeClient returns a Stripe API client with key; base, when set,
// replaces https://api.stripe.com (stripe-mock in tests and dev).
// stripe-go's retry warnings (method and path only) go to log; its error
// lines are dropped, because they can quote what Stripe said about customer
// data: failures reach the logs through the worker, classified and without
// request parameters.
func NewStripeClient(key, base string, log logrus.FieldLogger) *client.API {
	cfg := &stripe.BackendConfig{
		HTTPClient:    &http.Client{Timeout: StripeHTTPTimeout},
		LeveledLogger: stripeLogger{log},
	}
	if base != "" {
		cfg.URL = stripe.String(base)
	}
	backend := stripe.GetBackendWithConfig(stripe.APIBackend, cfg)
	return client.New(key, &stripe.Backends{API: backend, Connect: backend, Uploads: backend})
}

// stripeLogger passes stripe-go's warnings to logrus and drops the rest.
type stripeLogger struct{ log logrus.FieldLogger }

var _ stripe.LeveledLoggerInterface = stripeLogger{}

func (stripeLogger) Debugf(string, ...any)              {}
func (stripeLogger) Infof(string, ...any)               {}
func (stripeLogger) Errorf(string, ...any)              {}
func (l stripeLogger) Warnf(format string, args ...any) { l.log.Warnf(format, args...) }

// ErrStripeNotConfiguredMessage is what a command answers when the worker
// has no Stripe API to call.
const ErrStripeNotConfiguredMessage = "Stripe is not configured for the accounts worker: set STRIPE_API_KEY, " +
	"or in dev mode STRIPE_API_BASE=http://127.0.0.1:12111 with stripe-mock running"

// Worker carries out account commands.
type Worker struct {
	// Store holds accounts and the command bookkeeping.
	Store *store.Store
	// Stripe is the Stripe API; nil fails every command that needs it,
	// with a 503 that says how to configure it, rather than inventing a
	// customer.
	Stripe *client.API
	// Runtime does the command bookkeeping.
	Runtime *command.Runtime
}

func (w *Worker) clock() time.Time { return time.Now() }

// Register adds the worker's consumers to r: accounts-cmd for the
// commands and accounts-dlq, which marks dead-lettered commands failed.
func (w *Worker) Register(r *bus.Router) {
	r.Handle(CommandConsumer(), w.Runtime.Handler(w.Handle))
	r.Handle(w.Runtime.DeadLetters(WorkerName, ConsumerCommands))
}

// Handle carries out one accounts command.
func (w *Worker) Handle(ctx context.Context, e *command.Envelope) (command.Effect, error) {
	return command.Route(ctx, e, "accounts", Domain, command.Actions{
		ActionCreate: command.Typed(w.create),
		ActionUpdate: command.Typed(w.update),
	})
}

func (w *Worker) create(ctx context.Context, e *command.Envelope, p CreateParams) (command.Effect, error) {
	if w.Stripe == nil {
		return nil, command.Fail(http.StatusServiceUnavailable, "stripe_not_configured", "", ErrStripeNotConfiguredMessage)
	}
	id := AccountIDFor(e.ID)
	params := &stripe.CustomerParams{Name: stripe.String(p.Name), Email: stripe.String(p.ContactEmail)}
	params.Context = ctx
	params.AddMetadata("levqor_account_id", id)
	params.SetIdempotencyKey("levqor-" + e.ID + "-customer-create")
	cus, err := w.Stripe.Customers.New(params)
	if err != nil {
		return nil, stripeError("creating customer", err)
	}
	bus.Logger(ctx).WithFields(logrus.Fields{"account_id": id, "stripe_customer_id": cus.ID}).Info("stripe customer ready")
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		now := w.clock()
		if _, err := tx.InsertAccount(ctx, store.Account{
			ID: id, Name: p.Name, ContactEmail: p.ContactEmail, StripeCustomerID: cus.ID, CreatedAt: now, UpdatedAt: now,
		}); err != nil {
			return command.Outcome{}, err
		}
		a, err := tx.GetAccount(ctx, id)
		if err != nil {
			return command.Outcome{}, err
		}
		return command.Outcome{Status: http.StatusCreated, Result: a}, nil
	}, nil
}

func (w *Worker) update(ctx context.Context, e *command.Envelope, p UpdateParams) (command.Effect, error) {
	a, err := w.Store.GetAccount(ctx, e.AccountID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, command.Fail(http.StatusNotFound, "not_found", "id", "no account "+e.AccountID)
	}
	if err != nil {
		return nil, err
	}
	if w.Stripe == nil {
		return nil, command.Fail(http.StatusServiceUnavailable, "stripe_not_configured", "", ErrStripeNotConfiguredMessage)
	}
	params := &stripe.CustomerParams{Name: p.Name, Email: p.ContactEmail}
	params.Context = ctx
	params.SetIdempotencyKey("levqor-" + e.ID + "-customer-update")
	if _, err := w.Stripe.Customers.Update(a.StripeCustomerID, params); err != nil {
		return nil, stripeError("updating customer", err)
	}
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		updated, err := tx.UpdateAccount(ctx, store.AccountChanges{
			ID: e.AccountID, Name: p.Name, ContactEmail: p.ContactEmail, UpdatedAt: w.clock(),
		})
		if errors.Is(err, store.ErrNotFound) {
			return command.Outcome{}, command.Fail(http.StatusNotFound, "not_found", "id", "no account "+e.AccountID)
		}
		if err != nil {
			return command.Outcome{}, err
		}
		return command.Outcome{Status: http.StatusOK, Result: updated}, nil
	}, nil
}

// stripeFields maps Stripe's parameter names to the API's field names.
var stripeFields = map[string]string{"email": "contact_email", "name": "name"}

// StripeRetryAfter is how long a command waits after Stripe's rate limit.
const StripeRetryAfter = 2 * time.Second

// stripeError classifies a Stripe failure: Stripe refusing the request
// (4xx) fails the command with 422 naming the field; its rate limit waits;
// server errors, timeouts and network failures are transient and retried,
// and so is an authentication failure, which an operator must fix (it
// ends in the dead-letter queue if they do not).
func stripeError(doing string, err error) error {
	return StripeCommandError(doing, err, func(p string) string { return stripeFields[p] })
}

// StripeCommandError classifies a Stripe failure of a command: Stripe
// refusing the request (4xx) fails the command with 422 naming the API
// field that fieldOf maps Stripe's parameter to; its rate limit waits;
// server errors, timeouts and network failures are transient and retried by
// the bus with the same idempotency key; so is a refused API key, which an
// operator must fix (the command ends in the dead-letter queue, and is
// marked failed, if they do not).
func StripeCommandError(doing string, err error, fieldOf func(stripeParam string) string) error {
	var se *stripe.Error
	if errors.As(err, &se) {
		switch code := se.HTTPStatusCode; {
		case code == http.StatusTooManyRequests:
			return bus.RetryAfter(fmt.Errorf("stripe: %s: rate limited", doing), StripeRetryAfter)
		case code == http.StatusUnauthorized || code == http.StatusForbidden:
			return fmt.Errorf("stripe: %s: the API key was refused (%d); check STRIPE_API_KEY", doing, code)
		case code >= 400 && code < 500:
			return command.Fail(http.StatusUnprocessableEntity, "stripe_rejected", fieldOf(se.Param),
				"Stripe refused the request: "+se.Msg)
		}
		return fmt.Errorf("stripe: %s: status %d: %s", doing, se.HTTPStatusCode, se.Msg)
	}
	return fmt.Errorf("stripe: %s: %w", doing, err)
}
