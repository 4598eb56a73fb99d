package service

import (
	"context"
	"io"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/config"
	"github.com/levqor/levqor/pkg/telemetry"
)

// TestRetentionWorkerBlobStoreSelection: an S3 endpoint selects the S3
// store, even beside a blob directory; without one the directory is
// used as before.
func TestRetentionWorkerBlobStoreSelection(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "blobs")
	s3vars := map[string]string{
		"LEVQOR_BLOB_DIR":           dir,
		"LEVQOR_BLOB_S3_ENDPOINT":   "http://127.0.0.1:9000",
		"LEVQOR_BLOB_S3_BUCKET":     "levqor-blobs",
		"LEVQOR_BLOB_S3_PREFIX":     "prod",
		"LEVQOR_BLOB_S3_ACCESS_KEY": "levqor",
		"LEVQOR_BLOB_S3_SECRET_KEY": "secret",
	}
	cfg, err := config.FromEnv(func(k string) string { return s3vars[k] })
	require.NoError(t, err)
	w, err := (&Env{Cfg: cfg, Reg: telemetry.NewRegistry()}).backupsWorker()
	require.NoError(t, err)
	s3, ok := w.Blobs.(*blob.S3)
	require.True(t, ok, "got %T", w.Blobs)
	require.Equal(t, "s3://levqor-blobs/prod/ at 127.0.0.1:9000", s3.String())

	cfg, err = config.FromEnv(func(k string) string { return map[string]string{"LEVQOR_BLOB_DIR": dir}[k] })
	require.NoError(t, err)
	w, err = (&Env{Cfg: cfg, Reg: telemetry.NewRegistry()}).backupsWorker()
	require.NoError(t, err)
	local, ok := w.Blobs.(*blob.Local)
	require.True(t, ok, "got %T", w.Blobs)
	require.Equal(t, dir, local.Root())
}

// TestWorkersAcceptAnS3BlobStore: a workers process running the
// retention worker with an S3 endpoint and no LEVQOR_BLOB_DIR gets past
// the blob check (it then stops at the cancelled context, opening the
// database), and a bad S3 setting stops it naming the variable.
func TestWorkersAcceptAnS3BlobStore(t *testing.T) {
	t.Parallel()
	vars := map[string]string{
		"LEVQOR_NATS_URL": "nats://127.0.0.1:1",
		"LEVQOR_BUS_KEY":  "abababababababababababababababababababababababababababababababab", "LEVQOR_MASTER_KEYS": "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
		"LEVQOR_DATABASE_URL":       "sqlite:" + t.TempDir() + "/levqor.db",
		"LEVQOR_WORKERS":            "retention",
		"LEVQOR_BLOB_S3_ENDPOINT":   "http://127.0.0.1:9000",
		"LEVQOR_BLOB_S3_BUCKET":     "levqor-blobs",
		"LEVQOR_BLOB_S3_ACCESS_KEY": "levqor",
		"LEVQOR_BLOB_S3_SECRET_KEY": "secret",
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg, err := config.FromEnv(func(k string) string { return vars[k] })
	require.NoError(t, err)
	err = RunWorkers(ctx, cfg, log)
	require.ErrorIs(t, err, context.Canceled, "it went on to open the database")
	require.NotContains(t, err.Error(), "LEVQOR_BLOB", "the S3 store satisfies the retention worker")

	delete(vars, "LEVQOR_BLOB_S3_BUCKET")
	cfg, err = config.FromEnv(func(k string) string { return vars[k] })
	require.NoError(t, err)
	require.ErrorContains(t, RunWorkers(ctx, cfg, log), "LEVQOR_BLOB_S3_BUCKET")

	delete(vars, "LEVQOR_BLOB_S3_ENDPOINT")
	cfg, err = config.FromEnv(func(k string) string { return vars[k] })
	require.NoError(t, err)
	err = RunWorkers(ctx, cfg, log)
	require.ErrorContains(t, err, "LEVQOR_BLOB_DIR or LEVQOR_BLOB_S3_ENDPOINT", "without either, both are named")
}
