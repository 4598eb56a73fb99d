package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/billing"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/store"
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

// checkSuspension refuses, with 403 account_suspended and the operator's
// reason, a change the account's own credentials ask of an account an
// operator suspended (command.CheckSuspension): before it becomes a
// command. The runtime checks again when it runs, for commands accepted
// before the suspension.
//
// A retry with the Idempotency-Key of a command made before the
// suspension is not refused: it answers that command, as any retry does.
// The key is looked up only for a request about to be refused, so the
// common path costs one read of the account.
func (s *Server) checkSuspension(ctx context.Context, p auth.Principal, sub submission) error {
	scope := idempotencyScope(p)
	refused := command.CheckSuspension(ctx, s.store, scope, sub.accountID, sub.domain, sub.action)
	if refused == nil || sub.idempotencyKey == "" {
		return refused
	}
	if _, err := s.store.CommandByKey(ctx, scope, sub.idempotencyKey); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return refused
}
