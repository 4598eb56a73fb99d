package levqor_test

import (
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
	var code strings.Builder
	require.NoError(t, filepath.WalkDir("pkg", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		code.Write(b)
		return err
	}))
	var names []string
	for _, m := range regexp.MustCompile(`\blevqor_[a-z_]+`).FindAllString(string(rules), -1) {
		if !slices.Contains(names, m) {
			names = append(names, m)
		}
	}
	require.GreaterOrEqual(t, len(names), 5, "the rules watch Levqor's metrics")
	for _, name := range names {
		require.Contains(t, code.String(), `"`+name+`"`, "alerts.yml watches %s, which no package exports", name)
	}
}
