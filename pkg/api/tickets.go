package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/levqor/levqor/pkg/auth"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/httpjson"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/support"
)

// registerTickets adds the support routes: tickets, their messages and
// status. Reads answer from the database; changes become support.*
// commands for the support worker. Operator keys act as agents; account
// keys see and write only their own account's tickets.
func (s *Server) registerTickets(handle func(pattern string, h http.Handler)) {
	anyKey := func(f http.HandlerFunc) http.Handler { return s.Guard(auth.AnyKey, f) }
	handle("POST /v1/tickets", anyKey(s.createTicket))
	handle("GET /v1/tickets", anyKey(s.listTickets))
	handle("GET /v1/tickets/{id}", anyKey(s.getTicket))
	handle("POST /v1/tickets/{id}/messages", anyKey(s.addTicketMessage))
	handle("GET /v1/tickets/{id}/messages", anyKey(s.listTicketMessages))
	handle("POST /v1/tickets/{id}/status", anyKey(s.setTicketStatus))
}

// queueParam is the shape of a queue name in ?queue=.
var queueParam = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// TicketList is a page of tickets, newest first.
type TicketList struct {
	Data       []support.TicketView `json:"data"`
	NextCursor *string              `json:"next_cursor"`
}

// createTicket serves POST /v1/tickets: the command
// support.create_ticket.
func (s *Server) createTicket(w http.ResponseWriter, r *http.Request) {
	serveCommand(s, w, r, false, func(p support.CreateTicketParams) (commandSpec, error) {
		p.Normalize()
		p.ByOperator = principal(r).Operator
		if err := p.Validate(); err != nil {
			return commandSpec{}, err
		}
		if p.AccountID == "" && principal(r).Operator {
			return commandSpec{}, command.Fail(http.StatusUnprocessableEntity, "invalid_field", "account_id",
				"account_id is required with an operator key: the account the ticket is about (acc_…)")
		}
		acc, ok := s.requestAccount(w, r, p.AccountID)
		if !ok {
			return commandSpec{}, errAnswered
		}
		p.AccountID = acc.ID
		return commandSpec{support.Domain, support.ActionCreateTicket, acc.ID, p}, nil
	})
}

// listTickets serves GET /v1/tickets: an account's own tickets; operators
// see every account's, or one's with ?account_id=. Filters: status
// (comma-separated), queue, breached=true|false.
func (s *Server) listTickets(w http.ResponseWriter, r *http.Request) {
	accountID, limit, ok := s.listScope(w, r, "cursor", "status", "queue", "breached")
	if !ok {
		return
	}
	q := r.URL.Query()
	now := s.now().UTC()
	p := store.ListTicketsParams{AccountID: accountID, Limit: limit + 1, Queue: strings.TrimSpace(q.Get("queue")), Now: now}
	if raw := q.Get("status"); raw != "" {
		for _, st := range strings.Split(raw, ",") {
			st = strings.TrimSpace(st)
			if !slices.Contains(store.TicketStatuses, st) {
				httpjson.Error(w, http.StatusBadRequest, "invalid_parameter",
					fmt.Sprintf("status %s is not one of %s", quote(st), strings.Join(store.TicketStatuses, ", ")), "status")
				return
			}
			p.Statuses = append(p.Statuses, st)
		}
	}
	if p.Queue != "" && !queueParam.MatchString(p.Queue) {
		httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", "queue must be a queue name such as general or escalations", "queue")
		return
	}
	switch raw := q.Get("breached"); raw {
	case "":
	case "true", "false":
		b := raw == "true"
		p.Breached = &b
	default:
		httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", "breached must be true or false", "breached")
		return
	}
	if raw := q.Get("cursor"); raw != "" {
		t, id, err := decodePage(raw, support.TicketIDPrefix)
		if err != nil {
			httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", "cursor is not one this API returned", "cursor")
			return
		}
		p.After = &store.TicketCursor{OpenedAt: t, ID: id}
	}
	page, err := s.store.ListTickets(r.Context(), p)
	if err != nil {
		s.unavailable(w, r, err, "cannot list tickets")
		return
	}
	out := TicketList{Data: []support.TicketView{}}
	if len(page) > limit {
		page = page[:limit]
		last := page[limit-1]
		next := encodePage(last.OpenedAt, last.ID)
		out.NextCursor = &next
	}
	for i := range page {
		out.Data = append(out.Data, support.NewTicketView(&page[i], now))
	}
	httpjson.Write(w, http.StatusOK, out)
}

// getTicket serves GET /v1/tickets/{id}: the ticket with its triage
// decision (fired rules included), due times, conversation, escalations
// and history.
func (s *Server) getTicket(w http.ResponseWriter, r *http.Request) {
	t, ok := s.visibleTicket(w, r)
	if !ok || !checkQuery(w, r) {
		return
	}
	ctx := r.Context()
	v := support.NewTicketView(t, s.now().UTC())
	var err error
	var more *string
	if v.Messages, more, err = s.ticketMessagePage(ctx, t.ID, 0, TicketMessagesInView); err != nil {
		s.unavailable(w, r, err, "cannot read the ticket's messages")
		return
	}
	if v.Escalations, err = s.store.TicketEscalations(ctx, t.ID); err != nil {
		s.unavailable(w, r, err, "cannot read the ticket's escalations")
		return
	}
	if v.History, err = s.store.TicketEvents(ctx, t.ID); err != nil {
		s.unavailable(w, r, err, "cannot read the ticket's history")
		return
	}
	// Full reads always carry the lists, empty or not.
	if v.Escalations == nil {
		v.Escalations = []store.TicketEscalation{}
	}
	httpjson.Write(w, http.StatusOK, struct {
		support.TicketView
		Messages []store.TicketMessage `json:"messages"`
		// MessagesNextCursor, when set, says the conversation goes on
		// past Messages: GET /v1/tickets/{id}/messages?cursor= reads on.
		MessagesNextCursor *string                  `json:"messages_next_cursor,omitempty"`
		Escalations        []store.TicketEscalation `json:"escalations"`
		History            []store.TicketEvent      `json:"history"`
	}{v, v.Messages, more, v.Escalations, v.History})
}

