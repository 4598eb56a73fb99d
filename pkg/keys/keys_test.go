package keys_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levqor/levqor/pkg/keys"
)

func TestKeysAreDecodedAndChecked(t *testing.T) {
	t.Parallel()
	raw := []byte(strings.Repeat("k", 32))
	for _, s := range []string{strings.Repeat("6b", 32), base64.StdEncoding.EncodeToString(raw), base64.RawURLEncoding.EncodeToString(raw)} {
		b, err := keys.Decode("LEVQOR_BUS_KEY", " "+s+"\n")
		require.NoError(t, err, s)
		require.Equal(t, raw, b)
	}
	_, err := keys.Decode("LEVQOR_BUS_KEY", "abcd")
	require.EqualError(t, err, "LEVQOR_BUS_KEY: 2 bytes; at least 32 are required (openssl rand -hex 32)")
	_, err = keys.Decode("LEVQOR_BUS_KEY", "not a key!")
	require.EqualError(t, err, "LEVQOR_BUS_KEY: not hex or base64")
	require.NotContains(t, err.Error(), "not a key!", "errors never show the value")
}

// TestOnlyTheKeyProvesAnEvent: the proof holds for the exact bytes under
// the same key, and for nothing else.
func TestOnlyTheKeyProvesAnEvent(t *testing.T) {
	t.Parallel()
	k, err := keys.ParseBusKey(strings.Repeat("ab", 32))
	require.NoError(t, err)
	other, err := keys.ParseBusKey(strings.Repeat("cd", 32))
	require.NoError(t, err)
	event := []byte(`{"id":"evt_1","type":"invoice.paid"}`)
	proof := k.ProveMessage(event)
	require.True(t, strings.HasPrefix(proof, "v1,"))
	require.NoError(t, k.CheckMessage(proof, event))
	for name, tc := range map[string]struct {
		proof string
		body  []byte
	}{
		"None":       {"", event},
		"OtherKey":   {other.ProveMessage(event), event},
		"OtherBytes": {proof, []byte(`{"id":"evt_1","type":"invoice.paid" }`)},
		"NotHex":     {"v1,zz", event},
		"NoVersion":  {strings.TrimPrefix(proof, "v1,"), event},
		"Truncated":  {proof[:len(proof)-2], event},
	} {
		require.ErrorIs(t, k.CheckMessage(tc.proof, tc.body), keys.ErrNoBusProof, name)
	}
}
