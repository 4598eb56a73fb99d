package support

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/levqor/levqor/pkg/bus"
	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/events"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/support/triage"
)

// newTicket is a ticket to open: by a person or for an incident.
type newTicket struct {
	ID, AccountID, Subject, Body string
	// Category and Severity are the opener's choice ("" for none); for an
	// incident, the incident's.
	Category, Severity string
	Origin             string
	IncidentKey        string
	Author, KeyID      string
	Actor              string
	At                 time.Time
	Correlation        string
	// Detail is kept in the opened entry of the history.
	Detail map[string]any
}

// open triages, routes and inserts a ticket with its first message, its
// history and the ticket_opened event. It returns nil, nil when a ticket
// with the id (or the incident) exists already.
func (w *Worker) open(ctx context.Context, tx *store.Tx, n newTicket) (*store.Ticket, error) {
	_, prof, err := w.accountProfile(ctx, tx, n.AccountID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, command.Fail(http.StatusNotFound, "not_found", "account_id", "no account "+n.AccountID)
	}
	if err != nil {
		return nil, err
	}
	if n.Category != "" && !slices.Contains(w.Rules.Categories(), n.Category) {
		return nil, command.Fail(http.StatusUnprocessableEntity, "invalid_field", "category",
			fmt.Sprintf("category %q is not one of %s", n.Category, strings.Join(w.Rules.Categories(), ", ")))
	}
	d := w.Rules.Classify(triage.Input{
		Subject: n.Subject, Body: n.Body, Category: n.Category, Severity: n.Severity,
		Tier: prof.Tier, SLAClass: prof.SLAClass, DFY: prof.DFY,
	})
	if n.Origin == store.TicketAutomatic {
		// The incident chose, not a customer: say so in the decision.
		for i, r := range d.FiredRules {
			switch r {
			case triage.FiredCustomerCategory:
				d.FiredRules[i] = FiredIncidentCategory
			case triage.FiredCustomerSeverity:
				d.FiredRules[i] = FiredIncidentSeverity
			}
		}
	}
	decision, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	t := &store.Ticket{
		ID: n.ID, AccountID: n.AccountID, Subject: n.Subject, Status: store.TicketOpen, Category: d.Category,
		Severity: d.Severity, Queue: d.Queue, Tier: prof.Tier, SLAClass: prof.SLAClass, DFY: prof.DFY, Origin: n.Origin,
		IncidentKey: n.IncidentKey, Triage: decision, OpenedAt: n.At, CreatedAt: n.At, UpdatedAt: n.At,
		Pauses: []store.TicketPause{},
	}
	w.refresh(t, n.At)
	inserted, err := tx.InsertTicket(ctx, *t)
	if err != nil || !inserted {
		return nil, err
	}
	if _, err := tx.AppendTicketMessage(ctx, store.TicketMessage{TicketID: t.ID, AccountID: t.AccountID, Author: n.Author, KeyID: n.KeyID, Body: n.Body, At: n.At}); err != nil {
		return nil, err
	}
	detail := map[string]any{"triage": d, "tier": prof.Tier, "sla_class": prof.SLAClass, "dfy": prof.DFY,
		"first_response_due": t.FirstResponseDue, "resolution_due": t.ResolutionDue}
	for k, v := range n.Detail {
		detail[k] = v
	}
	if err := history(ctx, tx, t, "opened", n.Actor, n.At, detail); err != nil {
		return nil, err
	}
	if err := w.emit(ctx, tx, n.Correlation, events.TicketOpened{
		Ticket: ticketAt(t, n.At), FirstResponseDue: t.FirstResponseDue, ResolutionDue: t.ResolutionDue,
		FiredRules: d.FiredRules, IncidentKey: n.IncidentKey,
	}); err != nil {
		return nil, err
	}
	w.Metrics.ticketOpened(t.Origin, t.Queue)
	bus.Logger(ctx).WithFields(logrus.Fields{"account_id": t.AccountID, "ticket_id": t.ID, "category": t.Category,
		"severity": t.Severity, "queue": t.Queue, "origin": t.Origin}).Info("ticket opened")
	return t, nil
}

// The pseudo-rules an automatic ticket's decision lists for the category
// and severity its incident chose.
const (
	FiredIncidentCategory = "incident.category"
	FiredIncidentSeverity = "incident.severity"
)

func actorOf(e *command.Envelope) string { return e.Actor() }

func (w *Worker) createTicket(_ context.Context, e *command.Envelope, p CreateTicketParams) (command.Effect, error) {
	if p.AccountID == "" {
		p.AccountID = e.AccountID
	}
	if p.AccountID == "" || p.AccountID != e.AccountID {
		return nil, command.Fail(http.StatusUnprocessableEntity, "invalid_field", "account_id", "the ticket's account_id does not match the command's account")
	}
	at := w.commandTime(e)
	origin, author := store.TicketByCustomer, store.AuthorCustomer
	if p.ByOperator {
		origin, author = store.TicketByAgent, store.AuthorAgent
	}
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		t, err := w.open(ctx, tx, newTicket{
			ID: TicketIDFor(e.ID), AccountID: p.AccountID, Subject: p.Subject, Body: p.Body, Category: p.Category,
			Severity: p.Severity, Origin: origin, Author: author, KeyID: e.KeyID, Actor: actorOf(e), At: at,
			Correlation: e.ID, Detail: map[string]any{"command_id": e.ID},
		})
		if err != nil {
			return command.Outcome{}, err
		}
		if t == nil {
			// Inserted by an earlier attempt of this very command whose
			// outcome was not recorded: read it.
			if t, err = tx.LockTicket(ctx, TicketIDFor(e.ID)); err != nil {
				return command.Outcome{}, err
			}
		}
		return command.Outcome{Status: http.StatusCreated, Result: NewTicketView(t, at)}, nil
	}, nil
}

