package api_test

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/api"
	"github.com/levqor/levqor/pkg/store/storetest"
)

type openAPIDoc struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Security   []map[string][]string                 `json:"security"`
	Components map[string]map[string]json.RawMessage `json:"components"`
}

type operation struct {
	Security  *[]map[string][]string    `json:"security"`
	Responses map[string]map[string]any `json:"responses"`
}

// TestOpenAPIDescribesEveryRoute keeps /openapi.json true: every route
// ingest serves is documented, and everything documented is served.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storetest.SQLite(t), options{noStripe: true})
	r := h.do(t, http.MethodGet, "/openapi.json", "", nil)
	require.Equal(t, http.StatusOK, r.status, "the document is public")
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	require.JSONEq(t, string(api.OpenAPI()), string(r.body))
	var doc openAPIDoc
	r.json(t, &doc)
	require.True(t, strings.HasPrefix(doc.OpenAPI, "3."), "OpenAPI 3")

	var routes []string
	for _, p := range h.ingest.Routes() {
		method, path, ok := strings.Cut(p, " ")
		require.True(t, ok, "route %q has a method", p)
		routes = append(routes, method+" "+path)
	}
	for _, must := range []string{"POST /webhooks/stripe", "GET /admin/stripe-events/{id}", "GET /healthz", "GET /readyz", "GET /metrics", "GET /openapi.json"} {
		require.Contains(t, routes, must, "ingest serves it")
	}
	var documented []string
	for path, item := range doc.Paths {
		for method, raw := range item {
			if method == "parameters" {
				continue
			}
			documented = append(documented, strings.ToUpper(method)+" "+path)
			var op operation
			require.NoError(t, json.Unmarshal(raw, &op))
			public := op.Security != nil && len(*op.Security) == 0
			if !public {
				require.Contains(t, op.Responses, "401", "%s %s needs a key, so it documents 401", method, path)
				require.Contains(t, op.Responses, "429", "%s %s is rate limited", method, path)
			}
		}
	}
	sort.Strings(routes)
	sort.Strings(documented)
	require.Equal(t, routes, documented, "the OpenAPI document and the routes must match")
}

// TestOpenAPIReferencesResolve: every $ref points at a component.
func TestOpenAPIReferencesResolve(t *testing.T) {
	t.Parallel()
	var doc openAPIDoc
	require.NoError(t, json.Unmarshal(api.OpenAPI(), &doc))
	var walk func(v any)
	n := 0
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				n++
				parts := strings.Split(strings.TrimPrefix(ref, "#/components/"), "/")
				require.Len(t, parts, 2, ref)
				require.Contains(t, doc.Components[parts[0]], parts[1], "dangling %s", ref)
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	var all any
	require.NoError(t, json.Unmarshal(api.OpenAPI(), &all))
	walk(all)
	require.Greater(t, n, 20)
}
