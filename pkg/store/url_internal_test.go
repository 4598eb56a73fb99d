package store

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPostgresURLsGetBinaryParameters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:p@db:5432/levqor?sslmode=disable", "postgres://u:p@db:5432/levqor?binary_parameters=yes&sslmode=disable"},
		{"postgresql://db/levqor", "postgresql://db/levqor?binary_parameters=yes"},
		{"postgres://db/levqor?binary_parameters=no", "postgres://db/levqor?binary_parameters=no"},
	} {
		dialect, dsn, err := parseURL(tc.in)
		require.NoError(t, err)
		require.Equal(t, DialectPostgres, dialect)
		require.Equal(t, tc.want, dsn, "an explicit setting in the URL wins")
	}
}
