package keys_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/keys"
)

const (
	dsn   = "postgres://backup:s3cret-pw@db.example:5432/app?sslmode=require"
	shown = "postgres://backup:***@db.example:5432/app?sslmode=require"
)

// TestSealedSecretsOpenOnlyWithTheirKey: a sealed DSN shows nothing of its
// password, opens under its key (and after a rotation, under the old key
// kept second), and refuses to open altered or under keys that lack it.
func TestSealedSecretsOpenOnlyWithTheirKey(t *testing.T) {
	t.Parallel()
	old, err := keys.ParseMasterKeys(strings.Repeat("11", 32))
	require.NoError(t, err)
	sealed, err := old.Seal(dsn, shown)
	require.NoError(t, err)
	require.True(t, keys.IsSealed(sealed))
	require.NotContains(t, sealed, "s3cret-pw")
	require.Equal(t, shown, keys.Shown(sealed), "shown without the key")
	again, err := old.Seal(dsn, shown)
	require.NoError(t, err)
	require.Equal(t, sealed, again, "the same secret seals the same way (a retried request is the same request)")

	got, err := old.Open(sealed)
	require.NoError(t, err)
	require.Equal(t, dsn, got)

	rotated, err := keys.ParseMasterKeys(strings.Repeat("22", 32) + "," + strings.Repeat("11", 32))
	require.NoError(t, err)
	got, err = rotated.Open(sealed)
	require.NoError(t, err, "the old key, kept second, still opens")
	require.Equal(t, dsn, got)
	resealed, err := rotated.Seal(dsn, shown)
	require.NoError(t, err)
	require.NotEqual(t, sealed, resealed, "the first key seals")
	_, err = old.Open(resealed)
	require.ErrorIs(t, err, keys.ErrSealed, "a key that was never given cannot open")
	require.ErrorContains(t, err, "no longer holds")

	parts := strings.Split(sealed, ":")
	tampered := strings.Join(append(parts[:3:3], "cG9zdGdyZXM6Ly9ldmls", parts[4]), ":") // another shown form
	_, err = old.Open(tampered)
	require.ErrorIs(t, err, keys.ErrSealed, "the shown form is authenticated")
	flipped := sealed[:len(sealed)-2] + map[bool]string{true: "AA", false: "BB"}[!strings.HasSuffix(sealed, "AA")]
	_, err = old.Open(flipped)
	require.ErrorIs(t, err, keys.ErrSealed, "the ciphertext is authenticated")
	require.NotContains(t, err.Error(), "s3cret-pw")

	plain, err := old.Open(dsn)
	require.NoError(t, err)
	require.Equal(t, dsn, plain, "a value stored before sealing is used as it is")
	var none *keys.Sealer
	_, err = none.Open(sealed)
	require.ErrorContains(t, err, "LEVQOR_MASTER_KEYS is not set")

	_, err = keys.ParseMasterKeys(strings.Repeat("11", 32) + ",short")
	require.ErrorContains(t, err, "LEVQOR_MASTER_KEYS[1]")
}