// TicketMessagesInView is how many messages GET /v1/tickets/{id} holds;
// the rest are read page by page.
const TicketMessagesInView = 100

// TicketMessageList is a page of a ticket's messages, oldest first.
type TicketMessageList struct {
	Data       []store.TicketMessage `json:"data"`
	NextCursor *string               `json:"next_cursor"`
}

// ticketMessagePage reads up to limit messages after the message id
// after, and the cursor of the next page when there is one.
func (s *Server) ticketMessagePage(ctx context.Context, ticketID string, after int64, limit int) ([]store.TicketMessage, *string, error) {
	msgs, err := s.store.TicketMessages(ctx, ticketID, after, limit+1)
	if err != nil || len(msgs) <= limit {
		return msgs, nil, err
	}
	msgs = msgs[:limit]
	next := strconv.FormatInt(msgs[limit-1].ID, 10)
	return msgs, &next, nil
}

// listTicketMessages serves GET /v1/tickets/{id}/messages: the
// conversation page by page, oldest first (?limit=, 1 to 200, 50 by
// default; ?cursor= from the previous page).
func (s *Server) listTicketMessages(w http.ResponseWriter, r *http.Request) {
	t, ok := s.visibleTicket(w, r)
	if !ok || !checkQuery(w, r, "limit", "cursor") {
		return
	}
	q := r.URL.Query()
	limit := 50
	if raw := q.Get("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > 200 {
			httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", "limit must be 1 to 200", "limit")
			return
		}
		limit = n
	}
	var after int64
	if raw := q.Get("cursor"); raw != "" {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n < 1 {
			httpjson.Error(w, http.StatusBadRequest, "invalid_parameter", "cursor is not one this API returned", "cursor")
			return
		}
		after = n
	}
	msgs, next, err := s.ticketMessagePage(r.Context(), t.ID, after, limit)
	if err != nil {
		s.unavailable(w, r, err, "cannot read the ticket's messages")
		return
	}
	httpjson.Write(w, http.StatusOK, TicketMessageList{Data: msgs, NextCursor: next})
}

// addTicketMessage serves POST /v1/tickets/{id}/messages: the command
// support.add_message. Operators write as agents (the first agent reply
// stops the first-response clock), account keys as the customer.
func (s *Server) addTicketMessage(w http.ResponseWriter, r *http.Request) {
	t, ok := s.visibleTicket(w, r)
	if !ok {
		return
	}
	serveCommand(s, w, r, false, func(body support.MessageBody) (commandSpec, error) {
		body.Body = strings.TrimSpace(body.Body)
		p := support.AddMessageParams{TicketID: t.ID, MessageBody: body, ByOperator: principal(r).Operator}
		if err := p.Validate(); err != nil {
			return commandSpec{}, err
		}
		return commandSpec{support.Domain, support.ActionAddMessage, t.AccountID, p}, nil
	})
}

// setTicketStatus serves POST /v1/tickets/{id}/status: the command
// support.set_status (open → pending → resolved → closed; open again
// reopens).
func (s *Server) setTicketStatus(w http.ResponseWriter, r *http.Request) {
	t, ok := s.visibleTicket(w, r)
	if !ok {
		return
	}
	serveCommand(s, w, r, false, func(body support.StatusBody) (commandSpec, error) {
		body.Status = strings.ToLower(strings.TrimSpace(body.Status))
		body.Reason = strings.TrimSpace(body.Reason)
		p := support.SetStatusParams{TicketID: t.ID, StatusBody: body, ByOperator: principal(r).Operator}
		if err := p.Validate(); err != nil {
			return commandSpec{}, err
		}
		return commandSpec{support.Domain, support.ActionSetStatus, t.AccountID, p}, nil
	})
}

// visibleTicket returns the ticket of the path's {id} if the caller may
// see it. Another account's ticket answers 404 exactly as an unknown one.
func (s *Server) visibleTicket(w http.ResponseWriter, r *http.Request) (*store.Ticket, bool) {
	id := r.PathValue("id")
	if !command.ValidID(id, support.TicketIDPrefix) {
		httpjson.Error(w, http.StatusBadRequest, "invalid_id", "not a ticket id (tkt_…)", "id")
		return nil, false
	}
	t, err := s.store.GetTicket(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !principal(r).Sees(t.AccountID)) {
		httpjson.Error(w, http.StatusNotFound, "not_found", "no ticket "+id, "id")
		return nil, false
	}
	if err != nil {
		s.unavailable(w, r, err, "cannot read the ticket")
		return nil, false
	}
	return t, true
}
