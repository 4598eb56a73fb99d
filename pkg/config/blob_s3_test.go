package config_test

import (
	"fmt"
	"maps"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/blob"
	"github.com/levqor/levqor/pkg/config"
)

func s3Env(extra map[string]string) map[string]string {
	m := map[string]string{
		"LEVQOR_BLOB_S3_ENDPOINT":   "http://127.0.0.1:9000",
		"LEVQOR_BLOB_S3_BUCKET":     "levqor-blobs",
		"LEVQOR_BLOB_S3_ACCESS_KEY": "levqor",
		"LEVQOR_BLOB_S3_SECRET_KEY": "s3-secret-do-not-print",
	}
	maps.Copy(m, extra)
	for k, v := range m {
		if v == "" {
			delete(m, k)
		}
	}
	return m
}

func TestBlobS3Settings(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(nil))
	require.NoError(t, err)
	require.False(t, c.BlobS3.Enabled(), "the local store unless an endpoint is set")
	require.Equal(t, 16, c.BlobS3.PartSizeMiB)

	c, err = config.FromEnv(env(s3Env(map[string]string{
		"LEVQOR_BLOB_S3_REGION":        "eu-west-1",
		"LEVQOR_BLOB_S3_PREFIX":        "prod",
		"LEVQOR_BLOB_S3_PART_SIZE_MIB": "64",
	})))
	require.NoError(t, err)
	require.True(t, c.BlobS3.Enabled())
	require.NoError(t, c.ValidateFor(config.RoleDev))
	sc := c.BlobS3.StoreConfig()
	require.Equal(t, blob.S3Config{
		Endpoint: "http://127.0.0.1:9000", Bucket: "levqor-blobs", Region: "eu-west-1", Prefix: "prod",
		AccessKey: "levqor", SecretKey: "s3-secret-do-not-print", PartSize: 64 << 20,
	}, sc)
	_, err = blob.NewS3(sc)
	require.NoError(t, err, "what validates builds a store")
	require.NotContains(t, fmt.Sprintf("%v %+v %#v", c.BlobS3, c.BlobS3, c.BlobS3), "s3-secret-do-not-print")
}

func TestBlobS3FallsBackToAWSVariables(t *testing.T) {
	t.Parallel()
	c, err := config.FromEnv(env(s3Env(map[string]string{
		"LEVQOR_BLOB_S3_ACCESS_KEY": "",
		"LEVQOR_BLOB_S3_SECRET_KEY": "",
		"AWS_ACCESS_KEY_ID":         "AKIAEXAMPLE",
		"AWS_SECRET_ACCESS_KEY":     "aws-secret",
	})))
	require.NoError(t, err)
	require.Equal(t, "AKIAEXAMPLE", c.BlobS3.AccessKey)
	require.Equal(t, "aws-secret", c.BlobS3.SecretKey)
	require.NoError(t, c.ValidateFor(config.RoleDev))

	c, err = config.FromEnv(env(s3Env(map[string]string{"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE"})))
	require.NoError(t, err)
	require.Equal(t, "levqor", c.BlobS3.AccessKey, "Levqor's own variable wins")
}

func TestBlobS3ValidationNamesTheVariable(t *testing.T) {
	t.Parallel()
	for variable, vars := range map[string]map[string]string{
		"LEVQOR_BLOB_S3_BUCKET":        s3Env(map[string]string{"LEVQOR_BLOB_S3_BUCKET": ""}),
		"LEVQOR_BLOB_S3_ENDPOINT":      s3Env(map[string]string{"LEVQOR_BLOB_S3_ENDPOINT": "http://minio:9000/levqor-blobs"}),
		"LEVQOR_BLOB_S3_INSECURE":      s3Env(map[string]string{"LEVQOR_BLOB_S3_ENDPOINT": "https://s3.example.com", "LEVQOR_BLOB_S3_INSECURE": "true"}),
		"LEVQOR_BLOB_S3_ACCESS_KEY":    s3Env(map[string]string{"LEVQOR_BLOB_S3_ACCESS_KEY": ""}),
		"LEVQOR_BLOB_S3_SECRET_KEY":    s3Env(map[string]string{"LEVQOR_BLOB_S3_SECRET_KEY": ""}),
		"LEVQOR_BLOB_S3_PREFIX":        s3Env(map[string]string{"LEVQOR_BLOB_S3_PREFIX": "../other"}),
		"LEVQOR_BLOB_S3_PART_SIZE_MIB": s3Env(map[string]string{"LEVQOR_BLOB_S3_PART_SIZE_MIB": "1"}),
		"LEVQOR_BLOB_S3_OBJECT_LOCK":   s3Env(map[string]string{"LEVQOR_BLOB_S3_OBJECT_LOCK": "forever"}),
		"LEVQOR_BLOB_LOCK_DAYS":        s3Env(map[string]string{"LEVQOR_BLOB_LOCK_DAYS": "-1"}),
		// S3 settings without an endpoint would silently fall back to the
		// local directory.
		"LEVQOR_BLOB_S3_ENDPOINT is not": {"LEVQOR_BLOB_S3_BUCKET": "levqor-blobs"},
	} {
		c, err := config.FromEnv(env(vars))
		require.NoError(t, err)
		for _, role := range []config.Role{config.RoleDev, config.RoleWorkers} {
			err := c.ValidateFor(role)
			require.ErrorContains(t, err, variable, "%s", role)
			require.NotContains(t, err.Error(), "s3-secret-do-not-print")
		}
	}
	c, err := config.FromEnv(env(s3Env(map[string]string{"LEVQOR_BLOB_S3_ENDPOINT": "https://levqor:s3-secret-do-not-print@s3.example.com"})))
	require.NoError(t, err)
	err = c.ValidateFor(config.RoleDev)
	require.ErrorContains(t, err, "LEVQOR_BLOB_S3_ENDPOINT")
	require.NotContains(t, err.Error(), "s3-secret-do-not-print", "credentials in the endpoint are not repeated")

	_, err = config.FromEnv(env(s3Env(map[string]string{"LEVQOR_BLOB_S3_INSECURE": "yes please"})))
	require.ErrorContains(t, err, "LEVQOR_BLOB_S3_INSECURE")
}
