package api

import (
	"net/http"

	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/notify"
	"github.com/levqor/levqor/pkg/store"
)

// NotificationList is the answer of GET /v1/notifications.
type NotificationList struct {
	Data []store.Notification `json:"data"`
}

// listNotifications serves GET /v1/notifications: what Levqor told whom,
// newest first, with each one's delivery state. An account key sees what
// its account's people were told, never what Levqor's staff were told
// about it; an operator sees everything, of every account or of one with
// ?account_id=, and one audience with ?audience=.
func (s *Server) listNotifications(w http.ResponseWriter, r *http.Request) {
	accountID, limit, ok := s.listScope(w, r, "audience")
	if !ok {
		return
	}
	audience := r.URL.Query().Get("audience")
	if audience != "" && audience != store.AudienceCustomer && audience != store.AudienceStaff {
		httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", "audience must be customer or staff", "audience")
		return
	}
	if !principal(r).Operator {
		audience = store.AudienceCustomer
	}
	list, err := s.store.ListNotifications(r.Context(), store.ListNotificationsParams{AccountID: accountID, Audience: audience, Limit: limit})
	if err != nil {
		s.unavailable(w, r, err, "cannot list notifications")
		return
	}
	if list == nil {
		list = []store.Notification{}
	}
	for i := range list {
		if list[i].Channel == notify.ChannelChat {
			// A chat webhook's URL is its password.
			list[i].Recipient = notify.RedactURL(list[i].Recipient)
		}
	}
	httpjson.Write(w, http.StatusOK, NotificationList{Data: list})
}
