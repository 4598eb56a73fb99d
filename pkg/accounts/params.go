package accounts

import (
	"fmt"
	"net/http"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/levqor/levqor/pkg/command"
)

// Limits on account fields.
const (
	NameMaxLength  = 200
	EmailMaxLength = 254 // RFC 5321's limit on a path
)

// CreateParams are the parameters of accounts.create, the body of
// POST /v1/accounts.
type CreateParams struct {
	// Name is the customer's name.
	Name string `json:"name"`
	// ContactEmail is where Levqor writes to the customer.
	ContactEmail string `json:"contact_email"`
}

// Normalize trims surrounding white space.
func (p *CreateParams) Normalize() {
	p.Name = strings.TrimSpace(p.Name)
	p.ContactEmail = strings.TrimSpace(p.ContactEmail)
}

// Validate returns a 422 *command.Error naming the first bad field.
func (p *CreateParams) Validate() error {
	if err := validateName(p.Name); err != nil {
		return err
	}
	return validateEmail(p.ContactEmail)
}

// UpdateParams are the parameters of accounts.update, the body of
// PATCH /v1/accounts/{id}: the fields to change, at least one.
type UpdateParams struct {
	Name         *string `json:"name,omitempty"`
	ContactEmail *string `json:"contact_email,omitempty"`
}

// Normalize trims surrounding white space.
func (p *UpdateParams) Normalize() {
	if p.Name != nil {
		s := strings.TrimSpace(*p.Name)
		p.Name = &s
	}
	if p.ContactEmail != nil {
		s := strings.TrimSpace(*p.ContactEmail)
		p.ContactEmail = &s
	}
}

// Validate returns a 422 *command.Error naming the first bad field.
func (p *UpdateParams) Validate() error {
	if p.Name == nil && p.ContactEmail == nil {
		return command.Fail(http.StatusUnprocessableEntity, "invalid_field", "name",
			"nothing to change: give name, contact_email or both")
	}
	if p.Name != nil {
		if err := validateName(*p.Name); err != nil {
			return err
		}
	}
	if p.ContactEmail != nil {
		return validateEmail(*p.ContactEmail)
	}
	return nil
}

func validateName(name string) error {
	switch {
	case name == "":
		return invalid("name", "name is required")
	case !utf8.ValidString(name):
		return invalid("name", "name must be valid UTF-8")
	case utf8.RuneCountInString(name) > NameMaxLength:
		return invalid("name", fmt.Sprintf("name is longer than %d characters", NameMaxLength))
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return invalid("name", "name must not contain control characters")
	}
	return nil
}

func validateEmail(email string) error {
	if email == "" {
		return invalid("contact_email", "contact_email is required")
	}
	if len(email) > EmailMaxLength {
		return invalid("contact_email", fmt.Sprintf("contact_email is longer than %d characters", EmailMaxLength))
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || addr.Name != "" {
		return invalid("contact_email", "contact_email must be a plain address such as ops@example.com")
	}
	at := strings.LastIndexByte(email, '@')
	domain := email[at+1:]
	if !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") ||
		strings.ContainsAny(email, " \t\r\n") {
		return invalid("contact_email", "contact_email must be a plain address such as ops@example.com")
	}
	return nil
}

func invalid(field, msg string) error {
	return command.Fail(http.StatusUnprocessableEntity, "invalid_field", field, msg)
}
