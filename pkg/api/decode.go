package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
)

// DecodeError is why a request body was refused, in the API's error shape:
// a status (400, 413, 415), a stable code, a message and the field at fault.
type DecodeError struct {
	Status  int
	Code    string
	Message string
	Field   string
}

var _ error = (*DecodeError)(nil)

// Error formats the refusal for logs and tests.
func (e *DecodeError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s (field %s)", e.Code, e.Message, e.Field)
	}
	return e.Code + ": " + e.Message
}

// DecodeJSON decodes body, which must be exactly one JSON object, into v, a
// pointer to a struct. Unknown fields, values of the wrong type, trailing
// data and anything but an object are refused with a *DecodeError (400)
// that names the field where there is one. It is the parser of every
// request body and faces the internet: it must never panic.
func DecodeJSON(body []byte, v any) error {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return &DecodeError{Status: http.StatusBadRequest, Code: "empty_body", Message: "the request body is empty; send a JSON object"}
	}
	if trimmed[0] != '{' {
		return &DecodeError{Status: http.StatusBadRequest, Code: "invalid_json", Message: "the request body must be a JSON object"}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, v)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &DecodeError{Status: http.StatusBadRequest, Code: "invalid_json", Message: "unexpected data after the JSON object"}
	}
	return nil
}

func decodeError(err error, v any) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return &DecodeError{Status: http.StatusBadRequest, Code: "invalid_json",
			Message: fmt.Sprintf("malformed JSON at byte %d: %s", syntax.Offset, syntax.Error())}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &DecodeError{Status: http.StatusBadRequest, Code: "invalid_json", Message: "the JSON object is incomplete"}
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return &DecodeError{Status: http.StatusBadRequest, Code: "invalid_json", Message: "the request body must be a JSON object"}
		}
		return &DecodeError{Status: http.StatusBadRequest, Code: "invalid_type", Field: field,
			Message: fmt.Sprintf("%s must be %s, not %s", field, jsonKind(typ.Type), typ.Value)}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.TrimSuffix(strings.TrimPrefix(name, `"`), `"`)
		field := name
		if field == "" {
			field = `""` // a key that is the empty string still gets named
		}
		return &DecodeError{Status: http.StatusBadRequest, Code: "unknown_field", Field: field,
			Message: fmt.Sprintf("unknown field %q; known fields: %s", name, strings.Join(jsonFields(v), ", "))}
	}
	return &DecodeError{Status: http.StatusBadRequest, Code: "invalid_json", Message: err.Error()}
}

// jsonKind names a Go type the way a JSON client thinks of it.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "a value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "an object"
	}
}

// jsonFields lists the JSON names of the struct v points to.
func jsonFields(v any) []string {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

// readJSON checks the Content-Type, reads the body within the size limit
// and decodes it with DecodeJSON, answering the error itself; it reports
// whether v was filled.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeError(w, &DecodeError{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Field: "Content-Type",
			Message: "send the body as JSON with Content-Type: application/json"})
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, &DecodeError{Status: http.StatusRequestEntityTooLarge, Code: "payload_too_large",
				Message: fmt.Sprintf("the request body exceeds %d bytes", s.cfg.MaxBodyBytes)})
			return false
		}
		writeError(w, &DecodeError{Status: http.StatusBadRequest, Code: "bad_request", Message: "could not read the request body"})
		return false
	}
	if err := DecodeJSON(body, v); err != nil {
		writeError(w, err)
		return false
	}
	return true
}
