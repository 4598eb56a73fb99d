// Package httpjson writes Levqor's JSON responses and its one error shape,
// {"error": {"code": …, "message": …, "field": …}}, used by every endpoint.
package httpjson

import (
	"encoding/json"
	"net/http"
)

// ErrorBody is the error shape of every Levqor API response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong: a stable machine-readable code, a
// message for people, and the request field at fault where there is one.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// Write sends v as JSON with status.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Error sends the error shape with status.
func Error(w http.ResponseWriter, status int, code, message, field string) {
	Write(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: message, Field: field}})
}
