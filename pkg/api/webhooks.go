package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/notify"
	"github.com/levqor/levqor/pkg/store"
)

// registerWebhooks adds the customer webhook endpoint routes. Reads answer
// from the database; changes become notifications.* commands for the notify
// worker. Without LEVQOR_WEBHOOK_SECRET_KEY every route answers 503
// saying so.
func (s *Server) registerWebhooks(handle func(pattern string, h http.Handler)) {
	anyKey := func(f http.HandlerFunc) http.Handler { return s.Guard(auth.AnyKey, s.needWebhooks(f)) }
	handle("POST /v1/webhook-endpoints", anyKey(s.createEndpoint))
	handle("GET /v1/webhook-endpoints", anyKey(s.listEndpoints))
	handle("GET /v1/webhook-endpoints/{id}", anyKey(s.getEndpoint))
	handle("PATCH /v1/webhook-endpoints/{id}", anyKey(s.updateEndpoint))
	handle("POST /v1/webhook-endpoints/{id}/rotate-secret", anyKey(s.rotateEndpointSecret))
	handle("POST /v1/webhook-endpoints/{id}/test", anyKey(s.testEndpoint))
	handle("GET /v1/webhook-endpoints/{id}/deliveries", anyKey(s.listDeliveries))
}

func (s *Server) needWebhooks(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Webhooks == nil {
			httpjson.Error(w, http.StatusServiceUnavailable, "not_configured", notify.WebhooksMissing, "")
			return
		}
		next(w, r)
	}
}

// EndpointList is a page of webhook endpoints, newest first.
type EndpointList struct {
	Data       []store.WebhookEndpoint `json:"data"`
	NextCursor *string                 `json:"next_cursor"`
}

// DeliveryList is a page of an endpoint's delivery log, newest first.
type DeliveryList struct {
	Data       []store.WebhookAttempt `json:"data"`
	NextCursor *string                `json:"next_cursor"`
}

// createEndpoint serves POST /v1/webhook-endpoints. The answer carries
// the endpoint's signing secret: the one time it is shown.
func (s *Server) createEndpoint(w http.ResponseWriter, r *http.Request) {
	serveSecretCommand(s, w, r, false, func(p notify.CreateEndpointParams) (commandSpec, revealing, error) {
		p.Normalize()
		if err := p.Validate(); err != nil {
			return commandSpec{}, revealing{}, err
		}
		if err := notify.CheckURL(s.cfg.Webhooks.Guard(), p.URL); err != nil {
			return commandSpec{}, revealing{}, err
		}
		acc, ok := s.requestAccount(w, r, p.AccountID)
		if !ok {
			return commandSpec{}, revealing{}, errAnswered
		}
		p.AccountID = acc.ID
		secret := func(cmd *store.Command) string {
			return s.cfg.Webhooks.Key().SecretString(notify.EndpointIDFor(cmd.ID), 1)
		}
		return commandSpec{notify.Domain, notify.ActionCreateEndpoint, acc.ID, p}, revealing{secret: secret}, nil
	})
}

// visibleEndpoint is the endpoint {id} when the caller may see it; it has
// answered the request when ok is false.
func (s *Server) visibleEndpoint(w http.ResponseWriter, r *http.Request) (*store.WebhookEndpoint, bool) {
	id := r.PathValue("id")
	if !command.ValidID(id, notify.EndpointIDPrefix) {
		httpjson.Error(w, http.StatusBadRequest, "invalid_id", "not a webhook endpoint id (whe_…)", "id")
		return nil, false
	}
	ep, err := s.store.GetWebhookEndpoint(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !principal(r).Sees(ep.AccountID)) {
		httpjson.Error(w, http.StatusNotFound, "not_found", "no webhook endpoint "+id, "id")
		return nil, false
	}
	if err != nil {
		s.unavailable(w, r, err, "cannot read the webhook endpoint")
		return nil, false
	}
	return ep, true
}

// getEndpoint serves GET /v1/webhook-endpoints/{id}.
func (s *Server) getEndpoint(w http.ResponseWriter, r *http.Request) {
	ep, ok := s.visibleEndpoint(w, r)
	if !ok || !checkQuery(w, r) {
		return
	}
	httpjson.Write(w, http.StatusOK, ep)
}

// listEndpoints serves GET /v1/webhook-endpoints: an account's own;
// operators see every account's, or one's with ?account_id=.
func (s *Server) listEndpoints(w http.ResponseWriter, r *http.Request) {
	accountID, limit, ok := s.listScope(w, r, "cursor")
	if !ok {
		return
	}
	var after *store.WebhookEndpointCursor
	if raw := r.URL.Query().Get("cursor"); raw != "" {
		t, id, err := decodePage(raw, notify.EndpointIDPrefix)
		if err != nil {
			httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", "cursor is not one this API returned", "cursor")
			return
		}
		after = &store.WebhookEndpointCursor{CreatedAt: t, ID: id}
	}
	page, err := s.store.ListWebhookEndpoints(r.Context(), store.ListWebhookEndpointsParams{AccountID: accountID, Limit: limit + 1, After: after})
	if err != nil {
		s.unavailable(w, r, err, "cannot list webhook endpoints")
		return
	}
	out := EndpointList{Data: page}
	if len(page) > limit {
		out.Data = page[:limit]
		last := page[limit-1]
		next := encodePage(last.CreatedAt, last.ID)
		out.NextCursor = &next
	}
	httpjson.Write(w, http.StatusOK, out)
}

