package api

import (
	"net/http"

	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/store"
)

// NotificationList is the answer of GET /v1/notifications.
type NotificationList struct {
	Data []store.Notification `json:"data"`
}

// listNotifications serves GET /v1/notifications: what Levqor told whom,
// newest first, with each one's delivery state. An account key sees its
// account's; an operator every account's, or one with ?account_id=.
func (s *Server) listNotifications(w http.ResponseWriter, r *http.Request) {
	accountID, limit, ok := s.listScope(w, r)
	if !ok {
		return
	}
	list, err := s.store.ListNotifications(r.Context(), accountID, limit)
	if err != nil {
		s.unavailable(w, r, err, "cannot list notifications")
		return
	}
	if list == nil {
		list = []store.Notification{}
	}
	httpjson.Write(w, http.StatusOK, NotificationList{Data: list})
}
