package command

import (
	"fmt"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"
)

// CheckText checks a one-line text parameter (a name, a reason): valid
// UTF-8, at most max characters, no control characters, and not empty
// when required. It fails with 422 invalid_field naming field.
func CheckText(field, s string, max int, required bool) error {
	invalid := func(msg string) error { return Fail(http.StatusUnprocessableEntity, "invalid_field", field, msg) }
	switch {
	case s == "" && required:
		return invalid(field + " is required")
	case !utf8.ValidString(s):
		return invalid(field + " must be valid UTF-8")
	case utf8.RuneCountInString(s) > max:
		return invalid(fmt.Sprintf("%s is longer than %d characters", field, max))
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return invalid(field + " must not contain control characters")
	}
	return nil
}