// lockOwn locks the command's ticket, failing with 404 when it does not
// exist or belongs to another account than the command's.
func lockOwn(ctx context.Context, tx *store.Tx, e *command.Envelope, id string) (*store.Ticket, error) {
	t, err := tx.LockTicket(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && t.AccountID != e.AccountID) {
		return nil, command.Fail(http.StatusNotFound, "not_found", "id", "no ticket "+id)
	}
	return t, err
}

func (w *Worker) addMessage(_ context.Context, e *command.Envelope, p AddMessageParams) (command.Effect, error) {
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		t, err := lockOwn(ctx, tx, e, p.TicketID)
		if err != nil {
			return command.Outcome{}, err
		}
		if t.Status == store.TicketClosed {
			return command.Outcome{}, command.Fail(http.StatusConflict, "ticket_closed", "status",
				"the ticket is closed; reopen it (status open) to write to it")
		}
		at := notBefore(w.commandTime(e), lastChange(t))
		author := store.AuthorCustomer
		if p.ByOperator {
			author = store.AuthorAgent
		}
		id, err := tx.AppendTicketMessage(ctx, store.TicketMessage{TicketID: t.ID, AccountID: t.AccountID, Author: author, KeyID: e.KeyID, Body: p.Body, At: at})
		if err != nil {
			return command.Outcome{}, err
		}
		detail := map[string]any{"message_id": id, "author": author, "command_id": e.ID}
		firstResponse := false
		if author == store.AuthorAgent && t.FirstResponseAt == nil {
			fr := at
			t.FirstResponseAt, firstResponse = &fr, true
			detail["first_response"] = true
		}
		// A customer answering a ticket that waits on them, or one that
		// was resolved, brings it back to the agents.
		from := t.Status
		reopened := false
		if author == store.AuthorCustomer && (t.Status == store.TicketPending || t.Status == store.TicketResolved) {
			if reopened, err = transition(t, store.TicketOpen, at); err != nil {
				return command.Outcome{}, err
			}
			detail["status"], detail["previous_status"] = t.Status, from
		}
		t.UpdatedAt = at
		w.refresh(t, at)
		if err := tx.UpdateTicket(ctx, *t); err != nil {
			return command.Outcome{}, err
		}
		if err := history(ctx, tx, t, "message_added", actorOf(e), at, detail); err != nil {
			return command.Outcome{}, err
		}
		if err := w.emit(ctx, tx, e.ID, events.MessageAdded{
			Ticket: ticketAt(t, at), MessageID: id, Author: author, FirstResponse: firstResponse,
		}); err != nil {
			return command.Outcome{}, err
		}
		if from != t.Status {
			if err := w.statusChanged(ctx, tx, e, t, from, reopened, at, "the customer answered"); err != nil {
				return command.Outcome{}, err
			}
		}
		return command.Outcome{Status: http.StatusCreated, Result: NewTicketView(t, at)}, nil
	}, nil
}

func (w *Worker) setStatus(_ context.Context, e *command.Envelope, p SetStatusParams) (command.Effect, error) {
	return func(ctx context.Context, tx *store.Tx) (command.Outcome, error) {
		t, err := lockOwn(ctx, tx, e, p.TicketID)
		if err != nil {
			return command.Outcome{}, err
		}
		at := notBefore(w.commandTime(e), lastChange(t))
		from := t.Status
		reopened, err := transition(t, p.Status, at)
		if err != nil {
			return command.Outcome{}, command.Fail(http.StatusConflict, "invalid_transition", "status",
				strings.TrimPrefix(err.Error(), ErrTransition.Error()+": "))
		}
		if from == t.Status {
			// Already there: nothing changes, and the answer says so.
			return command.Outcome{Status: http.StatusOK, Result: NewTicketView(t, at)}, nil
		}
		t.UpdatedAt = at
		w.refresh(t, at)
		if err := tx.UpdateTicket(ctx, *t); err != nil {
			return command.Outcome{}, err
		}
		if err := w.statusChanged(ctx, tx, e, t, from, reopened, at, p.Reason); err != nil {
			return command.Outcome{}, err
		}
		return command.Outcome{Status: http.StatusOK, Result: NewTicketView(t, at)}, nil
	}, nil
}

// statusChanged records a status change in the history and announces it:
// ticket_reopened for a reopening, ticket_updated otherwise.
func (w *Worker) statusChanged(ctx context.Context, tx *store.Tx, e *command.Envelope, t *store.Ticket, from string, reopened bool, at time.Time, reason string) error {
	kind := "status_changed"
	var ev events.Event = events.TicketUpdated{
		Ticket: ticketAt(t, at), PreviousStatus: from, FirstResponseDue: t.FirstResponseDue, ResolutionDue: t.ResolutionDue,
	}
	if reopened {
		kind = "reopened"
		ev = events.TicketReopened{
			Ticket: ticketAt(t, at), PreviousStatus: from, FirstResponseDue: t.FirstResponseDue, ResolutionDue: t.ResolutionDue,
		}
		w.Metrics.ticketReopened()
	}
	detail := map[string]any{"status": t.Status, "previous_status": from, "command_id": e.ID}
	if reason != "" {
		detail["reason"] = reason
	}
	if err := history(ctx, tx, t, kind, actorOf(e), at, detail); err != nil {
		return err
	}
	return w.emit(ctx, tx, e.ID, ev)
}
