package accounts

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/stripeapi"
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

// CommandConsumer declares accounts-cmd: every accounts command.
func CommandConsumer() bus.ConsumerSpec {
	return bus.ConsumerSpec{Name: ConsumerCommands, Kind: bus.Commands, Filter: Domain + ".>"}
}

// AccountIDFor is the id of the account that command cmdID creates. It is
// derived, not random, so every retry of the command names the same
// account.
func AccountIDFor(cmdID string) string {
	sum := sha256.Sum256([]byte("levqor account created by " + cmdID))
	return command.DerivedID(store.AccountIDPrefix, sum[:])
}

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
	// Blobs is the backups' blob store, whose blobs an erasure deletes;
	// nil fails erasures, naming the setting.
	Blobs blob.Store
	// ErasureCoolingOff, OffboardGrace and ErasureRemindBefore: zero takes
	// the defaults.
	ErasureCoolingOff   time.Duration
	OffboardGrace       time.Duration
	ErasureRemindBefore time.Duration
	// Topology names the subjects of the events the worker raises.
	Topology bus.Topology
}

func (w *Worker) clock() time.Time { return time.Now() }

// Register adds the worker's consumers to r: accounts-cmd for the
// commands and accounts-dlq, which marks dead-lettered commands failed.
func (w *Worker) Register(r *bus.Router) {
	r.Handle(CommandConsumer(), w.Runtime.Handler(w.Handle))
	r.Handle(w.Runtime.DeadLetters(WorkerName+"-dlq", ConsumerCommands))
	r.Handle(TickConsumer(), bus.LongRunning(w.HandleTick, erasureTimeout))
}

// erasureTimeout bounds one accounts.* tick: deleting a large account's
// blobs takes longer than the router's handler timeout.
const erasureTimeout = 6 * time.Hour

// Handle carries out one accounts command.
func (w *Worker) Handle(ctx context.Context, e *command.Envelope) (command.Effect, error) {
	return command.Route(ctx, e, "accounts", Domain, command.Actions{
		ActionCreate:         command.Typed(w.create),
		ActionUpdate:         command.Typed(w.update),
		ActionRequestErasure: command.Typed(w.requestErasure),
		ActionCancelErasure:  command.Typed(w.cancelErasure),
	})
}

func (w *Worker) create(ctx context.Context, e *command.Envelope, p CreateParams) (command.Effect, error) {
	if w.Stripe == nil {
		return nil, stripeapi.NotConfigured(WorkerName)
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
		return nil, stripeapi.NotConfigured(WorkerName)
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

// stripeError classifies a Stripe failure of an accounts command, naming
// the API's field for Stripe's parameter (stripeapi.CommandError).
func stripeError(doing string, err error) error {
	return stripeapi.CommandError(doing, err, func(p string) string { return stripeFields[p] })
}
