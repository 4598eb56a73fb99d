package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/levqor/levqor/pkg/accounts"
	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/notify"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/support"
)

// registerSuspension adds the operators' routes that suspend an account
// and reinstate it: billing.suspend and billing.reinstate, with a reason
// the account's people will read.
func (s *Server) registerSuspension(handle func(pattern string, h http.Handler)) {
	operator := func(f http.HandlerFunc) http.Handler { return s.Guard(auth.OperatorOnly, f) }
	handle("POST /v1/accounts/{id}/suspend", operator(s.suspension(billing.ActionSuspend)))
	handle("POST /v1/accounts/{id}/reinstate", operator(s.suspension(billing.ActionReinstate)))
}

// suspension serves POST /v1/accounts/{id}/suspend and …/reinstate
// {"reason": "…"}.
func (s *Server) suspension(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := s.existingAccount(w, r)
		if !ok {
			return
		}
		serveCommand(s, w, r, false, func(p billing.SuspensionParams) (commandSpec, error) {
			p.Normalize()
			if err := p.Validate(); err != nil {
				return commandSpec{}, err
			}
			return commandSpec{billing.Domain, action, id, p}, nil
		})
	}
}

// openWhileSuspended are the command domains an account an operator
// suspended may still use: paying, talking to support, and its
// notifications (opting out, rotating a webhook secret).
var openWhileSuspended = map[string]bool{billing.Domain: true, support.Domain: true, notify.Domain: true}

// openActionsWhileSuspended are other commands it may still send:
// asking for its data's erasure, or canceling that request (an erasure
// waits while the suspension holds).
var openActionsWhileSuspended = map[string]bool{
	accounts.Domain + "." + accounts.ActionRequestErasure: true,
	accounts.Domain + "." + accounts.ActionCancelErasure:  true,
}

// errSuspended refuses a change to an account an operator suspended.
var errSuspended = errors.New("api: the account is suspended")

// checkSuspension refuses, with 403 account_suspended and the operator's
// reason, a change the account's own credentials ask of an account an
// operator suspended; operators and what stays open pass.
func (s *Server) checkSuspension(ctx context.Context, w http.ResponseWriter, p auth.Principal, sub submission) error {
	if p.Operator || sub.accountID == "" || openWhileSuspended[sub.domain] || openActionsWhileSuspended[sub.domain+"."+sub.action] {
		return nil
	}
	acc, err := s.store.GetAccount(ctx, sub.accountID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // the worker answers the missing account
	}
	if err != nil {
		return err
	}
	if acc.Suspension == nil {
		return nil
	}
	httpjson.Error(w, http.StatusForbidden, "account_suspended",
		"account "+acc.ID+" is suspended by Levqor ("+acc.Suspension.Reason+"): until it is reinstated only billing, support and notification requests are accepted", "")
	return errSuspended
}
