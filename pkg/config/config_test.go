package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/api"
	"github.com/levqor/levqor/pkg/config"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaultsMakeDevModeValid(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.NoError(t, c.ValidateFor(config.RoleDev))
	require.Equal(t, ".levqor", c.DataDir)
	require.Equal(t, "127.0.0.1:8080", c.HTTPAddr)
	require.Equal(t, "127.0.0.1:4223", c.DevNATSAddr)
	require.Equal(t, "levqor", c.Topology.Prefix)
	require.Equal(t, 5*time.Minute, c.WebhookTolerance)
	require.EqualValues(t, 1<<20, c.MaxBodyBytes)
	require.Equal(t, 15*time.Minute, c.BackupBusyWait)
}

func TestProductionRolesNameMissingVariables(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	err = c.ValidateFor(config.RoleIngest)
	require.ErrorContains(t, err, "LEVQOR_NATS_URL")
	require.ErrorContains(t, err, "LEVQOR_DATABASE_URL")
	require.ErrorContains(t, err, "STRIPE_WEBHOOK_SECRET")
	require.NotContains(t, err.Error(), "LEVQOR_ADMIN_TOKEN", "production accepts operator API keys, not the env token")
	err = c.ValidateFor(config.RoleScheduler)
	require.ErrorContains(t, err, "LEVQOR_NATS_URL")
	require.NotContains(t, err.Error(), "LEVQOR_DATABASE_URL")
}

func TestBadValuesNameTheVariable(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		env      map[string]string
		role     config.Role
		variable string
	}{
		"Integer":       {map[string]string{"LEVQOR_MAX_DELIVER": "five"}, config.RoleDev, "LEVQOR_MAX_DELIVER"},
		"Duration":      {map[string]string{"LEVQOR_WEBHOOK_TOLERANCE": "5 minutes"}, config.RoleDev, "LEVQOR_WEBHOOK_TOLERANCE"},
		"NATSScheme":    {map[string]string{"LEVQOR_NATS_URL": "http://x"}, config.RoleScheduler, "LEVQOR_NATS_URL"},
		"DBScheme":      {map[string]string{"LEVQOR_DATABASE_URL": "mysql://x", "LEVQOR_NATS_URL": "nats://x:4222"}, config.RoleWorkers, "LEVQOR_DATABASE_URL"},
		"Addr":          {map[string]string{"LEVQOR_HTTP_ADDR": "8080"}, config.RoleDev, "LEVQOR_HTTP_ADDR"},
		"LogFormat":     {map[string]string{"LEVQOR_LOG_FORMAT": "xml"}, config.RoleDev, "LEVQOR_LOG_FORMAT"},
		"Prefix":        {map[string]string{"LEVQOR_SUBJECT_PREFIX": "a b"}, config.RoleDev, "LEVQOR_SUBJECT_PREFIX"},
		"ShortToken":    {map[string]string{"LEVQOR_ADMIN_TOKEN": "short"}, config.RoleDev, "LEVQOR_ADMIN_TOKEN"},
		"APIRate":       {map[string]string{"LEVQOR_API_RATE": "fast"}, config.RoleDev, "LEVQOR_API_RATE"},
		"APIRateNeg":    {map[string]string{"LEVQOR_API_RATE": "-1"}, config.RoleDev, "LEVQOR_API_RATE"},
		"APIBurst":      {map[string]string{"LEVQOR_API_BURST": "0"}, config.RoleDev, "LEVQOR_API_BURST"},
		"APIBody":       {map[string]string{"LEVQOR_API_MAX_BODY_BYTES": "10"}, config.RoleDev, "LEVQOR_API_MAX_BODY_BYTES"},
		"StripeKey":     {map[string]string{"STRIPE_API_KEY": "pk_test_publishable"}, config.RoleWorkers, "STRIPE_API_KEY"},
		"StripeBase":    {map[string]string{"STRIPE_API_BASE": "127.0.0.1:12111"}, config.RoleDev, "STRIPE_API_BASE"},
		"BusyWait":      {map[string]string{"LEVQOR_BACKUP_BUSY_WAIT": "soon"}, config.RoleDev, "LEVQOR_BACKUP_BUSY_WAIT"},
		"BusyWait0":     {map[string]string{"LEVQOR_BACKUP_BUSY_WAIT": "0s"}, config.RoleDev, "LEVQOR_BACKUP_BUSY_WAIT"},
		"BusyWaitGT":    {map[string]string{"LEVQOR_BACKUP_BUSY_WAIT": "2h", "LEVQOR_BACKUP_TIMEOUT": "1h"}, config.RoleDev, "LEVQOR_BACKUP_BUSY_WAIT"},
		"ReapTooSoon":   {map[string]string{"LEVQOR_RUN_REAP_AFTER": "10m"}, config.RoleDev, "LEVQOR_RUN_REAP_AFTER"},
		"AutoClose":     {map[string]string{"LEVQOR_SUPPORT_AUTOCLOSE_AFTER": "5m"}, config.RoleDev, "LEVQOR_SUPPORT_AUTOCLOSE_AFTER"},
		"PublicURL":     {map[string]string{"LEVQOR_PUBLIC_URL": "ftp://levqor.example"}, config.RoleDev, "LEVQOR_PUBLIC_URL"},
		"OIDCProviders": {map[string]string{"LEVQOR_OIDC_PROVIDERS": `[{"name": "google", "issuer": "http://accounts.google.com", "client_id": "x", "client_secret": "y"}]`}, config.RoleDev, "LEVQOR_OIDC_PROVIDERS"},
		"SMTPTLS":       {map[string]string{"LEVQOR_SMTP_HOST": "mail.example", "LEVQOR_SMTP_TLS": "maybe"}, config.RoleDev, "LEVQOR_SMTP_TLS"},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := config.FromEnv(env(tc.env))
			if err == nil {
				err = c.ValidateFor(tc.role)
			}
			require.ErrorContains(t, err, tc.variable)
		})
	}
}

