package support

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/levqor/levqor/pkg/command"
	"github.com/levqor/levqor/pkg/store"
	"github.com/levqor/levqor/pkg/support/sla"
)

// Limits on the fields of tickets and messages.
const (
	SubjectMaxLength = 200
	BodyMaxLength    = 20000
	ReasonMaxLength  = 500
)

var categoryRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// CreateTicketParams are the parameters of support.create_ticket, the
// body of POST /v1/tickets.
type CreateTicketParams struct {
	// AccountID is the account the ticket is about. Operators must give
	// it; an account key may leave it out (or give its own).
	AccountID string `json:"account_id,omitempty"`
	// Subject and Body are the customer's words, read by triage.
	Subject string `json:"subject"`
	Body    string `json:"body"`
	// Category and Severity are the customer's own choice, optional. The
	// category must be one of the rules file's categories (the worker
	// checks it against the file it runs with).
	Category string `json:"category,omitempty"`
	Severity string `json:"severity,omitempty"`
	// ByOperator is set by the API: an operator (agent) opened the
	// ticket on the customer's behalf.
	ByOperator bool `json:"by_operator,omitempty"`
}

// Normalize trims white space and lower-cases the choices.
func (p *CreateTicketParams) Normalize() {
	p.AccountID = strings.TrimSpace(p.AccountID)
	p.Subject = strings.TrimSpace(p.Subject)
	p.Body = strings.TrimSpace(p.Body)
	p.Category = strings.ToLower(strings.TrimSpace(p.Category))
	p.Severity = strings.ToLower(strings.TrimSpace(p.Severity))
}

// Validate returns a 422 *command.Error naming the first bad field.
func (p *CreateTicketParams) Validate() error {
	if p.AccountID != "" && !command.ValidID(p.AccountID, store.AccountIDPrefix) {
		return invalid("account_id", "account_id must be an account id (acc_…)")
	}
	if err := validateText("subject", p.Subject, SubjectMaxLength, true, false); err != nil {
		return err
	}
	if err := validateText("body", p.Body, BodyMaxLength, true, true); err != nil {
		return err
	}
	if p.Category != "" && !categoryRe.MatchString(p.Category) {
		return invalid("category", "category must be a lower-case word such as billing, backup_failure or data_loss")
	}
	if p.Severity != "" && !slices.Contains(sla.Severities, p.Severity) {
		return invalid("severity", fmt.Sprintf("severity must be one of %s", strings.Join(sla.Severities, ", ")))
	}
	return nil
}

// MessageBody is the body of POST /v1/tickets/{id}/messages.
type MessageBody struct {
	Body string `json:"body"`
}

// AddMessageParams are the parameters of support.add_message.
type AddMessageParams struct {
	// TicketID is the ticket answered.
	TicketID string `json:"ticket_id"`
	MessageBody
	// ByOperator is set by the API: operators write as agents.
	ByOperator bool `json:"by_operator,omitempty"`
}

// Normalize trims the body.
func (p *AddMessageParams) Normalize() { p.Body = strings.TrimSpace(p.Body) }

// Validate returns a 422 *command.Error naming the first bad field.
func (p *AddMessageParams) Validate() error {
	if !command.ValidID(p.TicketID, TicketIDPrefix) {
		return invalid("ticket_id", "ticket_id must be a ticket id (tkt_…)")
	}
	return validateText("body", strings.TrimSpace(p.Body), BodyMaxLength, true, true)
}

// StatusBody is the body of POST /v1/tickets/{id}/status.
type StatusBody struct {
	// Status is the new status: open (reopen, or end pending), pending,
	// resolved or closed.
	Status string `json:"status"`
	// Reason is an optional note kept in the ticket's history.
	Reason string `json:"reason,omitempty"`
}

// SetStatusParams are the parameters of support.set_status.
type SetStatusParams struct {
	// TicketID is the ticket changed.
	TicketID string `json:"ticket_id"`
	StatusBody
	// ByOperator is set by the API: only agents may set pending.
	ByOperator bool `json:"by_operator,omitempty"`
}

// Normalize lower-cases the status and trims the reason.
func (p *SetStatusParams) Normalize() {
	p.Status = strings.ToLower(strings.TrimSpace(p.Status))
	p.Reason = strings.TrimSpace(p.Reason)
}

// Validate returns a 422 *command.Error naming the first bad field.
func (p *SetStatusParams) Validate() error {
	if !command.ValidID(p.TicketID, TicketIDPrefix) {
		return invalid("ticket_id", "ticket_id must be a ticket id (tkt_…)")
	}
	if !slices.Contains(store.TicketStatuses, p.Status) {
		return invalid("status", fmt.Sprintf("status must be one of %s", strings.Join(store.TicketStatuses, ", ")))
	}
	if p.Status == store.TicketPending && !p.ByOperator {
		return command.Fail(http.StatusForbidden, "forbidden", "status",
			"only an agent (operator key) can set a ticket pending: it stops the resolution clock while waiting on the customer")
	}
	return validateText("reason", p.Reason, ReasonMaxLength, false, false)
}

// validateText checks a text field; multiline allows line breaks and tabs.
func validateText(field, s string, max int, required, multiline bool) error {
	switch {
	case s == "" && required:
		return invalid(field, field+" is required")
	case !utf8.ValidString(s):
		return invalid(field, field+" must be valid UTF-8")
	case utf8.RuneCountInString(s) > max:
		return invalid(field, fmt.Sprintf("%s is longer than %d characters", field, max))
	case strings.IndexFunc(s, func(r rune) bool {
		return unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\r' || r == '\t'))
	}) >= 0:
		return invalid(field, field+" must not contain control characters")
	}
	return nil
}

func invalid(field, msg string) error {
	return command.Fail(http.StatusUnprocessableEntity, "invalid_field", field, msg)
}
