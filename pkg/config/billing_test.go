package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/catalog"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/service"
)

func TestCatalogIsValidatedAtStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "catalog.yaml")
	require.NoError(t, os.WriteFile(good, catalog.Example, 0o600))
	broken := strings.Replace(string(catalog.Example), "price_levqor_growth_monthly", "price_levqor_starter_monthly", 1)
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte(broken), 0o600))

	base := map[string]string{
		"LEVQOR_NATS_URL": "nats://127.0.0.1:4222", "LEVQOR_DATABASE_URL": "sqlite:x.db", "STRIPE_WEBHOOK_SECRET": "whsec_x",
		"LEVQOR_BUS_KEY": "abababababababababababababababababababababababababababababababab", "LEVQOR_MASTER_KEYS": "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{k: v}
		for k, v := range base {
			m[k] = v
		}
		return m
	}

	t.Run("DefaultIsTheShippedExample", func(t *testing.T) {
		c, err := config.FromEnv(env(base))
		require.NoError(t, err)
		require.Empty(t, c.Catalog)
		for _, role := range []config.Role{config.RoleIngest, config.RoleWorkers, config.RoleDev} {
			require.NoError(t, check(c, role), role)
		}
	})
	t.Run("AFileOfOurOwn", func(t *testing.T) {
		c, err := config.FromEnv(env(with("LEVQOR_CATALOG", good)))
		require.NoError(t, err)
		require.Equal(t, good, c.Catalog)
		require.NoError(t, check(c, config.RoleWorkers))
	})
	for _, role := range []config.Role{config.RoleIngest, config.RoleWorkers, config.RoleDev} {
		t.Run("BadFileFails"+strings.ToUpper(string(role[:1]))+string(role[1:]), func(t *testing.T) {
			c, err := config.FromEnv(env(with("LEVQOR_CATALOG", bad)))
			require.NoError(t, err)
			err = check(c, role)
			require.ErrorContains(t, err, "LEVQOR_CATALOG")
			require.ErrorContains(t, err, "tiers.starter.prices.monthly", "names the entry")
			require.ErrorContains(t, err, "price_levqor_starter_monthly")
		})
	}
	t.Run("MissingFile", func(t *testing.T) {
		c, err := config.FromEnv(env(with("LEVQOR_CATALOG", filepath.Join(dir, "nope.yaml"))))
		require.NoError(t, err)
		require.ErrorContains(t, check(c, config.RoleDev), "LEVQOR_CATALOG")
	})
	t.Run("NotNeededByTheScheduler", func(t *testing.T) {
		c, err := config.FromEnv(env(with("LEVQOR_CATALOG", bad)))
		require.NoError(t, err)
		require.NoError(t, check(c, config.RoleScheduler))
	})
}

func TestDunningGrace(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.Equal(t, 168*time.Hour, c.DunningGrace, "a week by default")

	c, err = config.FromEnv(env(map[string]string{"LEVQOR_DUNNING_GRACE": "72h"}))
	require.NoError(t, err)
	require.Equal(t, 72*time.Hour, c.DunningGrace)
	require.NoError(t, check(c, config.RoleDev))

	_, err = config.FromEnv(env(map[string]string{"LEVQOR_DUNNING_GRACE": "7d"}))
	require.ErrorContains(t, err, "LEVQOR_DUNNING_GRACE")

	c, err = config.FromEnv(env(map[string]string{"LEVQOR_DUNNING_GRACE": "-1h"}))
	require.NoError(t, err)
	require.ErrorContains(t, check(c, config.RoleDev), "LEVQOR_DUNNING_GRACE")
}

// check is what a process runs at start: the configuration and the files
// it names (service.Check).
func check(c config.Config, role config.Role) error {
	_, err := service.Check(c, role)
	return err
}
