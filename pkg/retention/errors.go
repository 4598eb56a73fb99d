package retention

import "fmt"

// FieldError is invalid input that names the field at fault, so a person
// reading the CLI's message, or an API answer in httpjson's error shape,
// can point at it. Field uses the JSON names: "keep_daily",
// "keep_tags[1]", "snapshots[3].time". It is empty when the input as a
// whole is at fault (not JSON at all, say).
type FieldError struct {
	Field   string
	Message string
}

var _ error = (*FieldError)(nil)

// Error reads "<field>: <message>".
func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

func fieldErr(field, format string, args ...any) *FieldError {
	if len(args) == 0 {
		return &FieldError{Field: field, Message: format}
	}
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}
