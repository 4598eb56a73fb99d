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
