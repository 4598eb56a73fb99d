package api

import (
	"errors"
	"net/http"

	"github.com/levqor/levqor/pkg/accounts"
	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/store"
)

// registerErasure adds the routes of an account's erasure: request it
// (with the account's name as confirmation), read it, cancel it during
// its cooling-off.
func (s *Server) registerErasure(handle func(pattern string, h http.Handler)) {
	anyKey := func(f http.HandlerFunc) http.Handler { return s.Guard(auth.AnyKey, f) }
	handle("POST /v1/accounts/{id}/erasure", anyKey(s.requestErasure))
	handle("GET /v1/accounts/{id}/erasure", anyKey(s.getErasure))
	handle("DELETE /v1/accounts/{id}/erasure", anyKey(s.cancelErasure))
}

// existingAccount is the account {id} when the caller may see it and it
// exists; it has answered the request when ok is false.
func (s *Server) existingAccount(w http.ResponseWriter, r *http.Request) (string, bool) {
	id, ok := s.visibleAccountID(w, r)
	if !ok {
		return "", false
	}
	if _, err := s.store.GetAccount(r.Context(), id); errors.Is(err, store.ErrNotFound) {
		notFoundAccount(w, id)
		return "", false
	} else if err != nil {
		s.unavailable(w, r, err, "cannot read the account")
		return "", false
	}
	return id, true
}

// requestErasure serves POST /v1/accounts/{id}/erasure {"confirm": "<the
// account's name>"}: the erasure is carried out by accounts.offboard once
// LEVQOR_ERASURE_COOLING_OFF has passed, unless canceled meanwhile.
func (s *Server) requestErasure(w http.ResponseWriter, r *http.Request) {
	id, ok := s.existingAccount(w, r)
	if !ok {
		return
	}
	serveCommand(s, w, r, false, func(p accounts.RequestErasureParams) (commandSpec, error) {
		p.ByOperator = principal(r).Operator
		if err := p.Validate(); err != nil {
			return commandSpec{}, err
		}
		return commandSpec{accounts.Domain, accounts.ActionRequestErasure, id, p}, nil
	})
}

// cancelErasure serves DELETE /v1/accounts/{id}/erasure: the scheduled
// erasure is canceled.
func (s *Server) cancelErasure(w http.ResponseWriter, r *http.Request) {
	id, ok := s.existingAccount(w, r)
	if !ok {
		return
	}
	serveCommand(s, w, r, true, func(accounts.CancelErasureParams) (commandSpec, error) {
		return commandSpec{accounts.Domain, accounts.ActionCancelErasure, id, accounts.CancelErasureParams{ByOperator: principal(r).Operator}}, nil
	})
}

// getErasure serves GET /v1/accounts/{id}/erasure: the account's newest
// erasure, with its report once done.
func (s *Server) getErasure(w http.ResponseWriter, r *http.Request) {
	id, ok := s.existingAccount(w, r)
	if !ok || !checkQuery(w, r) {
		return
	}
	e, err := s.store.LatestErasure(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		httpjson.Error(w, http.StatusNotFound, "not_found", "no erasure of "+id+" was requested", "id")
		return
	}
	if err != nil {
		s.unavailable(w, r, err, "cannot read the erasure")
		return
	}
	httpjson.Write(w, http.StatusOK, e)
}
