package levqor_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const modulePath = "github.com/levqor/levqor"

// layers orders Levqor's packages, lowest first: a package may import
// packages of lower layers, never of a higher one. Within a layer, imports
// are allowed except in "domains", where a domain talks to another only
// through events (pkg/events) and never imports it. A package not listed
// takes the layer of its nearest listed parent directory
// (pkg/store/storetest is in store's layer).
//
// scheduler sits with the runtime, not with the domains: it imports only
// the bus, and every domain's tick handlers are built on its Tick and
// Dispatch, as their command handlers are built on pkg/command.
//
// config sits with the processes: each component owns its defaults
// (XxxDefault constants, filled in with cmp.Or), and config, which reads
// the environment for the processes, refers to those constants instead of
// keeping a second copy, so it must be above every component it
// configures.
var layers = []struct {
	name     string
	packages []string
}{
	{"libraries and pure engines", []string{
		"pkg/archive", "pkg/repo", "pkg/retention", "pkg/blob", "pkg/stripeevent", "pkg/catalog", "pkg/strictyaml",
		"pkg/httpjson", "pkg/embeddednats", "pkg/netfault", "pkg/stripesim", "pkg/stripemock", "pkg/stripedev", "pkg/loadgen",
		"pkg/telemetry", "pkg/keys", "pkg/chaos", "pkg/support/sla", "pkg/support/triage",
	}},
	{"store and bus", []string{"pkg/store", "pkg/bus", "schema"}},
	{"runtime", []string{
		"pkg/command", "pkg/events", "pkg/stripeapi", "pkg/inbox", "pkg/outbox", "pkg/auth", "pkg/people", "pkg/scheduler", "pkg/control",
	}},
	{"domains", []string{"pkg/accounts", "pkg/billing", "pkg/backups", "pkg/support", "pkg/housekeeping", "pkg/notify"}},
	{"api and operations", []string{"pkg/api", "pkg/ops", "pkg/console"}},
	{"processes", []string{"pkg/ingest", "pkg/config", "pkg/service"}},
	{"command line", []string{"pkg/cli"}},
	{"mains", []string{"cmd", "bench"}},
}

// layerOf returns the index of rel's layer (rel is a path inside the
// module) and whether it was found.
func layerOf(rel string) (int, bool) {
	best, bestLen := -1, -1
	for i, l := range layers {
		for _, p := range l.packages {
			if (rel == p || strings.HasPrefix(rel, p+"/")) && len(p) > bestLen {
				best, bestLen = i, len(p)
			}
		}
	}
	return best, best >= 0
}

// TestLayering fails when a package imports one from a higher layer, or a
// domain imports another domain: the walls that keep the HTTP layer above
// the domains it serves and the domains independent of each other.
func TestLayering(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list: %s", stderr.String())

	var violations []string
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else {
			require.NoError(t, err)
		}
		rel, ok := strings.CutPrefix(p.ImportPath, modulePath+"/")
		if !ok {
			continue // the root package holds only these tests
		}
		from, ok := layerOf(rel)
		if !ok {
			violations = append(violations, fmt.Sprintf("%s is in no layer: add it to layers in layers_test.go", rel))
			continue
		}
		for _, imp := range p.Imports {
			irel, ok := strings.CutPrefix(imp, modulePath+"/")
			if !ok {
				continue
			}
			to, ok := layerOf(irel)
			switch {
			case !ok:
				violations = append(violations, fmt.Sprintf("%s imports %s, which is in no layer", rel, irel))
			case to > from:
				violations = append(violations, fmt.Sprintf("%s (%s) imports %s from a higher layer (%s)",
					rel, layers[from].name, irel, layers[to].name))
			case to == from && layers[from].name == "domains" && domainOf(rel) != domainOf(irel):
				violations = append(violations, fmt.Sprintf("domain %s imports domain %s: domains talk through pkg/events",
					rel, irel))
			}
		}
	}
	slices.Sort(violations)
	require.Empty(t, violations, "layering violations:\n%s", strings.Join(violations, "\n"))
}

// domainOf is the domain package a path belongs to: pkg/support/x → pkg/support.
func domainOf(rel string) string {
	parts := strings.SplitN(rel, "/", 3)
	if len(parts) < 2 {
		return rel
	}
	return parts[0] + "/" + parts[1]
}

// TestLayerOf checks the layer lookup the layering test relies on, so that
// a typo in layers cannot make the test pass vacuously.
func TestLayerOf(t *testing.T) {
	t.Parallel()
	for rel, want := range map[string]string{
		"pkg/store":            "store and bus",
		"pkg/store/storetest":  "store and bus",
		"pkg/support":          "domains",
		"pkg/support/triage":   "libraries and pure engines",
		"pkg/command":          "runtime",
		"pkg/api":              "api and operations",
		"cmd/levqor":           "mains",
		"pkg/billing/internal": "domains",
	} {
		i, ok := layerOf(rel)
		require.True(t, ok, rel)
		require.Equal(t, want, layers[i].name, rel)
	}
	_, ok := layerOf("pkg/nosuch")
	require.False(t, ok)
}
