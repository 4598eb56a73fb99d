package service_test

import (
	"context"
	"io"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/service"
)

// TestWorkersNeedABlobDirForRetention: a workers process running the
// retention worker refuses to start without LEVQOR_BLOB_DIR, naming it,
// before it connects to anything.
func TestWorkersNeedABlobDirForRetention(t *testing.T) {
	t.Parallel()
	for _, workers := range []string{"all", "retention"} {
		vars := map[string]string{
			"LEVQOR_NATS_URL":     "nats://127.0.0.1:1",
			"LEVQOR_DATABASE_URL": "sqlite:" + t.TempDir() + "/levqor.db",
			"LEVQOR_WORKERS":      workers,
			"STRIPE_API_KEY":      "sk_test_only",
			"LEVQOR_BUS_KEY":      "abababababababababababababababababababababababababababababababab", "LEVQOR_MASTER_KEYS": "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
		}
		cfg, err := config.FromEnv(func(k string) string { return vars[k] })
		require.NoError(t, err)
		log := logrus.New()
		log.SetOutput(io.Discard)
		err = service.RunWorkers(context.Background(), cfg, log)
		require.ErrorContains(t, err, "LEVQOR_BLOB_DIR", "LEVQOR_WORKERS=%s", workers)
	}
}
