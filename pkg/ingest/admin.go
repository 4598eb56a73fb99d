package ingest

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/stripeevent"
)

// StripeEventView is the admin API's view of a ledger entry: the event as
// Stripe sent it and how far each consumer got with it.
type StripeEventView struct {
	ID         string                `json:"id"`
	Type       string                `json:"type"`
	APIVersion string                `json:"api_version"`
	Livemode   bool                  `json:"livemode"`
	Created    time.Time             `json:"created"`
	ReceivedAt time.Time             `json:"received_at"`
	RecordedAt time.Time             `json:"recorded_at"`
	StreamSeq  uint64                `json:"stream_seq"`
	Payload    json.RawMessage       `json:"payload"`
	Consumers  []store.ConsumerState `json:"consumers"`
}

func (s *Server) getStripeEvent(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !stripeevent.ValidID(id) {
		httpjson.Error(w, http.StatusBadRequest, "invalid_id", "not a Stripe event id", "id")
		return
	}
	ev, err := s.store.GetStripeEvent(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		httpjson.Error(w, http.StatusNotFound, "not_found", "no Stripe event "+id+" in the ledger", "id")
		return
	}
	if err != nil {
		s.log.WithError(err).Error("reading ledger")
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "database unavailable", "")
		return
	}
	states, err := s.store.ConsumerStates(r.Context(), id)
	if err != nil {
		s.log.WithError(err).Error("reading consumer states")
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "database unavailable", "")
		return
	}
	if states == nil {
		states = []store.ConsumerState{}
	}
	payload := json.RawMessage(ev.Payload)
	if !json.Valid(payload) {
		b, _ := json.Marshal(string(ev.Payload))
		payload = b
	}
	httpjson.Write(w, http.StatusOK, StripeEventView{
		ID: ev.ID, Type: ev.Type, APIVersion: ev.APIVersion, Livemode: ev.Livemode,
		Created: ev.Created, ReceivedAt: ev.ReceivedAt, RecordedAt: ev.RecordedAt,
		StreamSeq: ev.StreamSeq, Payload: payload, Consumers: states,
	})
}
