package api

import (
	"net/http"

	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/notify"
)

// registerPreferences adds the notification preferences routes.
func (s *Server) registerPreferences(handle func(pattern string, h http.Handler)) {
	handle("GET /v1/notification-preferences", s.Guard(auth.AnyKey, http.HandlerFunc(s.getPreferences)))
	handle("PUT /v1/notification-preferences", s.Guard(auth.AnyKey, http.HandlerFunc(s.putPreferences)))
}

// getPreferences serves GET /v1/notification-preferences: the account's
// own (an operator names it with ?account_id=).
func (s *Server) getPreferences(w http.ResponseWriter, r *http.Request) {
	if !checkQuery(w, r, "account_id") {
		return
	}
	acc, ok := s.requestAccount(w, r, r.URL.Query().Get("account_id"))
	if !ok {
		return
	}
	p, err := s.store.GetPreferences(r.Context(), acc.ID)
	if err != nil {
		s.unavailable(w, r, err, "cannot read the preferences")
		return
	}
	httpjson.Write(w, http.StatusOK, p)
}

// putPreferences serves PUT /v1/notification-preferences: the whole
// preferences, {"muted_events": [...], "quiet_hours": {"start", "end",
// "time_zone"}}, replacing what was set.
func (s *Server) putPreferences(w http.ResponseWriter, r *http.Request) {
	serveCommand(s, w, r, false, func(p notify.SetPreferencesParams) (commandSpec, error) {
		p.Normalize()
		if err := p.Validate(); err != nil {
			return commandSpec{}, err
		}
		acc, ok := s.requestAccount(w, r, p.AccountID)
		if !ok {
			return commandSpec{}, errAnswered
		}
		p.AccountID = acc.ID
		return commandSpec{notify.Domain, notify.ActionSetPreferences, acc.ID, p}, nil
	})
}
