package levqor_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const alertsDir = "deploy/prometheus"

// TestAlertRules checks the shipped alert rules with promtool and runs
// their unit tests: each alert fires on synthetic series showing its
// condition and stays quiet on healthy ones.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	promtool := requireTool(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = alertsDir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "promtool %s:\n%s", strings.Join(args, " "), out)
		require.Contains(t, string(out), "SUCCESS")
	}
}

// TestAlertRulesWatchMetricsThatExist fails when an alert names a levqor_
// metric no Levqor process exports (a rename would silence it for ever).
func TestAlertRulesWatchMetricsThatExist(t *testing.T) {
	t.Parallel()
	rules, err := os.ReadFile(filepath.Join(alertsDir, "alerts.yml"))
	require.NoError(t, err)
	code := exportedCode(t)
	var names []string
	for _, m := range regexp.MustCompile(`\blevqor_[a-z_]+`).FindAllString(string(rules), -1) {
		if !slices.Contains(names, m) {
			names = append(names, m)
		}
	}
	require.GreaterOrEqual(t, len(names), 5, "the rules watch Levqor's metrics")
	for _, name := range names {
		require.Contains(t, code, `"`+name+`"`, "alerts.yml watches %s, which no package exports", name)
	}
}

// TestDashboard checks the shipped Grafana dashboard: it is JSON Grafana
// can import, every panel queries metrics Levqor exports, and every query
// is valid PromQL (promtool parses each as a recording rule).
func TestDashboard(t *testing.T) {
	t.Parallel()
	promtool := requireTool(t, "promtool")
	b, err := os.ReadFile("deploy/grafana/levqor.json")
	require.NoError(t, err)
	var dash struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(b, &dash))
	require.NotEmpty(t, dash.UID)
	require.NotEmpty(t, dash.Panels)
	code := exportedCode(t)
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, p := range dash.Panels {
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			names := regexp.MustCompile(`\blevqor_[a-z_]+`).FindAllString(tg.Expr, -1)
			require.NotEmpty(t, names, "panel %q queries no Levqor metric", p.Title)
			for _, name := range names {
				base := strings.TrimSuffix(name, "_bucket")
				require.Contains(t, code, `"`+base+`"`, "panel %q queries %s, which no package exports", p.Title, name)
			}
			n++
			expr, err := json.Marshal(tg.Expr) // a JSON string is a valid YAML scalar
			require.NoError(t, err)
			fmt.Fprintf(&rules, "      - record: levqor:dashboard:%d\n        expr: %s\n", n, expr)
		}
	}
	path := filepath.Join(t.TempDir(), "dashboard_rules.yml")
	require.NoError(t, os.WriteFile(path, []byte(rules.String()), 0o644))
	out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
	require.NoError(t, err, "a dashboard query is not valid PromQL:\n%s", out)
}

// exportedCode is the source of every non-test Go file under pkg/, where
// each exported metric's name appears as a string literal.
func exportedCode(t *testing.T) string {
	t.Helper()
	var code strings.Builder
	require.NoError(t, filepath.WalkDir("pkg", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		code.Write(b)
		return err
	}))
	return code.String()
}
