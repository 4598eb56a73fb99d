package billing

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/store"
)

// SuspensionReasonMax bounds the reason of a suspension or of lifting one.
const SuspensionReasonMax = 500

// SuspensionParams are the parameters of billing.suspend and
// billing.reinstate: why, in words the account's people will read.
type SuspensionParams struct {
	Reason string `json:"reason"`
}

// Normalize trims the reason.
func (p *SuspensionParams) Normalize() { p.Reason = strings.TrimSpace(p.Reason) }

// Validate requires a one-line reason.
func (p *SuspensionParams) Validate() error {
	return command.CheckText("reason", p.Reason, SuspensionReasonMax, true)
}

// SuspensionResult is the result of billing.suspend and billing.reinstate:
// the account as the command left it.
type SuspensionResult struct {
	Account *store.Account `json:"account"`
}

// suspend carries out billing.suspend: an operator stops the account's
// service. Its status becomes suspended and stays so, whatever Stripe
// says, until an operator reinstates it; the other domains learn it from
// billing.account_status_changed as they do for dunning's suspension.
// Only operators reach it: the API's route is theirs alone, and the
// runtime carries out only the commands the API recorded.
func (w *Worker) suspend(ctx context.Context, e *command.Envelope, p SuspensionParams) (command.Effect, error) {
	return w.setSuspension(e, func(acc *store.Account) (*store.AccountSuspension, string, error) {
		if acc.Suspension != nil {
			return nil, "", command.Fail(http.StatusConflict, "already_suspended", "id",
				"account "+acc.ID+" was already suspended by "+acc.Suspension.By+" at "+acc.Suspension.At.Format(time.RFC3339)+": "+acc.Suspension.Reason)
		}
		return &store.AccountSuspension{Reason: p.Reason, By: e.Actor(), At: e.CreatedAt},
			"suspended by an operator: " + p.Reason, nil
	})
}

// reinstate carries out billing.reinstate: an operator lifts their
// suspension. The account's status is billing's again, which keeps it
// suspended if dunning suspended it meanwhile.
func (w *Worker) reinstate(ctx context.Context, e *command.Envelope, p SuspensionParams) (command.Effect, error) {
	return w.setSuspension(e, func(acc *store.Account) (*store.AccountSuspension, string, error) {
		if acc.Suspension == nil {
			return nil, "", command.Fail(http.StatusConflict, "not_suspended", "id", "account "+acc.ID+" is not suspended by an operator")
		}
		return nil, "an operator lifted the suspension: " + p.Reason, nil
	})
}

// setSuspension writes the suspension decide returns for the locked
// account, and the status that follows, in one transaction.
func (w *Worker) setSuspension(e *command.Envelope, decide func(*store.Account) (*store.AccountSuspension, string, error)) (command.Effect, error) {
	if e.AccountID == "" {
		return nil, invalid("account_id", "account_id is required")
	}
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		// Locked as a batch of Stripe events locks it, so that neither
		// writes a status from an account the other has changed.
		if err := tx.LockAccounts(ctx, []string{e.AccountID}); err != nil {
			return command.Outcome{}, err
		}
		acc, err := tx.GetAccount(ctx, e.AccountID)
		if errors.Is(err, store.ErrNotFound) {
			return command.Outcome{}, command.Fail(http.StatusNotFound, "not_found", "id", "no account "+e.AccountID)
		}
		if err != nil {
			return command.Outcome{}, err
		}
		s, reason, err := decide(acc)
		if err != nil {
			return command.Outcome{}, err
		}
		now := time.Now().UTC()
		if err := tx.SetAccountSuspension(ctx, acc.ID, s, now); err != nil {
			return command.Outcome{}, err
		}
		acc.Suspension = s
		out := emitter{tx: txState{tx}, topo: w.Topology, at: now, correlation: e.ID, reason: reason}
		if err := w.recompute(ctx, txState{tx}, acc, out); err != nil {
			return command.Outcome{}, err
		}
		after, err := tx.GetAccount(ctx, acc.ID)
		if err != nil {
			return command.Outcome{}, err
		}
		bus.Logger(ctx).WithFields(logrus.Fields{"account_id": acc.ID, "command": e.Type(), "actor": e.Actor(), "status": after.Status}).
			Warn("account suspension changed by an operator")
		return command.Outcome{Status: http.StatusOK, Result: SuspensionResult{Account: after}}, nil
	}, nil
}
