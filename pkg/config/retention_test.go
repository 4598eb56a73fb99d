package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/config"
)

func TestRetentionSettings(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.Empty(t, c.BlobDir, "dev mode fills it under the data dir; production names it")
	require.InDelta(t, 0.5, c.SweepMaxShare, 0)
	require.Equal(t, 7*24*time.Hour, c.TrashGrace)

	c, err = config.FromEnv(env(map[string]string{"LEVQOR_BLOB_DIR": "/var/lib/levqor/blobs", "LEVQOR_SWEEP_MAX_SHARE": "0.25", "LEVQOR_TRASH_GRACE": "72h"}))
	require.NoError(t, err)
	require.Equal(t, "/var/lib/levqor/blobs", c.BlobDir)
	require.InDelta(t, 0.25, c.SweepMaxShare, 0)
	require.Equal(t, 72*time.Hour, c.TrashGrace)
	require.NoError(t, c.ValidateFor(config.RoleDev))

	for variable, value := range map[string]string{
		"LEVQOR_SWEEP_MAX_SHARE": "0",
		"LEVQOR_TRASH_GRACE":     "-1h",
	} {
		c, err := config.FromEnv(env(map[string]string{variable: value}))
		require.NoError(t, err)
		require.ErrorContains(t, c.ValidateFor(config.RoleDev), variable)
	}
	c, err = config.FromEnv(env(map[string]string{"LEVQOR_SWEEP_MAX_SHARE": "1.5"}))
	require.NoError(t, err)
	require.ErrorContains(t, c.ValidateFor(config.RoleWorkers), "LEVQOR_SWEEP_MAX_SHARE")
	_, err = config.FromEnv(env(map[string]string{"LEVQOR_TRASH_GRACE": "a week"}))
	require.ErrorContains(t, err, "LEVQOR_TRASH_GRACE")
}