// updateEndpoint serves PATCH /v1/webhook-endpoints/{id}: url,
// description, event_types, and enabled (false to stop deliveries, true to
// resume them).
func (s *Server) updateEndpoint(w http.ResponseWriter, r *http.Request) {
	ep, ok := s.visibleEndpoint(w, r)
	if !ok {
		return
	}
	serveCommand(s, w, r, false, func(p notify.UpdateEndpointParams) (commandSpec, error) {
		if p.EndpointID != "" && p.EndpointID != ep.ID {
			return commandSpec{}, command.Fail(http.StatusUnprocessableEntity, "invalid_field", "endpoint_id", "endpoint_id does not match the path")
		}
		p.EndpointID = ep.ID
		p.Normalize()
		if err := p.Validate(); err != nil {
			return commandSpec{}, err
		}
		if p.URL != nil {
			if err := notify.CheckURL(s.cfg.Webhooks.Guard(), *p.URL); err != nil {
				return commandSpec{}, err
			}
		}
		return commandSpec{notify.Domain, notify.ActionUpdateEndpoint, ep.AccountID, p}, nil
	})
}

// rotateEndpointSecret serves POST /v1/webhook-endpoints/{id}/rotate-secret:
// a new secret signs from now on, shown in the answer; the previous one
// also signs for LEVQOR_WEBHOOK_SECRET_OVERLAP, so receivers can switch
// without missing a delivery.
func (s *Server) rotateEndpointSecret(w http.ResponseWriter, r *http.Request) {
	ep, ok := s.visibleEndpoint(w, r)
	if !ok {
		return
	}
	serveSecretCommand(s, w, r, true, func(struct{}) (commandSpec, revealing, error) {
		p := notify.RotateSecretParams{EndpointID: ep.ID, Generation: ep.SecretGeneration + 1}
		// The secret is the generation the command recorded: a retry with
		// the same Idempotency-Key, after the rotation, shows it again.
		secret := func(cmd *store.Command) string {
			var env command.Envelope
			var recorded notify.RotateSecretParams
			if json.Unmarshal(cmd.Payload, &env) != nil || json.Unmarshal(env.Params, &recorded) != nil || recorded.Generation < 2 {
				return ""
			}
			return s.cfg.Webhooks.Key().SecretString(ep.ID, recorded.Generation)
		}
		return commandSpec{notify.Domain, notify.ActionRotateSecret, ep.AccountID, p},
			revealing{secret: secret, identity: map[string]string{"endpoint_id": ep.ID}}, nil
	})
}

// testEndpoint serves POST /v1/webhook-endpoints/{id}/test: a webhook.test
// message, signed and delivered like any other; the delivery log shows
// how it went.
func (s *Server) testEndpoint(w http.ResponseWriter, r *http.Request) {
	ep, ok := s.visibleEndpoint(w, r)
	if !ok {
		return
	}
	serveCommand(s, w, r, true, func(struct{}) (commandSpec, error) {
		return commandSpec{notify.Domain, notify.ActionTestEndpoint, ep.AccountID, notify.TestEndpointParams{EndpointID: ep.ID}}, nil
	})
}

// listDeliveries serves GET /v1/webhook-endpoints/{id}/deliveries: every
// attempt, newest first, with the receiver's status and the start of its
// answer.
func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request) {
	ep, ok := s.visibleEndpoint(w, r)
	if !ok || !checkQuery(w, r, "limit", "cursor") {
		return
	}
	limit, ok := pageLimit(w, r)
	if !ok {
		return
	}
	var before int64
	if raw := r.URL.Query().Get("cursor"); raw != "" {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n <= 0 {
			httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", "cursor is not one this API returned", "cursor")
			return
		}
		before = n
	}
	page, err := s.store.ListWebhookAttempts(r.Context(), ep.ID, before, limit+1)
	if err != nil {
		s.unavailable(w, r, err, "cannot list deliveries")
		return
	}
	out := DeliveryList{Data: page}
	if out.Data == nil {
		out.Data = []store.WebhookAttempt{}
	}
	if len(page) > limit {
		out.Data = page[:limit]
		next := strconv.FormatInt(page[limit-1].ID, 10)
		out.NextCursor = &next
	}
	httpjson.Write(w, http.StatusOK, out)
}
