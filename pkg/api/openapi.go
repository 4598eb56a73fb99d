package api

import (
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3 document of Levqor's whole HTTP API, ingest's
// routes included. A test keeps it and the registered routes equal.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI document, served at GET /openapi.json.
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}
