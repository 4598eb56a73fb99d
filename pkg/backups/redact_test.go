package backups_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/backups"
)

func TestRedactDSNHidesEverySecret(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"postgres://app:s3cret@db:5432/shop?sslmode=require", "postgres://app:***@db:5432/shop?sslmode=require"},
		{"postgres://app@db/shop?password=s3cret", "postgres://app@db/shop?password=***"},
		{"postgres://app@db/shop?sslmode=verify-full&sslpassword=s3cret", "postgres://app@db/shop?sslmode=verify-full&sslpassword=***"},
		{"postgres://app@db/shop?sslmode=disable", "postgres://app@db/shop?sslmode=disable"},
		{"not a url \x7f s3cret", "***"},
	} {
		got := backups.RedactDSN(tc.in)
		require.Equal(t, tc.want, got)
		require.False(t, strings.Contains(got, "s3cret"), "no secret survives in %q", got)
	}
}

// TestDSNsTakeOnlyConnectionAndTLSParameters: a customer's DSN names one
// host and a database, with TLS settings; parameters that make libpq
// read the worker's files, run server options or go elsewhere are
// refused, naming the field and the parameter.
func TestDSNsTakeOnlyConnectionAndTLSParameters(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{
		"postgres://app:s3cret@db.example:5432/shop",
		"postgresql://app@db.example/shop?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem&sslcert=c.pem&sslkey=k.pem",
		"postgres://app@db.example/shop?connect_timeout=10&application_name=levqor",
	} {
		require.NoError(t, backups.ValidateDSN("config.dsn", ok), ok)
	}
	for dsn, want := range map[string]string{
		"postgres://app@db.example/shop?passfile=/etc/levqor/secrets":    `the parameter "passfile" is not accepted`,
		"postgres://app@db.example/shop?service=prod":                    `the parameter "service" is not accepted`,
		"postgres://app@db.example/shop?options=-c%20search_path%3Devil": `the parameter "options" is not accepted`,
		"postgres://app@db.example/shop?host=/var/run/postgresql":        `the parameter "host" is not accepted`,
		"postgres://app@db.example/shop?hostaddr=127.0.0.1":              `the parameter "hostaddr" is not accepted`,
		"postgres://app@a.example:5432,b.example:5432/shop":              "must name one host",
		"host=db.example dbname=shop":                                    "must be a URL",
		"postgres://app@db.example":                                      "must name a host and a database",
		"postgres://app@db.example/shop#?host=/var/run/postgresql":       "must not contain '#'",
	} {
		err := backups.ValidateDSN("config.dsn", dsn)
		require.ErrorContains(t, err, want, dsn)
		require.ErrorContains(t, err, "config.dsn")
	}
}
