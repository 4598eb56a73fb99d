package support_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/service"
)

// TestRulesFileIsCheckedAtStart: a workers process with a broken
// LEVQOR_SUPPORT_RULES refuses to start, naming the variable, the file and
// the field; unset, the shipped rules are used.
func TestRulesFileIsCheckedAtStart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	require.NoError(t, os.WriteFile(path, []byte("triage:\n  categories: [other]\n  default_category: misc\n"), 0o600))
	vars := map[string]string{"LEVQOR_NATS_URL": "nats://127.0.0.1:4222", "LEVQOR_DATABASE_URL": "sqlite:x.db", "LEVQOR_SUPPORT_RULES": path,
		"LEVQOR_BUS_KEY": strings.Repeat("ab", 32), "LEVQOR_MASTER_KEYS": strings.Repeat("cd", 32)}
	cfg, err := config.FromEnv(func(k string) string { return vars[k] })
	require.NoError(t, err)
	require.Equal(t, path, cfg.SupportRules)
	_, err = service.Check(cfg, config.RoleWorkers)
	require.ErrorContains(t, err, "LEVQOR_SUPPORT_RULES "+path)
	require.ErrorContains(t, err, "triage.default_category")
	_, err = service.Check(cfg, config.RoleDev)
	require.ErrorContains(t, err, "LEVQOR_SUPPORT_RULES")

	delete(vars, "LEVQOR_SUPPORT_RULES")
	cfg, err = config.FromEnv(func(k string) string { return vars[k] })
	require.NoError(t, err)
	files, err := service.Check(cfg, config.RoleWorkers)
	require.NoError(t, err)
	require.NotNil(t, files.Rules, "unset, the shipped rules are loaded")
}