func TestSecretsAndWorkersAreLists(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(map[string]string{
		"STRIPE_WEBHOOK_SECRET": "whsec_new, whsec_old",
		"LEVQOR_WORKERS":        "billing,support",
	}))
	require.NoError(t, err)
	require.Equal(t, []string{"whsec_new", "whsec_old"}, c.WebhookSecrets)
	require.Equal(t, []string{"billing", "support"}, c.Workers)
}

func TestStripeKeyIsNeverEchoed(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(map[string]string{"STRIPE_API_KEY": "whsec_pasted_in_the_wrong_place"}))
	require.NoError(t, err)
	err = c.ValidateFor(config.RoleDev)
	require.ErrorContains(t, err, "STRIPE_API_KEY")
	require.NotContains(t, err.Error(), "whsec_pasted_in_the_wrong_place")
}

func TestAPIAndStripeSettings(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(map[string]string{
		"LEVQOR_API_RATE": "2.5", "LEVQOR_API_BURST": "5", "LEVQOR_API_MAX_BODY_BYTES": "2048",
		"STRIPE_API_KEY": "sk_test_abc", "STRIPE_API_BASE": "http://127.0.0.1:12111",
	}))
	require.NoError(t, err)
	require.NoError(t, c.ValidateFor(config.RoleDev))
	require.Equal(t, 2.5, c.APIRate)
	require.Equal(t, 5, c.APIBurst)
	require.EqualValues(t, 2048, c.APIMaxBodyBytes)
	require.Equal(t, "sk_test_abc", c.StripeAPIKey)
	require.Equal(t, "http://127.0.0.1:12111", c.StripeAPIBase)
	d, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.EqualValues(t, api.RateDefault, d.APIRate)
	require.Equal(t, api.BurstDefault, d.APIBurst)
}
